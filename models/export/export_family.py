#!/usr/bin/env python3
"""Export the IMAGE tower of a SigLIP, BLIP or MobileCLIP model to the files clip-edge
loads: image_encoder.onnx + model.json (format "clip-edge-model/1", as export_clip.py
writes it) + the reference processor's own config + reference embeddings.

Random-initialised models in the exact public architecture are built here by default (no
hub access): ``--size full`` is the real architecture, ``--size tiny`` the same block types
with tiny widths, for committed test fixtures.  ``--pretrained NAME_OR_DIR`` exports a real
checkpoint instead (SigLIP/BLIP: transformers from_pretrained, a hub name or a local
directory; MobileCLIP: open_clip pretrained= a checkpoint file or tag, or a hub-layout
directory); model.json then takes logit scale / bias, image size and preprocessing from the
checkpoint and its own processor config, and records ``"pretrained"``.  Text towers:
export_text.py.

  --family siglip      transformers SiglipModel; image embedding = get_image_features
                       (the vision tower's pooler output: the MAP / attention-pooling head).
                       full = google/siglip-base-patch16-224 (transformers' SiglipConfig
                       defaults: ViT-B/16 at 224, 768 wide).  Sigmoid scoring.
  --family blip        transformers BlipForImageTextRetrieval, ITC path: image embedding
                       = vision_proj(vision_model(pixel_values)[0][:, 0]).
                       full = Salesforce/blip-itm-base-coco (BlipConfig defaults: ViT-B/16
                       at 384, projection 256).  Softmax scoring.
  --family mobileclip  OpenCLIP MobileCLIP2-S0 (timm fastvit_mci0, 256x256), random init,
                       then timm.utils.reparameterize_model before export.  Softmax scoring.

Files written to --out:
  image_encoder.onnx        pixel_values f32 [batch,3,S,S] -> image_embeds f32 [batch,D]
                            (projected, NOT L2-normalised; batch the only dynamic axis)
  model.json                family, source, embed_dim, image_size, logit_scale (exp'd /
                            1/temp), logit_bias, scoring, preprocess, file sha256, op counts,
                            parity figures, how the random init was made
  preprocessor_config.json  (siglip, blip) the HF image processor's save_pretrained output
  open_clip_config.json     (mobileclip) the hub's format: {"model_cfg", "preprocess_cfg"}
  ort_image_embeds.npy      PyTorch embeddings f32 [N,D] of the RGB-convertible inputs in
                            runtime/core/tests/fixtures/preprocess/ (sorted by name), each
                            preprocessed by the family's REFERENCE processor (the name
                            follows the other fixtures; the values are PyTorch's, which
                            onnxruntime matches to the figures printed)

Export settings are export_clip.py's: torch.onnx.export(dynamo=False), opset 17,
do_constant_folding=True, traced at batch 2; then onnx.checker (full_check), the
batch-only-dynamic check, the tract-onnx op check, and onnxruntime vs PyTorch at batch 1
and 3 and on the reference images (fails above --tolerance, default 1e-3, or at a cosine
below 0.9999).

Examples (from the repository root; offline):
  python3 models/export/export_family.py --family siglip --size tiny --out models/fixtures/siglip-tiny
  python3 models/export/export_family.py --family blip --size tiny --out models/fixtures/blip-tiny
  python3 models/export/export_family.py --family mobileclip --size tiny --out models/fixtures/mobileclip-tiny
  python3 models/export/export_family.py --family siglip --size full --out /tmp/families/siglip-b16
  python3 models/export/export_family.py --family blip --size full --out /tmp/families/blip-base
  python3 models/export/export_family.py --family mobileclip --size full --out /tmp/families/mobileclip2-s0
  # real checkpoints (hub names need the hub; local directories / files do not)
  python3 models/export/export_family.py --family siglip --pretrained google/siglip-base-patch16-224 --out out/siglip-b16
  python3 models/export/export_family.py --family blip --pretrained ckpt/blip-itm-base-coco --out out/blip-base
  python3 models/export/export_family.py --family mobileclip --pretrained ckpt/mobileclip2_s0.pt --out out/mobileclip2-s0
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE))
# Shared with export_clip.py: the exporter call (with the MHA fast path off), the graph
# checks and the sha256 helper.
import export_clip as ec  # noqa: E402

PREPROCESS_FIXTURES = ROOT / "runtime" / "core" / "tests" / "fixtures" / "preprocess"
OPENAI_MEAN = [0.48145466, 0.4578275, 0.40821073]
OPENAI_STD = [0.26862954, 0.26130258, 0.27577711]
MIN_COSINE = 0.9999

# Every op type tract-onnx 0.23.9 registers (src/ops/**: reg.insert("...")), read from
# the crate source of the version the workspace pins.  export_clip.py's shorter list is
# the ops CLIP graphs can plausibly use; the FastViT graph also has BatchNormalization
# (the attention stage's standalone BatchNorm2d).
TRACT_ONNX_OPS = set("""
Abs Acos Acosh Add And ArgMax ArgMin ArrayFeatureExtractor Asin Asinh Atan Atanh Attention
AveragePool BatchNormalization BiasGelu BitShift BitwiseAnd BitwiseNot BitwiseOr BitwiseXor
BlackmanWindow Cast CastLike CategoryMapper Ceil Celu Clip Compress Concat Constant
ConstantLike ConstantOfShape Conv ConvInteger ConvTranspose Cos Cosh CumSum DFT DepthToSpace
DequantizeLinear Div Dropout DynamicQuantizeLinear Einsum Elu Equal Erf Exp Expand EyeLike
FastGelu Flatten Floor GRU Gather GatherBlockQuantized GatherElements GatherND Gelu Gemm
GlobalAveragePool GlobalLpPool GlobalMaxPool Greater GreaterOrEqual GridSample
GroupNormalization GroupQueryAttention HammingWindow HannWindow HardSigmoid HardSwish Hardmax
Identity If InstanceNormalization IsInf IsNaN LRN LSTM LayerNormalization LeakyRelu Less
LessOrEqual LinearClassifier LinearRegressor Log LogSoftmax LpNormalization MatMul
MatMulInteger MatMulNBits Max MaxPool Mean MeanVarianceNormalization MelWeightMatrix Min Mish
Mod Mul MultiHeadAttention Multinomial Neg NonMaxSuppression NonZero Normalizer Not OneHot Or
PRelu Pad ParametricSoftplus Pow QLinearConv QLinearMatMul QuantizeLinear QuickGelu
RMSNormalization RNN RandomNormal RandomNormalLike RandomUniform RandomUniformLike Range
Reciprocal ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean ReduceMin
ReduceProd ReduceSum ReduceSumSquare Relu Reshape Resize RotaryEmbedding Round Rsqrt STFT
ScaledTanh Scan Scatter ScatterElements ScatterND Selu Shape Shrink Sigmoid Sign
SimplifiedLayerNormalization Sin Sinh Size SkipLayerNormalization Slice Softmax Softplus
Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Swish Tan Tanh ThresholdedRelu Tile TopK
Transpose TreeEnsembleClassifier Trilu Unsqueeze Where Xor
""".split())


# ---------------------------------------------------------------------------
# Image towers (what gets traced)
# ---------------------------------------------------------------------------

class SiglipImageTower(nn.Module):
    """SiglipModel.get_image_features(pixel_values).pooler_output (transformers 5.x returns
    a ModelOutput there; this is the same call)."""

    def __init__(self, model):
        super().__init__()
        self.vision_model = model.vision_model

    def forward(self, pixel_values):
        return self.vision_model(pixel_values=pixel_values).pooler_output


class BlipImageTower(nn.Module):
    """BlipForImageTextRetrieval's ITC image feature before its L2 normalisation:
    vision_proj(vision_model(pixel_values)[0][:, 0, :])."""

    def __init__(self, model):
        super().__init__()
        self.vision_model = model.vision_model
        self.vision_proj = model.vision_proj

    def forward(self, pixel_values):
        hidden = self.vision_model(pixel_values=pixel_values)[0]
        return self.vision_proj(hidden[:, 0, :])


class OpenClipImageTower(nn.Module):
    """model.encode_image(x, normalize=False) == model.visual(x), on the fused visual."""

    def __init__(self, visual):
        super().__init__()
        self.visual = visual

    def forward(self, pixel_values):
        return self.visual(pixel_values)


# ---------------------------------------------------------------------------
# Architectures
# ---------------------------------------------------------------------------

# SigLIP: transformers' SiglipConfig defaults are google/siglip-base-patch16-224
# (vision 768 wide, 12 layers, 12 heads, MLP 3072, patch 16, 224, gelu_pytorch_tanh,
# LayerNorm eps 1e-6, MAP head; text 768 wide, 12 layers, vocab 32000, 64 tokens).
SIGLIP_TINY = dict(
    vision_config=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                       intermediate_size=64, patch_size=16, image_size=224),
    # not exported; tiny so the model builds fast
    text_config=dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=32),
)
# BLIP: transformers' BlipConfig defaults are the BLIP-base layout (vision ViT-B/16 at
# 384, LayerNorm eps 1e-5, GELU; BERT-base text, vocab 30524; image_text_hidden_size
# 256), which is Salesforce/blip-itm-base-coco's.
BLIP_TINY = dict(
    vision_config=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                       intermediate_size=64, patch_size=16, image_size=384),
    # not exported; tiny so the model builds fast
    text_config=dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=64),
    image_text_hidden_size=32,
)
# BlipVisionConfig's default initializer_range is 1e-10 (a converted checkpoint
# overwrites every weight, so it never mattered): random-initialised with it, every
# vision weight has std 1e-10 and the embedding comes out ~1e-8, numerically
# degenerate.  The random models use 0.02 (BERT's / the text tower's value).
BLIP_VISION_INIT_RANGE = 0.02
# BLIP (Salesforce BLIP / LAVIS) divides its ITC similarities by a learned temperature
# `temp` (init 0.07, clamped to [0.001, 0.5]).  transformers' BlipForImageTextRetrieval
# has no such parameter (its use_itm_head=False path returns the plain cosine), so a
# converted checkpoint does not carry it: the initial value is used here.
BLIP_TEMP_INIT = 0.07

# MobileCLIP: the tiny FastViT is fastvit_mci0's block structure with small widths.
# fastvit_mci0 = layers (2, 6, 10, 2), embed_dims (64, 128, 256, 512), mlp_ratios 3,
# se_downsamples (F, F, T, T), RepCPE 7x7 before the attention stage, token mixers
# repmixer x3 + attention, lkc_use_act.  The attention stage needs a multiple of 32
# (timm's FastViT attention has head_dim 32).
# The name contains "fastvit" and "mci": clip-edge recognises a MobileCLIP
# open_clip_config.json by its timm_model_name.
MCI_TINY_NAME = "fastvit_mci_clip_edge_tiny"
MCI_TINY_ARGS = dict(
    layers=(1, 1, 2, 1),
    embed_dims=(8, 16, 32, 64),
    mlp_ratios=(3, 3, 3, 3),
    se_downsamples=(False, False, True, True),
    token_mixers=("repmixer", "repmixer", "repmixer", "attention"),
    lkc_use_act=True,
)
MOBILECLIP_TINY_EMBED = 32
CALIBRATION_IMAGES = 32


def _jsonable(d: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def _quiet_transformers():
    import transformers
    transformers.logging.set_verbosity_error()


def _eager(cfg):
    for c in (cfg, cfg.vision_config, cfg.text_config):
        c._attn_implementation = "eager"


def _vit_summary(vc, pooling: str) -> dict:
    """model.json's architecture.vision of a HF ViT vision config."""
    return dict(width=vc.hidden_size, layers=vc.num_hidden_layers,
                heads=vc.num_attention_heads, mlp=vc.intermediate_size,
                patch_size=vc.patch_size, image_size=vc.image_size, act=vc.hidden_act,
                layer_norm_eps=vc.layer_norm_eps, pooling=pooling)


def _text_summary(cfg, tokenizer: str, context_length: bool = False) -> dict:
    """model.json's text section before export_text.py exports the text tower."""
    text = dict(exported=False, vocab_size=int(cfg.text_config.vocab_size))
    if context_length:
        text["context_length"] = int(cfg.text_config.max_position_embeddings)
    text["tokenizer"] = tokenizer
    return text


def build_siglip(size: str, seed: int):
    import transformers
    from transformers import SiglipConfig, SiglipModel
    from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil
    _quiet_transformers()
    cfg = SiglipConfig(**({} if size == "full" else SIGLIP_TINY))
    _eager(cfg)
    torch.manual_seed(seed)
    model = SiglipModel(cfg).eval()
    # transformers 5.x's _init_weights zeroes logit_scale and logit_bias (scale exp(0)=1,
    # bias 0); the SigLIP paper (and big_vision) initialise t' = log 10, b = -10.
    zero_init = (float(model.logit_scale), float(model.logit_bias))
    with torch.no_grad():
        model.logit_scale.fill_(math.log(10.0))
        model.logit_bias.fill_(-10.0)
    vc = cfg.vision_config
    S = int(vc.image_size)
    proc = SiglipImageProcessorPil(
        do_resize=True, size={"height": S, "width": S}, resample=3,  # PIL.Image.BICUBIC
        do_rescale=True, rescale_factor=1 / 255, do_normalize=True,
        image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5], do_convert_rgb=True)
    tower = SiglipImageTower(model).eval()
    # The tower is get_image_features' computation.
    probe = torch.randn(2, 3, S, S, generator=torch.Generator().manual_seed(seed + 7))
    with torch.no_grad():
        ref = model.get_image_features(pixel_values=probe)
        ref = ref.pooler_output if hasattr(ref, "pooler_output") else ref
        assert torch.equal(tower(probe), ref), "SiglipImageTower != get_image_features"
    meta = dict(
        family="siglip", source="hf",
        model=("google/siglip-base-patch16-224 architecture" if size == "full"
               else "tiny SigLIP (SiglipModel, google/siglip-base-patch16-224 layout, small widths)"),
        hf_class="SiglipModel",
        embed_dim=int(vc.hidden_size), image_size=S,
        logit_scale=float(model.logit_scale.exp()), logit_bias=float(model.logit_bias),
        scoring="sigmoid",
        preprocess=dict(size=S, resize_shortest_edge=S, resize="squash",
                        interpolation="bicubic", crop="none", crop_offset="floor",
                        mean=[0.5, 0.5, 0.5], std=[0.5, 0.5, 0.5]),
        reference_processor=dict(kind="hf", cls=type(proc).__name__,
                                 module=type(proc).__module__, backend="pil"),
        random_init=dict(
            how=f"torch.manual_seed({seed}); SiglipModel(SiglipConfig(...)) with transformers "
                f"{transformers.__version__}'s _init_weights, eager attention; then logit_scale "
                "= log(10) and logit_bias = -10 (the SigLIP paper's init; transformers' "
                f"_init_weights leaves them at {zero_init[0]:g} and {zero_init[1]:g})"),
        architecture=dict(
            vision=_vit_summary(
                vc, "MAP head (probe + nn.MultiheadAttention + LayerNorm + MLP)"),
            attn_implementation="eager",
            config=cfg.to_diff_dict() if size == "tiny" else "SiglipConfig() defaults"),
        text=_text_summary(cfg, "SiglipTokenizer (SentencePiece)", context_length=True),
        transformers_version=transformers.__version__,
    )
    return tower, meta, proc


def build_blip(size: str, seed: int):
    import copy
    import transformers
    from transformers import BlipConfig, BlipForImageTextRetrieval
    from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil
    _quiet_transformers()
    kw = copy.deepcopy({} if size == "full" else BLIP_TINY)
    kw.setdefault("vision_config", {})["initializer_range"] = BLIP_VISION_INIT_RANGE
    cfg = BlipConfig(**kw)
    _eager(cfg)
    torch.manual_seed(seed)
    model = BlipForImageTextRetrieval(cfg).eval()
    vc = cfg.vision_config
    S = int(vc.image_size)
    proc = BlipImageProcessorPil(
        do_resize=True, size={"height": S, "width": S}, resample=3,  # PIL.Image.BICUBIC
        do_rescale=True, rescale_factor=1 / 255, do_normalize=True,
        image_mean=OPENAI_MEAN, image_std=OPENAI_STD, do_convert_rgb=True)
    tower = BlipImageTower(model).eval()
    # The tower is the ITC image feature: check against the model's own use_itm_head=False
    # path, whose score is normalize(image_feat) @ normalize(text_feat).T.
    probe = torch.randn(2, 3, S, S, generator=torch.Generator().manual_seed(seed + 7))
    ids = torch.tensor([[cfg.text_config.bos_token_id, 2000, 2001, 102]])
    with torch.no_grad():
        out = model(input_ids=ids, pixel_values=probe, use_itm_head=False)
        text_feat = torch.nn.functional.normalize(
            model.text_proj(out.question_embeds[:, 0, :]), dim=-1)
        img_feat = torch.nn.functional.normalize(tower(probe), dim=-1)
        d = float((img_feat @ text_feat.t() - out.itm_score).abs().max())
        assert d < 1e-5, f"BlipImageTower disagrees with the ITC path ({d})"
    meta = dict(
        family="blip", source="hf",
        model=("Salesforce/blip-itm-base-coco architecture" if size == "full"
               else "tiny BLIP (BlipForImageTextRetrieval, blip-itm-base-coco layout, small widths)"),
        hf_class="BlipForImageTextRetrieval",
        embed_dim=int(cfg.image_text_hidden_size), image_size=S,
        logit_scale=1.0 / BLIP_TEMP_INIT, logit_bias=None, scoring="softmax",
        logit_scale_note=(
            f"1/temp with BLIP's initial temp {BLIP_TEMP_INIT}: transformers' "
            "BlipForImageTextRetrieval has no temp parameter (its ITC path returns the plain "
            "cosine), so hub checkpoints do not carry the trained value"),
        preprocess=dict(size=S, resize_shortest_edge=S, resize="squash",
                        interpolation="bicubic", crop="none", crop_offset="floor",
                        mean=OPENAI_MEAN, std=OPENAI_STD),
        reference_processor=dict(kind="hf", cls=type(proc).__name__,
                                 module=type(proc).__module__, backend="pil"),
        random_init=dict(
            how=f"torch.manual_seed({seed}); BlipForImageTextRetrieval(BlipConfig(...)) with "
                f"transformers {transformers.__version__}'s _init_weights, eager attention; "
                f"vision_config.initializer_range = {BLIP_VISION_INIT_RANGE} (BlipVisionConfig's "
                "default 1e-10 gives every vision weight std 1e-10 and embeddings ~1e-8)"),
        architecture=dict(
            vision=_vit_summary(vc, "CLS token"),
            projection=dict(in_features=vc.hidden_size, out_features=cfg.image_text_hidden_size,
                            bias=True),
            attn_implementation="eager",
            config=(cfg.to_diff_dict() if size == "tiny"
                    else f"BlipConfig() defaults, vision initializer_range {BLIP_VISION_INIT_RANGE}")),
        text=_text_summary(cfg, "BertTokenizer (bert-base-uncased WordPiece + [DEC]/[ENC])"),
        transformers_version=transformers.__version__,
    )
    return tower, meta, proc


_MCI_TINY_REGISTERED = False


def register_mci_tiny():
    """Registers the tiny FastViT as a timm model, built by timm's own _create_fastvit
    (the same FastVit class, stem, stages and head as fastvit_mci0)."""
    global _MCI_TINY_REGISTERED
    if _MCI_TINY_REGISTERED:
        return
    from timm.models import register_model
    from timm.models.fastvit import RepConditionalPosEnc, _create_fastvit

    def fastvit_mci_clip_edge_tiny(pretrained=False, **kwargs):
        args = dict(MCI_TINY_ARGS,
                    pos_embs=(None, None, None, partial(RepConditionalPosEnc, spatial_shape=(7, 7))))
        return _create_fastvit(MCI_TINY_NAME, pretrained=pretrained, **dict(args, **kwargs))

    fastvit_mci_clip_edge_tiny.__name__ = MCI_TINY_NAME
    register_model(fastvit_mci_clip_edge_tiny)
    _MCI_TINY_REGISTERED = True


def mobileclip_open_clip_config(size: str) -> dict:
    """open_clip_config.json in the hub's format (timm/MobileCLIP2-S0-OpenCLIP):
    MobileCLIP2-S0's model config and its dfndr2b tag's preprocessing."""
    import open_clip
    pcfg = open_clip.get_pretrained_cfg("MobileCLIP2-S0", "dfndr2b")
    preprocess_cfg = {k: (list(pcfg[k]) if isinstance(pcfg[k], tuple) else pcfg[k])
                      for k in ("mean", "std", "interpolation", "resize_mode")}
    model_cfg = open_clip.get_model_config("MobileCLIP2-S0")
    if size == "tiny":
        model_cfg["embed_dim"] = MOBILECLIP_TINY_EMBED
        model_cfg["vision_cfg"]["timm_model_name"] = MCI_TINY_NAME
        # not exported; tiny so the model builds fast
        model_cfg["text_cfg"].update(width=32, heads=2, layers=1)
    return {"model_cfg": model_cfg, "preprocess_cfg": preprocess_cfg}


def _calibration_images(n: int, size: int, g: torch.Generator) -> torch.Tensor:
    """Seeded synthetic photos-like inputs in [0, 1]: noise at 4x4, 16x16 and 64x64
    upsampled (most energy at low frequency, as in photographs) plus a colour cast."""
    x = torch.rand(n, 3, 1, 1, generator=g) * 0.6 + 0.2
    for cells, amp in ((4, 0.35), (16, 0.2), (64, 0.1)):
        noise = torch.randn(n, 3, cells, cells, generator=g) * amp
        x = x + torch.nn.functional.interpolate(noise, size=(size, size), mode="bilinear",
                                                align_corners=False)
    return x.clamp(0.0, 1.0)


def perturb_mobileclip(visual: nn.Module, seed: int, size: int) -> dict:
    """Gives the random FastViT the statistics of a trained network.

    With timm's init the random MCi is degenerate as a test model: every conv has
    std 0.02 (the image signal shrinks ~10x per layer), every BatchNorm is the identity
    and every LayerScale is 1e-5 (each RepMixer / attention block adds ~1e-5 of its
    output), so all images embed to the same direction (pairwise cosine 1.0000) and a
    runtime could drop a block or the standalone BatchNormalization and still match.
    Redrawn (seeded; architecture unchanged): conv / linear weights N(0, 1/fan_in),
    biases N(0, 0.02^2); BatchNorm weight U(0.5, 1.5), bias N(0, 0.05^2); LayerScale
    gamma U(0.05, 0.3); then the BatchNorm running statistics are calibrated as
    training would leave them (train-mode passes, cumulative average) on seeded
    synthetic images (_calibration_images)."""
    g = torch.Generator().manual_seed(seed + 1000)
    n_bn = n_ls = n_w = 0
    bns = []
    with torch.no_grad():
        for m in visual.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) / math.sqrt(fan_in))
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.02)
                n_w += 1
            elif isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_(torch.rand(c, generator=g) + 0.5)
                m.bias.copy_(torch.randn(c, generator=g) * 0.05)
                bns.append(m)
                n_bn += 1
            elif type(m).__name__ == "LayerScale2d" and hasattr(m, "gamma"):
                m.gamma.copy_(torch.rand(m.gamma.shape, generator=g) * 0.25 + 0.05)
                n_ls += 1
        calib = _calibration_images(CALIBRATION_IMAGES, size, g)
        momenta = [m.momentum for m in bns]
        for m in bns:
            m.reset_running_stats()
            m.momentum = None  # cumulative moving average
        visual.train()
        for i in range(0, len(calib), 8):
            visual(calib[i:i + 8])
        visual.eval()
        for m, mom in zip(bns, momenta):
            m.momentum = mom
    return dict(weights=n_w, batchnorms=n_bn, layerscales=n_ls,
                conv_linear="weight N(0, 1/fan_in), bias N(0, 0.02^2)",
                batchnorm="weight U(0.5,1.5), bias N(0,0.05^2); running mean/var calibrated "
                          f"in train mode on {CALIBRATION_IMAGES} synthetic images "
                          "(export_family._calibration_images), batches of 8",
                layerscale="gamma U(0.05,0.3)", generator_seed=seed + 1000)


def _stage_summary(trunk) -> list:
    rows = []
    for s in trunk.stages:
        b = s.blocks[0]
        rows.append(dict(depth=len(s.blocks), dim=int(b.mlp.fc1.in_channels),
                         block=type(b).__name__,
                         downsample=type(s.downsample).__name__,
                         pos_emb=type(s.pos_emb).__name__))
    return rows


def build_mobileclip(size: str, seed: int, out: Path, plain_init: bool):
    import open_clip
    import timm
    from timm.utils import reparameterize_model
    if size == "tiny":
        register_mci_tiny()
    # The config is written first and the model built from it through open_clip's own
    # 'local-dir:' loader, as a hub checkpoint's open_clip_config.json would be.
    oc_cfg = mobileclip_open_clip_config(size)
    (out / "open_clip_config.json").write_text(json.dumps(oc_cfg, indent=2) + "\n")
    torch.manual_seed(seed)
    model, _, preprocess = open_clip.create_model_and_transforms(
        f"local-dir:{out}", load_weights=False, pretrained_text=False)
    model.eval()
    if size == "full":
        assert oc_cfg["model_cfg"] == open_clip.get_model_config("MobileCLIP2-S0")
    S = int(oc_cfg["model_cfg"]["vision_cfg"]["image_size"])
    perturb = None if plain_init else perturb_mobileclip(model.visual, seed, S)
    probe = _calibration_images(2, S, torch.Generator().manual_seed(seed + 7))
    with torch.no_grad():
        before = model.encode_image(probe, normalize=False)
        visual = reparameterize_model(model.visual).eval()  # a fused copy
        after = visual(probe)
    reparam_diff = float((after - before).abs().max())
    reparam_scale = float(before.abs().max())
    print(f"reparameterized: max|after - before| = {reparam_diff:.3e} (max|before| = "
          f"{reparam_scale:.3e})")
    if not reparam_diff <= 1e-4 * max(1.0, reparam_scale):
        raise SystemExit("reparameterize_model changed the function")
    # Left unfused: BatchNorms with no conv branch to fold into (the attention blocks'
    # pre-norm) and the ConvMlp's conv+BN (the exporter folds that one into the Conv).
    unfused = sorted(n for n, m in visual.named_modules() if isinstance(m, nn.BatchNorm2d))
    pp = oc_cfg["preprocess_cfg"]
    mean, std = [float(x) for x in pp["mean"]], [float(x) for x in pp["std"]]
    embed_dim = int(oc_cfg["model_cfg"]["embed_dim"])
    if size == "full":
        built = ("open_clip_config.json = open_clip.get_model_config('MobileCLIP2-S0') (the "
                 "same model as open_clip.create_model('MobileCLIP2-S0', pretrained=None))")
    else:
        built = (f"timm FastVit through timm's own _create_fastvit, registered in-process as "
                 f"timm model '{MCI_TINY_NAME}' with {json.dumps(_jsonable(MCI_TINY_ARGS))} and "
                 "RepCPE 7x7 before the attention stage (fastvit_mci0's block types: MobileOne "
                 "stem, RepMixer stages, RepCPE + attention stage, MobileOne final conv with SE), "
                 "in open_clip's TimmModel exactly as MobileCLIP2-S0 (timm_pool avg, timm_proj "
                 "null: the FastViT classifier head is the projection). To load "
                 "open_clip_config.json elsewhere, register that timm model first "
                 "(export_family.register_mci_tiny)")
    meta = dict(
        family="mobileclip", source="openclip",
        model=("MobileCLIP2-S0" if size == "full" else f"tiny MobileCLIP2-S0 layout ({MCI_TINY_NAME})"),
        embed_dim=embed_dim, image_size=S,
        logit_scale=float(model.logit_scale.exp()), logit_bias=None, scoring="softmax",
        preprocess=dict(size=S, resize_shortest_edge=S, resize="shortest",
                        interpolation=pp["interpolation"], crop="center", crop_offset="round",
                        mean=mean, std=std),
        reference_processor=dict(
            kind="open_clip", transform=repr(preprocess),
            how="open_clip.create_model_and_transforms('local-dir:<out>') (reads "
                "open_clip_config.json: MobileCLIP2-S0 dfndr2b's preprocess_cfg)"),
        random_init=dict(
            how=(f"torch.manual_seed({seed}); open_clip.create_model_and_transforms("
                 f"'local-dir:<out>', load_weights=False) with {built}; timm/open_clip default "
                 "init" + ("" if plain_init else "; then conv/linear weights, BatchNorms "
                           "(affine + calibrated running statistics) and LayerScale gammas "
                           "redrawn to a trained network's statistics (perturb; "
                           "export_family.perturb_mobileclip)")
                 + "; then timm.utils.reparameterize_model (MobileOne / RepMixer / RepCPE / "
                   "large-kernel branches fused into single convs) BEFORE export"),
            perturb=perturb,
            reparameterize=dict(function="timm.utils.reparameterize_model",
                                max_abs_change=reparam_diff, max_abs_output=reparam_scale,
                                batchnorms_left=len(unfused)),
        ),
        architecture=dict(
            open_clip_config=oc_cfg["model_cfg"],
            timm_model=oc_cfg["model_cfg"]["vision_cfg"]["timm_model_name"],
            timm_args=None if size == "full" else _jsonable(MCI_TINY_ARGS),
            vision_params=int(sum(p.numel() for p in visual.parameters())),
            stages=_stage_summary(visual.trunk)),
        text=dict(exported=False, context_length=77, vocab_size=49408,
                  tokenizer="OpenAI CLIP BPE (open_clip custom_text, no_causal_mask)"),
        open_clip_version=open_clip.__version__, timm_version=timm.__version__,
    )
    return OpenClipImageTower(visual).eval(), meta, preprocess


# ---------------------------------------------------------------------------
# Pretrained checkpoints (--pretrained NAME_OR_DIR)
# ---------------------------------------------------------------------------

# PIL.Image.Resampling values as HF image processors store them (`resample`).
HF_RESAMPLE = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}


def _hf_processor(x: str, S: int, default_cls, default_mean, default_std):
    """The checkpoint's own image processor (AutoImageProcessor, PIL backend, as the random
    path's reference processor) and the model.json preprocess it stands for.  Without one
    (a bare model directory) the family's defaults are used and a warning is printed."""
    from transformers import AutoImageProcessor
    try:
        proc = AutoImageProcessor.from_pretrained(x, backend="pil")
        origin = f"AutoImageProcessor.from_pretrained({x!r}, backend='pil')"
    except (OSError, ValueError) as e:
        print(f"warning: {x} has no image processor config ({type(e).__name__}); using the "
              f"family default {default_cls.__name__} ({S}x{S} bicubic squash, mean "
              f"{default_mean}, std {default_std})", file=sys.stderr)
        proc = default_cls(do_resize=True, size={"height": S, "width": S}, resample=3,
                           do_rescale=True, rescale_factor=1 / 255, do_normalize=True,
                           image_mean=default_mean, image_std=default_std, do_convert_rgb=True)
        origin = f"family default (no processor config in {x})"
    size = dict(proc.size) if proc.size is not None else {}
    size = {k: v for k, v in size.items() if v is not None}
    if set(size) != {"height", "width"} or not (size["height"] == size["width"] == S):
        raise SystemExit(f"{x}: image processor size {size} is not the model's {S}x{S} "
                         "squash resize: not supported by this exporter")
    if getattr(proc, "do_center_crop", False):
        raise SystemExit(f"{x}: image processor centre-crops; not supported for this family")
    if not proc.do_resize or not proc.do_rescale or abs(float(proc.rescale_factor) - 1 / 255) > 1e-9:
        raise SystemExit(f"{x}: image processor do_resize={proc.do_resize} do_rescale="
                         f"{proc.do_rescale} rescale_factor={proc.rescale_factor}: expected a "
                         "resize and a 1/255 rescale")
    resample = int(proc.resample)
    if resample not in HF_RESAMPLE:
        raise SystemExit(f"{x}: unknown resample {proc.resample}")
    if proc.do_normalize:
        mean = [float(v) for v in proc.image_mean]
        std = [float(v) for v in proc.image_std]
    else:
        mean, std = [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]
    pre = dict(size=S, resize_shortest_edge=S, resize="squash", interpolation=HF_RESAMPLE[resample],
               crop="none", crop_offset="floor", mean=mean, std=std)
    ref = dict(kind="hf", cls=type(proc).__name__, module=type(proc).__module__, backend="pil",
               origin=origin)
    return proc, pre, ref


def _hf_config_summary(cfg) -> dict:
    d = cfg.to_diff_dict()
    d.pop("_name_or_path", None)
    return d


def load_siglip(x: str):
    """transformers.SiglipModel.from_pretrained(x) (eager attention)."""
    import transformers
    from transformers import SiglipModel
    from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil
    _quiet_transformers()
    model = SiglipModel.from_pretrained(x, attn_implementation="eager").float().eval()
    cfg, vc = model.config, model.config.vision_config
    if not getattr(vc, "vision_use_head", True):
        raise SystemExit(f"{x}: vision_use_head=False (no MAP head): SiglipModel's image "
                         "features would not be defined")
    S = int(vc.image_size)
    proc, pre, ref_proc = _hf_processor(x, S, SiglipImageProcessorPil, [0.5] * 3, [0.5] * 3)
    tower = SiglipImageTower(model).eval()
    probe = torch.randn(2, 3, S, S, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        ref = model.get_image_features(pixel_values=probe)
        ref = ref.pooler_output if hasattr(ref, "pooler_output") else ref
        assert torch.equal(tower(probe), ref), "SiglipImageTower != get_image_features"
    meta = dict(
        family="siglip", source="hf", model=f"{x} (SiglipModel)", hf_class="SiglipModel",
        embed_dim=int(vc.hidden_size), image_size=S,
        logit_scale=float(model.logit_scale.exp()), logit_bias=float(model.logit_bias),
        scoring="sigmoid", preprocess=pre, reference_processor=ref_proc,
        random_init=dict(how=f"none: SiglipModel.from_pretrained({x!r}, "
                             "attn_implementation='eager')"),
        architecture=dict(
            vision=_vit_summary(
                vc, "MAP head (probe + nn.MultiheadAttention + LayerNorm + MLP)"),
            attn_implementation="eager", config=_hf_config_summary(cfg)),
        text=_text_summary(cfg, "SiglipTokenizer (SentencePiece)", context_length=True),
        transformers_version=transformers.__version__,
    )
    return model, tower, meta, proc


def _blip_checkpoint_temp(x: str):
    """BLIP's learned ITC temperature if the checkpoint files carry a `temp` tensor (the
    original Salesforce/LAVIS checkpoints do; transformers' BlipForImageTextRetrieval has
    no such parameter and drops it on load).  Returns (value, where) or (None, reason)."""
    from transformers.utils import cached_file
    for fname in ("model.safetensors", "pytorch_model.bin"):
        try:
            f = cached_file(x, fname, _raise_exceptions_for_missing_entries=False,
                            _raise_exceptions_for_connection_errors=False)
        except Exception:  # noqa: BLE001  (no such file / offline)
            f = None
        if not f:
            continue
        if fname.endswith(".safetensors"):
            from safetensors import safe_open
            with safe_open(f, framework="pt") as sf:
                keys = [k for k in sf.keys() if k == "temp" or k.endswith(".temp")]
                if keys:
                    return float(sf.get_tensor(keys[0]).reshape(-1)[0]), f"{fname}:{keys[0]}"
        else:
            sd = torch.load(f, map_location="cpu", weights_only=True)
            keys = [k for k in sd if k == "temp" or k.endswith(".temp")]
            if keys:
                return float(sd[keys[0]].reshape(-1)[0]), f"{fname}:{keys[0]}"
        return None, f"{fname} has no 'temp' tensor"
    return None, "no model.safetensors / pytorch_model.bin found"


def load_blip(x: str):
    """transformers.BlipForImageTextRetrieval.from_pretrained(x) (eager attention)."""
    import transformers
    from transformers import BlipForImageTextRetrieval
    from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil
    _quiet_transformers()
    model = BlipForImageTextRetrieval.from_pretrained(x, attn_implementation="eager").float().eval()
    cfg, vc = model.config, model.config.vision_config
    S = int(vc.image_size)
    proc, pre, ref_proc = _hf_processor(x, S, BlipImageProcessorPil, OPENAI_MEAN, OPENAI_STD)
    tower = BlipImageTower(model).eval()
    temp, where = (float(model.temp), "model.temp") if hasattr(model, "temp") \
        else _blip_checkpoint_temp(x)
    if temp is None:
        note = (f"1/temp with BLIP's initial temp {BLIP_TEMP_INIT}: {where}; transformers' "
                "BlipForImageTextRetrieval has no temp parameter (its ITC path returns the plain "
                "cosine), so the trained value is not in the checkpoint")
        temp = BLIP_TEMP_INIT
    else:
        note = f"1/temp with the checkpoint's temp {temp:g} ({where}), clamped to [0.001, 0.5]"
        temp = min(max(temp, 0.001), 0.5)
    meta = dict(
        family="blip", source="hf", model=f"{x} (BlipForImageTextRetrieval)",
        hf_class="BlipForImageTextRetrieval",
        embed_dim=int(cfg.image_text_hidden_size), image_size=S,
        logit_scale=1.0 / temp, logit_bias=None, scoring="softmax", logit_scale_note=note,
        preprocess=pre, reference_processor=ref_proc,
        random_init=dict(how=f"none: BlipForImageTextRetrieval.from_pretrained({x!r}, "
                             "attn_implementation='eager')"),
        architecture=dict(
            vision=_vit_summary(vc, "CLS token"),
            projection=dict(in_features=vc.hidden_size, out_features=cfg.image_text_hidden_size,
                            bias=True),
            attn_implementation="eager", config=_hf_config_summary(cfg)),
        text=_text_summary(cfg, "BertTokenizer (bert-base-uncased WordPiece + [DEC]/[ENC])"),
        transformers_version=transformers.__version__,
    )
    return model, tower, meta, proc


def _openclip_model_name(name: str) -> str:
    """--openclip-model: a built-in open_clip name, or a JSON model config file (a bare
    model config or the hub's open_clip_config.json {"model_cfg": ...}), registered with
    open_clip under the file's stem."""
    import open_clip
    p = Path(name)
    if name.endswith(".json") and p.is_file():
        doc = json.loads(p.read_text())
        mc = doc.get("model_cfg", doc)
        import tempfile
        d = Path(tempfile.mkdtemp(prefix="oc-cfg-"))
        (d / p.name).write_text(json.dumps(mc))
        open_clip.add_model_config(d / p.name)
        name = p.stem
    mc = open_clip.get_model_config(name)
    if mc is None:
        raise SystemExit(f"open_clip has no model config {name!r}")
    if mc.get("vision_cfg", {}).get("timm_model_name") == MCI_TINY_NAME:
        register_mci_tiny()
    return name


def load_mobileclip(x: str, oc_model: str, out: Path):
    """open_clip.create_model_and_transforms(oc_model, pretrained=x) then
    timm.utils.reparameterize_model, as the random path.  x: a checkpoint file, a pretrained
    tag (open_clip downloads it), or a directory with open_clip_config.json +
    open_clip_model.safetensors (the hub layout; loaded as 'local-dir:x').
    Preprocessing: open_clip's preprocess cfg of the loaded model; for a checkpoint FILE
    (open_clip then falls back to the OpenAI defaults, wrong for MobileCLIP2) the
    preprocess_cfg of an open_clip_config.json beside the file, else that of the model's
    pretrained tag (MobileCLIP2-S0: dfndr2b)."""
    import open_clip
    import timm
    from timm.utils import reparameterize_model
    force, pp_origin = {}, None
    if Path(x).is_dir():
        name, kwargs = f"local-dir:{x}", {}
        mc = json.loads((Path(x) / "open_clip_config.json").read_text())["model_cfg"]
        if mc.get("vision_cfg", {}).get("timm_model_name") == MCI_TINY_NAME:
            register_mci_tiny()
        pp_origin = f"{x}/open_clip_config.json preprocess_cfg"
    else:
        name = _openclip_model_name(oc_model)
        kwargs = dict(pretrained=x)
        mc = open_clip.get_model_config(name)
        if Path(x).is_file():
            beside = Path(x).parent / "open_clip_config.json"
            tags = open_clip.list_pretrained_tags_by_model(name)
            if beside.is_file():
                src = json.loads(beside.read_text()).get("preprocess_cfg", {})
                pp_origin = f"{beside} preprocess_cfg"
            elif tags:
                src = open_clip.get_pretrained_cfg(name, tags[0])
                pp_origin = f"open_clip.get_pretrained_cfg({name!r}, {tags[0]!r})"
            else:
                src = {}
                pp_origin = "open_clip defaults (no open_clip_config.json beside the file, no tag)"
                print(f"warning: preprocessing of {x}: {pp_origin}", file=sys.stderr)
            for k, kw in (("mean", "image_mean"), ("std", "image_std"),
                          ("interpolation", "image_interpolation"),
                          ("resize_mode", "image_resize_mode")):
                if src.get(k) is not None:
                    force[kw] = tuple(src[k]) if isinstance(src[k], (list, tuple)) else src[k]
        else:
            pp_origin = f"open_clip.get_pretrained_cfg({name!r}, {x!r})"
    model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained_text=False,
                                                                  **kwargs, **force)
    model.eval()
    pp = open_clip.get_model_preprocess_cfg(model)
    S = int(mc["vision_cfg"]["image_size"])
    S_pp = pp["size"] if isinstance(pp["size"], int) else pp["size"][0]
    if int(S_pp) != S:
        raise SystemExit(f"preprocess size {pp['size']} != image size {S}")
    mode = pp.get("resize_mode", "shortest")
    if mode == "shortest":
        geom = dict(resize="shortest", crop="center", crop_offset="round")
    elif mode == "squash":
        geom = dict(resize="squash", crop="none", crop_offset="floor")
    else:
        raise SystemExit(f"open_clip resize_mode {mode!r} is not supported")
    probe = _calibration_images(2, S, torch.Generator().manual_seed(7))
    with torch.no_grad():
        before = model.encode_image(probe, normalize=False)
        visual = reparameterize_model(model.visual).eval()
        after = visual(probe)
    reparam_diff = float((after - before).abs().max())
    reparam_scale = float(before.abs().max())
    print(f"reparameterized: max|after - before| = {reparam_diff:.3e} (max|before| = "
          f"{reparam_scale:.3e})")
    if not reparam_diff <= 1e-4 * max(1.0, reparam_scale):
        raise SystemExit("reparameterize_model changed the function")
    unfused = sorted(n for n, m in visual.named_modules() if isinstance(m, nn.BatchNorm2d))
    pp_json = {k: (list(v) if isinstance(v, tuple) else v) for k, v in pp.items()
               if k in ("size", "mean", "std", "interpolation", "resize_mode")}
    (out / "open_clip_config.json").write_text(
        json.dumps({"model_cfg": mc, "preprocess_cfg": pp_json}, indent=2) + "\n")
    meta = dict(
        family="mobileclip", source="openclip",
        model=f"{name} pretrained={x}" if kwargs else f"{name}",
        embed_dim=int(mc["embed_dim"]), image_size=S,
        logit_scale=float(model.logit_scale.exp()), logit_bias=None, scoring="softmax",
        preprocess=dict(size=S, resize_shortest_edge=S, interpolation=pp["interpolation"],
                        mean=[float(v) for v in pp["mean"]], std=[float(v) for v in pp["std"]],
                        **geom),
        reference_processor=dict(kind="open_clip", transform=repr(preprocess),
                                 how=f"open_clip.create_model_and_transforms({name!r}"
                                     + (f", pretrained={x!r}" if kwargs else "")
                                     + (f", {', '.join(f'{k}={v!r}' for k, v in force.items())}"
                                        if force else "") + ")",
                                 preprocess_origin=pp_origin),
        random_init=dict(
            how=f"none: open_clip.create_model_and_transforms({name!r}"
                + (f", pretrained={x!r}" if kwargs else "") + "); then "
                "timm.utils.reparameterize_model BEFORE export",
            reparameterize=dict(function="timm.utils.reparameterize_model",
                                max_abs_change=reparam_diff, max_abs_output=reparam_scale,
                                batchnorms_left=len(unfused))),
        architecture=dict(open_clip_config=mc,
                          timm_model=mc["vision_cfg"].get("timm_model_name"),
                          vision_params=int(sum(p.numel() for p in visual.parameters())),
                          stages=(_stage_summary(visual.trunk)
                                  if hasattr(getattr(visual, "trunk", None), "stages") else None)),
        text=dict(exported=False, context_length=int(mc["text_cfg"].get("context_length", 77)),
                  vocab_size=int(mc["text_cfg"].get("vocab_size", 49408)),
                  tokenizer="OpenAI CLIP BPE (open_clip custom_text, no_causal_mask)"),
        open_clip_version=open_clip.__version__, timm_version=timm.__version__,
    )
    return model, OpenClipImageTower(visual).eval(), meta, preprocess


def load_pretrained(family: str, x: str, out: Path, oc_model: str = "MobileCLIP2-S0"):
    """(model, image tower, meta, reference processor) of a real checkpoint."""
    if family == "siglip":
        return load_siglip(x)
    if family == "blip":
        return load_blip(x)
    return load_mobileclip(x, oc_model, out)


# ---------------------------------------------------------------------------
# Reference inputs
# ---------------------------------------------------------------------------

def reference_images() -> tuple[list[str], list]:
    """The RGB-convertible inputs of the preprocessing fixtures, sorted by name.  16-bit
    grayscale (mode I;16) is skipped: PIL's convert("RGB") clips it."""
    from PIL import Image
    names, images, skipped = [], [], []
    for p in sorted(PREPROCESS_FIXTURES.iterdir(), key=lambda p: p.name):
        if p.suffix.lower() not in (".png", ".jpg") or ".expected." in p.name:
            continue
        with Image.open(p) as im:
            if im.mode.startswith("I;16") or im.mode in ("I", "F"):
                skipped.append(f"{p.name} ({im.mode})")
                continue
            images.append(im.convert("RGB"))
        names.append(p.name)
    if skipped:
        print(f"reference images: skipped {', '.join(skipped)}: convert('RGB') clips it")
    return names, images


def reference_pixel_values(meta: dict, proc, images) -> np.ndarray:
    if meta["source"] == "hf":
        rows = [np.asarray(proc(images=im, return_tensors="np")["pixel_values"], dtype=np.float32)
                for im in images]
        return np.concatenate(rows, axis=0)
    return np.stack([proc(im).numpy() for im in images]).astype(np.float32)


# ---------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------

def check_graph(path: Path) -> dict:
    """export_clip.check_graph with the full tract-onnx op list."""
    saved = ec.TRACT_ONNX_OPS
    ec.TRACT_ONNX_OPS = TRACT_ONNX_OPS
    try:
        return ec.check_graph(path)
    finally:
        ec.TRACT_ONNX_OPS = saved


def _session(path: Path):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    return (a64 * b64).sum(1) / (np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1))


def parity(module, sess, make_input, batches=(1, 3)) -> dict:
    rows = {}
    for b in batches:
        x = make_input(b)
        with torch.no_grad():
            ref = module(torch.from_numpy(x)).numpy()
        got = sess.run(None, {"pixel_values": x})[0]
        if got.shape != ref.shape:
            raise RuntimeError(f"shape {got.shape} != torch {ref.shape}")
        diff = float(np.max(np.abs(got - ref)))
        cos = float(_cosines(got, ref).min())
        scale = float(np.max(np.abs(ref)))
        print(f"  batch={b}: out {list(got.shape)}  max|onnx-torch|={diff:.3e}  "
              f"min cosine={cos:.9f}  (max|torch|={scale:.3e})")
        rows[f"batch{b}"] = dict(max_abs_diff=diff, min_cosine=cos, max_abs_torch=scale)
    return rows


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------

def main(argv=None):
    p = argparse.ArgumentParser(
        description="Export the image tower of SigLIP / BLIP / MobileCLIP (random init in the "
                    "exact architecture, or --pretrained) to clip-edge ONNX + model.json.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Examples" + __doc__.split("Examples", 1)[1])
    p.add_argument("--family", required=True, choices=["siglip", "blip", "mobileclip"])
    p.add_argument("--size", default="tiny", choices=["tiny", "full"])
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--pretrained", metavar="NAME_OR_DIR", default=None,
                   help="export a real checkpoint instead of a random model (--size is then "
                        "ignored). siglip: SiglipModel.from_pretrained(NAME_OR_DIR); blip: "
                        "BlipForImageTextRetrieval.from_pretrained(NAME_OR_DIR); mobileclip: "
                        "open_clip.create_model_and_transforms(--openclip-model, "
                        "pretrained=NAME_OR_DIR) (a checkpoint file or a pretrained tag), or a "
                        "directory with open_clip_config.json + weights ('local-dir:')")
    p.add_argument("--openclip-model", default="MobileCLIP2-S0",
                   help="mobileclip --pretrained FILE|TAG: the open_clip model name, or a JSON "
                        "model config file (bare or open_clip_config.json) registered under its "
                        "file stem (default MobileCLIP2-S0)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--plain-init", action="store_true",
                   help="mobileclip: keep timm's default init (conv std 0.02, identity "
                        "BatchNorms, LayerScale 1e-5: every image embeds to the same direction) "
                        "instead of redrawing it (see perturb_mobileclip)")
    p.add_argument("--tolerance", type=float, default=1e-3,
                   help="fail if max abs diff onnxruntime vs torch exceeds this (default 1e-3)")
    a = p.parse_args(argv)

    torch.set_grad_enabled(False)
    t0 = time.time()
    a.out.mkdir(parents=True, exist_ok=True)
    for stale in ("preprocessor_config.json", "open_clip_config.json", "text_encoder.onnx"):
        if (a.out / stale).exists():
            (a.out / stale).unlink()
    if a.pretrained is not None:
        _, tower, meta, proc = load_pretrained(a.family, a.pretrained, a.out, a.openclip_model)
    elif a.family == "siglip":
        tower, meta, proc = build_siglip(a.size, a.seed)
    elif a.family == "blip":
        tower, meta, proc = build_blip(a.size, a.seed)
    else:
        tower, meta, proc = build_mobileclip(a.size, a.seed, a.out, a.plain_init)
    S, D = meta["image_size"], meta["embed_dim"]
    print(f"built {a.family} {a.pretrained or a.size} in {time.time() - t0:.1f}s: D={D} image={S}")

    if meta["source"] == "hf":
        proc.save_pretrained(str(a.out))  # preprocessor_config.json

    path = a.out / "image_encoder.onnx"
    # Random test inputs in the model's input range: seeded synthetic photo-like images
    # in [0, 1] (_calibration_images: mostly low-frequency content) normalised with the
    # model's mean and std.  (Standard-normal inputs, export_clip's choice, are in range
    # for CLIP's normalisation but far out of range for MobileCLIP's mean 0, std 1, where
    # the random network's outputs reach ~150 and absolute differences grow with them.)
    gen = torch.Generator().manual_seed(a.seed + 2000)
    pmean = torch.tensor(meta["preprocess"]["mean"]).view(1, 3, 1, 1)
    pstd = torch.tensor(meta["preprocess"]["std"]).view(1, 3, 1, 1)
    make_pixels = lambda b: ((_calibration_images(b, S, gen) - pmean) / pstd).numpy().astype(
        np.float32)
    t = time.time()
    # traced at batch 2 so nothing gets specialised to batch 1
    ec.export_one(tower, torch.from_numpy(make_pixels(2)), path, "pixel_values", "image_embeds")
    info = check_graph(path)
    size_mb = path.stat().st_size / 1e6
    print(f"exported {path} ({size_mb:.3f} MB, {info['nodes']} nodes, {time.time() - t:.1f}s)  "
          f"inputs={info['inputs']} outputs={info['outputs']}")
    print(f"  ops: {info['ops']}")
    if info["inputs"]["pixel_values"] != ["batch", 3, S, S] or \
            info["outputs"]["image_embeds"] != ["batch", D]:
        raise SystemExit(f"unexpected I/O shapes {info['inputs']} {info['outputs']}")

    sess = _session(path)
    rows = parity(tower, sess, make_pixels)

    # Reference embeddings: the reference processor's pixel_values through PyTorch.
    names, images = reference_images()
    pv = reference_pixel_values(meta, proc, images)
    assert pv.shape == (len(names), 3, S, S), pv.shape
    with torch.no_grad():
        emb = tower(torch.from_numpy(pv)).numpy().astype(np.float32)
    np.save(a.out / "ort_image_embeds.npy", emb)
    ort_emb = np.concatenate([sess.run(None, {"pixel_values": pv[i:i + 1]})[0]
                              for i in range(len(pv))])
    ref_diff = float(np.abs(ort_emb - emb).max())
    ref_cos = float(_cosines(ort_emb, emb).min())
    # How different the images' embeddings are from each other (a degenerate random
    # model maps everything to one direction).
    cos_pairs = _cosines(np.repeat(emb, len(emb), 0), np.tile(emb, (len(emb), 1))).reshape(
        len(emb), len(emb))
    off_diag = ~np.eye(len(emb), dtype=bool)
    spread = float(cos_pairs[off_diag].min())
    closest = float(cos_pairs[off_diag].max())
    i, j = np.unravel_index(np.where(off_diag, cos_pairs, -2.0).argmax(), cos_pairs.shape)
    closest_pair = [names[i], names[j]]
    print(f"  reference images ({len(names)}): max|onnx-torch|={ref_diff:.3e}  "
          f"min cosine={ref_cos:.9f}  (max|torch|={float(np.abs(emb).max()):.3e}; "
          f"cosine between images {spread:.4f} .. {closest:.5f} ({closest_pair[0]} ~ "
          f"{closest_pair[1]}))")
    rows["reference_images"] = dict(max_abs_diff=ref_diff, min_cosine=ref_cos,
                                    max_abs_torch=float(np.abs(emb).max()), count=len(names),
                                    min_cosine_between_images=spread,
                                    max_cosine_between_images=closest)
    worst = max(r["max_abs_diff"] for r in rows.values())
    worst_cos = min(r["min_cosine"] for r in rows.values())
    if not worst <= a.tolerance:
        raise SystemExit(f"max abs diff {worst:.3e} > tolerance {a.tolerance}")
    if not worst_cos >= MIN_COSINE:
        raise SystemExit(f"cosine {worst_cos:.9f} < {MIN_COSINE}")

    image_encoder = dict(file=path.name, input="pixel_values", output="image_embeds",
                         input_shape=info["inputs"]["pixel_values"],
                         output_shape=info["outputs"]["image_embeds"],
                         bytes=path.stat().st_size, sha256=ec.sha256(path))
    versions = {k: meta.pop(k) for k in ("transformers_version", "open_clip_version",
                                         "timm_version") if k in meta}
    import onnx
    import onnxruntime
    doc = dict(
        format="clip-edge-model/1",
        family=meta.pop("family"),
        source=meta.pop("source"),
        model=meta.pop("model"),
        hf_class=meta.pop("hf_class", None),
        pretrained=a.pretrained,
        random_init=None if a.pretrained is not None else a.size,
        seed=a.seed,
        embed_dim=meta.pop("embed_dim"),
        image_size=meta.pop("image_size"),
        logit_scale=meta.pop("logit_scale"),
        logit_bias=meta.pop("logit_bias"),
        scoring=meta.pop("scoring"),
        embeddings_normalized=False,
        preprocess=meta.pop("preprocess"),
        reference_processor=meta.pop("reference_processor"),
        opset=ec.OPSET,
        image_encoder=image_encoder,
        text_encoder=None,
        text=meta.pop("text"),
        architecture=meta.pop("architecture"),
        init=meta.pop("random_init"),
        reference_images=names,
        reference_embeddings=dict(
            file="ort_image_embeds.npy", images_dir=str(PREPROCESS_FIXTURES.relative_to(ROOT)),
            note="PyTorch embeddings (float32 [N,D], one row per reference_images entry, in "
                 "that order) of PIL.Image.open(f).convert('RGB') preprocessed by the "
                 "reference processor; 16-bit grayscale skipped (convert clips it)",
            min_pairwise_cosine=spread, max_pairwise_cosine=closest,
            closest_pair=closest_pair),
        export=dict(exporter="torch.onnx.export(dynamo=False)", do_constant_folding=True,
                    traced_at_batch=2,
                    parity_inputs="synthetic images (_calibration_images, torch seed seed+2000) "
                                  "normalised with preprocess.mean/std, batch 1 and 3; and "
                                  "the reference images",
                    torch_version=torch.__version__.split("+")[0],
                    onnx_version=onnx.__version__, onnxruntime_version=onnxruntime.__version__,
                    **versions,
                    parity_vs_torch=dict(image_encoder=dict(
                        max_abs_diff_vs_torch=worst, min_cosine_vs_torch=worst_cos, **rows)),
                    ops=info["ops"], nodes=info["nodes"],
                    tract_unknown_ops=info["tract_unknown_ops"]),
    )
    if "logit_scale_note" in meta:
        doc["logit_scale_note"] = meta.pop("logit_scale_note")
    assert not meta, f"unused meta keys {sorted(meta)}"
    (a.out / "model.json").write_text(json.dumps(doc, indent=2) + "\n")
    total = sum(f.stat().st_size for f in a.out.iterdir() if f.is_file())
    print(f"wrote {a.out}/model.json; directory {total / 1e6:.3f} MB "
          f"(total {time.time() - t0:.1f}s)")
    print(f"PARITY {a.family}-{a.pretrained or a.size}: max|onnx-torch| {worst:.3e}, min cosine {worst_cos:.9f}, "
          f"image_encoder {size_mb:.3f} MB")


if __name__ == "__main__":
    main()
