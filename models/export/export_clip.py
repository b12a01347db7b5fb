#!/usr/bin/env python3
"""Export a CLIP model (Hugging Face transformers or OpenCLIP) to the two ONNX
graphs + model.json that clip-edge loads.

Interface produced (see models/export/README.md):
  image_encoder.onnx  pixel_values f32 [batch,3,S,S]  -> image_embeds f32 [batch,D]
  text_encoder.onnx   input_ids    i64 [batch,77]     -> text_embeds  f32 [batch,D]
  model.json          metadata (source, dims, logit scale, preprocessing, opset, parity)
Embeddings are the *projected* features, NOT L2-normalised.  Batch is the only
dynamic axis.  Legacy TorchScript exporter (dynamo=False), opset 17, constant folding.

Examples
  # real checkpoints (needs the Hugging Face hub / OpenCLIP download, or local files)
  python export_clip.py --hf openai/clip-vit-base-patch32 --out out/hf-b32
  python export_clip.py --hf /path/to/local/clip-dir --out out/hf-local
  python export_clip.py --openclip ViT-B-32 --pretrained laion2b_s34b_b79k --out out/oc-b32
  python export_clip.py --openclip ViT-B-32 --pretrained /path/open_clip_model.safetensors --out out/oc
  # random-initialised models in the exact public architecture (fully offline)
  python export_clip.py --hf --random tiny --out models/fixtures/hf-tiny
  python export_clip.py --openclip --random tiny --out models/fixtures/openclip-tiny
  python export_clip.py --hf --random vit-b32 --out /tmp/hf-vit-b32-random
"""
from __future__ import annotations

import argparse
import collections
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

HERE = Path(__file__).resolve().parent
OPENCLIP_CONFIG_DIR = HERE / "openclip_configs"

OPSET = 17
CONTEXT_LENGTH = 77
VOCAB_SIZE = 49408
SOT_TOKEN = 49406
EOT_TOKEN = 49407
OPENAI_MEAN = [0.48145466, 0.4578275, 0.40821073]
OPENAI_STD = [0.26862954, 0.26130258, 0.27577711]

# ---------------------------------------------------------------------------
# Random architectures
# ---------------------------------------------------------------------------

# Mirrors the config.json of openai/clip-vit-base-patch32 (transformers CLIPConfig).
HF_VIT_B32 = dict(
    projection_dim=512,
    logit_scale_init_value=2.6592,
    text_config=dict(
        vocab_size=VOCAB_SIZE, hidden_size=512, intermediate_size=2048,
        num_hidden_layers=12, num_attention_heads=8, max_position_embeddings=CONTEXT_LENGTH,
        hidden_act="quick_gelu", layer_norm_eps=1e-5, attention_dropout=0.0,
        initializer_factor=1.0, projection_dim=512,
        # openai/clip-vit-base-patch32 ships the legacy ids (eos_token_id=2), which makes
        # transformers pool at input_ids.argmax(-1) == the EOT (49407) position.
        pad_token_id=1, bos_token_id=0, eos_token_id=2,
    ),
    vision_config=dict(
        hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
        num_attention_heads=12, num_channels=3, image_size=224, patch_size=32,
        hidden_act="quick_gelu", layer_norm_eps=1e-5, attention_dropout=0.0,
        initializer_factor=1.0, projection_dim=512,
    ),
)

# Same structure, small widths.  The text token table (49408 x text hidden) dominates
# the file size: 49408*width*4 B (3.2 MB at width 16), so text width is 8 here
# (1.6 MB table) to keep each fixture directory ~2 MB.
TINY = dict(
    embed_dim=32,
    vision=dict(width=32, layers=2, heads=2, mlp=128, patch=32, image=224),
    text=dict(width=8, layers=2, heads=2, mlp=32),
)


def hf_config_dict(preset: str) -> dict:
    import copy
    cfg = copy.deepcopy(HF_VIT_B32)
    if preset == "vit-b32":
        return cfg
    assert preset == "tiny"
    v, t = TINY["vision"], TINY["text"]
    cfg["projection_dim"] = TINY["embed_dim"]
    cfg["text_config"].update(hidden_size=t["width"], intermediate_size=t["mlp"],
                              num_hidden_layers=t["layers"], num_attention_heads=t["heads"],
                              projection_dim=TINY["embed_dim"])
    cfg["vision_config"].update(hidden_size=v["width"], intermediate_size=v["mlp"],
                                num_hidden_layers=v["layers"], num_attention_heads=v["heads"],
                                patch_size=v["patch"], image_size=v["image"],
                                projection_dim=TINY["embed_dim"])
    return cfg


OPENCLIP_TINY_NAME = "clip-edge-tiny-32"


def openclip_tiny_config() -> dict:
    """Same layout as open_clip's ViT-B-32.json (GELU, argmax pooling, proj matrices)."""
    v, t = TINY["vision"], TINY["text"]
    return {
        "embed_dim": TINY["embed_dim"],
        "vision_cfg": {"image_size": v["image"], "layers": v["layers"], "width": v["width"],
                       "head_width": v["width"] // v["heads"], "mlp_ratio": v["mlp"] / v["width"],
                       "patch_size": v["patch"]},
        "text_cfg": {"context_length": CONTEXT_LENGTH, "vocab_size": VOCAB_SIZE,
                     "width": t["width"], "heads": t["heads"], "layers": t["layers"],
                     "mlp_ratio": t["mlp"] / t["width"]},
    }


# ---------------------------------------------------------------------------
# Wrappers: output exactly the projected, un-normalised embeddings
# ---------------------------------------------------------------------------

class HFImageTower(nn.Module):
    # == CLIPModel.get_image_features (transformers>=5 returns a ModelOutput there, so
    # we spell it out): visual_projection(vision_model(pixel_values).pooler_output)
    def __init__(self, model):
        super().__init__()
        self.vision_model = model.vision_model
        self.visual_projection = model.visual_projection

    def forward(self, pixel_values):
        pooled = self.vision_model(pixel_values=pixel_values).pooler_output
        return self.visual_projection(pooled)


class HFTextTower(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.text_model = model.text_model
        self.text_projection = model.text_projection

    def forward(self, input_ids):
        pooled = self.text_model(input_ids=input_ids).pooler_output
        return self.text_projection(pooled)


class OpenClipImageTower(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, pixel_values):
        return self.model.encode_image(pixel_values, normalize=False)


class OpenClipTextTower(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids):
        return self.model.encode_text(input_ids, normalize=False)


# ---------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------

def load_hf(name: str | None, random: str | None, seed: int, attn: str):
    import transformers
    from transformers import CLIPConfig, CLIPModel

    meta = {"source": "hf", "transformers_version": transformers.__version__}
    if random:
        cfg = CLIPConfig(**hf_config_dict(random))
        cfg._attn_implementation = attn
        torch.manual_seed(seed)
        model = CLIPModel(cfg)
        meta.update(model=f"random-{random} (architecture of openai/clip-vit-base-patch32)",
                    random_init=random, seed=seed)
        mean, std, size = OPENAI_MEAN, OPENAI_STD, cfg.vision_config.image_size
    else:
        model = CLIPModel.from_pretrained(name, attn_implementation=attn)
        meta.update(model=name, random_init=None)
        mean, std, size = OPENAI_MEAN, OPENAI_STD, model.config.vision_config.image_size
        try:
            from transformers import CLIPImageProcessor
            proc = CLIPImageProcessor.from_pretrained(name)
            mean, std = list(proc.image_mean), list(proc.image_std)
            cs = proc.crop_size  # dict in transformers 4.x, SizeDict in 5.x, int in old configs
            size = int(cs if isinstance(cs, (int, float)) else cs["height"])
            if getattr(proc, "resample", 3) not in (3, "bicubic") or not proc.do_center_crop:
                print(f"warning: {name} preprocessor is not bicubic resize + centre crop "
                      f"(resample={proc.resample}, do_center_crop={proc.do_center_crop})",
                      file=sys.stderr)
        except Exception as e:  # no preprocessor_config.json: fall back to OpenAI values
            print(f"warning: no usable CLIPImageProcessor for {name} ({e}); using OpenAI "
                  "mean/std", file=sys.stderr)
    model.eval()
    tc = model.config.text_config
    meta.update(
        embed_dim=int(model.config.projection_dim),
        image_size=int(model.config.vision_config.image_size),
        context_length=int(tc.max_position_embeddings),
        vocab_size=int(tc.vocab_size),
        logit_scale=float(model.logit_scale.detach().exp()),
        logit_bias=None,
        text_pooling="argmax" if tc.eos_token_id == 2 else f"first index of eos id {tc.eos_token_id}",
        preprocess=dict(size=int(size), resize="shortest", interpolation="bicubic",
                        crop="center", mean=[float(x) for x in mean], std=[float(x) for x in std]),
        architecture=dict(
            vision=dict(width=model.config.vision_config.hidden_size,
                        layers=model.config.vision_config.num_hidden_layers,
                        heads=model.config.vision_config.num_attention_heads,
                        patch_size=model.config.vision_config.patch_size,
                        act=model.config.vision_config.hidden_act),
            text=dict(width=tc.hidden_size, layers=tc.num_hidden_layers,
                      heads=tc.num_attention_heads, act=tc.hidden_act),
            attn_implementation=attn),
    )
    return HFImageTower(model).eval(), HFTextTower(model).eval(), meta


def load_openclip(arch: str | None, pretrained: str | None, random: str | None, seed: int):
    import open_clip
    from open_clip.model import get_model_preprocess_cfg

    meta = {"source": "openclip", "open_clip_version": open_clip.__version__}
    # registers clip-edge-tiny-32 (usable as ARCH with --pretrained FILE too)
    open_clip.add_model_config(OPENCLIP_CONFIG_DIR)
    if random:
        if random == "tiny":
            if arch not in (None, OPENCLIP_TINY_NAME):
                raise SystemExit(f"--random tiny uses the built-in config {OPENCLIP_TINY_NAME}; "
                                 f"drop the ARCH ({arch}) or pass it")
            arch = OPENCLIP_TINY_NAME
        else:
            arch = arch or "ViT-B-32"
        torch.manual_seed(seed)
        model = open_clip.create_model(arch, pretrained=None, pretrained_text=False)
        meta.update(model=arch, pretrained=None, random_init=random, seed=seed)
    else:
        if not arch:
            raise SystemExit("--openclip needs an ARCH (e.g. ViT-B-32) unless --random is given")
        model = open_clip.create_model(arch, pretrained=pretrained)
        meta.update(model=arch, pretrained=pretrained, random_init=None)
    model.eval()
    if not isinstance(model, open_clip.CLIP):
        print(f"warning: {type(model).__name__} is not a plain open_clip.CLIP; its text tower "
              "may not use the OpenAI BPE tokenizer clip-edge implements", file=sys.stderr)
    pp = get_model_preprocess_cfg(model)
    size = pp.get("size", 224)
    size = int(size[0] if isinstance(size, (tuple, list)) else size)
    ctx = int(getattr(model, "context_length", CONTEXT_LENGTH))
    vocab = int(getattr(model, "vocab_size", VOCAB_SIZE))
    lb = getattr(model, "logit_bias", None)
    visual = model.visual
    proj = getattr(model, "text_projection", None)
    embed_dim = (int(proj.shape[1]) if isinstance(proj, torch.Tensor)
                 else int(visual.output_dim))
    meta.update(
        embed_dim=embed_dim,
        image_size=size,
        context_length=ctx,
        vocab_size=vocab,
        logit_scale=float(model.logit_scale.detach().exp()),
        logit_bias=None if lb is None else float(lb.detach()),
        text_pooling=getattr(model, "text_pool_type", "argmax"),
        preprocess=dict(size=size, resize=pp.get("resize_mode", "shortest"),
                        interpolation=pp.get("interpolation", "bicubic"), crop="center",
                        mean=[float(x) for x in pp.get("mean", OPENAI_MEAN)],
                        std=[float(x) for x in pp.get("std", OPENAI_STD)]),
        architecture=dict(open_clip_config=open_clip.get_model_config(arch)),
    )
    return OpenClipImageTower(model).eval(), OpenClipTextTower(model).eval(), meta


# ---------------------------------------------------------------------------
# Export + checks
# ---------------------------------------------------------------------------

# Op types implemented by tract-onnx 0.23.9 that these graphs can plausibly use.
TRACT_ONNX_OPS = set("""
Abs Add And ArgMax ArgMin Cast CastLike Ceil Clip Concat Constant ConstantOfShape Conv Cos
CumSum Div Einsum Equal Erf Exp Expand Flatten Floor Gather GatherElements GatherND Gelu Gemm
Greater GreaterOrEqual Identity If LayerNormalization Less LessOrEqual Log MatMul Max Min Mod
Mul Neg Not Or Pad Pow Range Reciprocal ReduceL2 ReduceMax ReduceMean ReduceMin ReduceProd
ReduceSum Relu Reshape Shape Sigmoid Sign Sin Size Slice Softmax Split Sqrt Squeeze Sub Sum
Tanh Tile Transpose Trilu Unsqueeze Where
""".split())


def synthetic_token_ids(batch: int, rng: np.random.Generator) -> np.ndarray:
    """OpenAI layout: SOT, tokens, EOT, zero padding.  Real BPE ids via open_clip if present."""
    prompts = ["a photo of a cat", "a photo of a dog", "a diagram",
               "a blurry photo of a red car on a street at night", "x"]
    try:
        import open_clip
        ids = open_clip.tokenize([prompts[i % len(prompts)] for i in range(batch)],
                                 context_length=CONTEXT_LENGTH).numpy().astype(np.int64)
        assert (ids[:, 0] == SOT_TOKEN).all()
        return ids
    except ImportError:
        ids = np.zeros((batch, CONTEXT_LENGTH), dtype=np.int64)
        for b in range(batch):
            n = int(rng.integers(1, 20))
            ids[b, 0] = SOT_TOKEN
            ids[b, 1:1 + n] = rng.integers(256, SOT_TOKEN, size=n)
            ids[b, 1 + n] = EOT_TOKEN
        return ids


def export_one(module, example, path: Path, in_name: str, out_name: str):
    # nn.MultiheadAttention (OpenCLIP's attention) takes a fused fast path
    # (aten::_native_multi_head_attention) in eval + no_grad, which the ONNX exporter
    # cannot translate.  Disabling the fast path makes it trace as the plain
    # in_proj MatMul / Softmax / out_proj graph; the maths is identical.
    fast = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        _export(module, example, path, in_name, out_name)
    finally:
        torch.backends.mha.set_fastpath_enabled(fast)


def _export(module, example, path: Path, in_name: str, out_name: str):
    import warnings
    with torch.no_grad(), warnings.catch_warnings():
        # Known-benign noise: the legacy-exporter deprecation notice; TracerWarnings for
        # shape checks (static 224 / 77, fine since only batch is dynamic); and the
        # aten::index note about negative indices (our indices come from ArgMax, >= 0).
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=".*aten::index operator of advanced indexing.*")
        torch.onnx.export(
            module, (example,), str(path),
            input_names=[in_name], output_names=[out_name],
            dynamic_axes={in_name: {0: "batch"}, out_name: {0: "batch"}},
            opset_version=OPSET, do_constant_folding=True, dynamo=False,
        )


def describe_io(vi):
    dims = []
    for d in vi.type.tensor_type.shape.dim:
        dims.append(d.dim_param if d.dim_param else d.dim_value)
    return dims


def check_graph(path: Path) -> dict:
    import onnx
    m = onnx.load(str(path))
    onnx.checker.check_model(m, full_check=True)
    ops = collections.Counter(n.op_type for n in m.graph.node)
    domains = sorted({n.domain or "ai.onnx" for n in m.graph.node})
    ins = {i.name: describe_io(i) for i in m.graph.input}
    outs = {o.name: describe_io(o) for o in m.graph.output}
    for name, dims in list(ins.items()) + list(outs.items()):
        dyn = [d for d in dims[1:] if not isinstance(d, int) or d <= 0]
        if dyn or not isinstance(dims[0], str):
            raise RuntimeError(f"{path.name}: {name} dims {dims}: batch must be the only dynamic axis")
    unknown = sorted(set(ops) - TRACT_ONNX_OPS)
    if unknown:
        print(f"warning: {path.name} uses ops not in the tract-onnx allow-list: {unknown}",
              file=sys.stderr)
    return dict(ops=dict(sorted(ops.items())), domains=domains, inputs=ins, outputs=outs,
                opset=[(o.domain or "ai.onnx", o.version) for o in m.opset_import],
                nodes=len(m.graph.node), tract_unknown_ops=unknown)


def parity(module, path: Path, in_name: str, make_input, batches=(1, 3)) -> float:
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    worst = 0.0
    for b in batches:
        x = make_input(b)
        with torch.no_grad():
            ref = module(torch.from_numpy(x)).numpy()
        got = sess.run(None, {in_name: x})[0]
        if got.shape != ref.shape:
            raise RuntimeError(f"{path.name}: shape {got.shape} != torch {ref.shape}")
        diff = float(np.max(np.abs(got - ref)))
        scale = float(np.max(np.abs(ref)))
        print(f"  {path.name} batch={b}: out {list(got.shape)}  max|onnx-torch|={diff:.3e}"
              f"  (max|torch|={scale:.3e})")
        worst = max(worst, diff)
    return worst


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def main(argv=None):
    p = argparse.ArgumentParser(
        description="Export CLIP (HF transformers or OpenCLIP) to clip-edge ONNX "
                    "(image_encoder.onnx, text_encoder.onnx, model.json).",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("Examples", 1)[1])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--hf", nargs="?", const="", metavar="NAME_OR_DIR",
                     help="transformers CLIPModel: hub name (openai/clip-vit-base-patch32) or local "
                          "directory.  With --random the name may be omitted.")
    src.add_argument("--openclip", nargs="?", const="", metavar="ARCH",
                     help="OpenCLIP architecture (ViT-B-32, ViT-B-32-quickgelu, ...).  With --random "
                          "tiny it may be omitted (uses openclip_configs/clip-edge-tiny-32.json).")
    p.add_argument("--pretrained", metavar="TAG_OR_FILE",
                   help="OpenCLIP pretrained tag (laion2b_s34b_b79k, openai, ...) or local checkpoint")
    p.add_argument("--random", choices=["tiny", "vit-b32"],
                   help="random-initialised model in the exact architecture (no download)")
    p.add_argument("--seed", type=int, default=0, help="seed for --random and test inputs (default 0)")
    p.add_argument("--out", required=True, type=Path, help="output directory")
    p.add_argument("--image-only", action="store_true", help="skip the text encoder")
    p.add_argument("--attn", default="eager", choices=["eager", "sdpa"],
                   help="HF attention implementation used for tracing (default eager: plain "
                        "MatMul/Softmax, explicit causal mask)")
    p.add_argument("--no-verify", action="store_true", help="skip the onnxruntime parity check")
    p.add_argument("--outliers", type=int, default=0, metavar="N",
                   help="give N channels of every LayerNorm feeding linear layers in the image "
                        "tower the outliers of a trained model (10-100x, offset), without changing "
                        "its function (see outliers.py); recorded in model.json")
    p.add_argument("--tolerance", type=float, default=1e-3,
                   help="fail if max abs diff onnxruntime vs torch exceeds this (default 1e-3)")
    a = p.parse_args(argv)

    if a.hf is not None:
        if not a.hf and not a.random:
            p.error("--hf needs NAME_OR_DIR unless --random is given")
        if a.pretrained:
            p.error("--pretrained is for --openclip")
    if a.openclip is not None and not a.random and not a.pretrained:
        p.error("--openclip ARCH needs --pretrained TAG_OR_FILE (or --random)")

    torch.set_grad_enabled(False)
    torch.manual_seed(a.seed)
    t0 = time.time()
    if a.hf is not None:
        img, txt, meta = load_hf(a.hf or None, a.random, a.seed, a.attn)
    else:
        img, txt, meta = load_openclip(a.openclip or None, a.pretrained, a.random, a.seed)
    print(f"loaded {meta['source']} {meta['model']} in {time.time() - t0:.1f}s: "
          f"D={meta['embed_dim']} image={meta['image_size']} ctx={meta['context_length']}")
    if meta["image_size"] != 224 or meta["context_length"] != CONTEXT_LENGTH \
            or meta["vocab_size"] != VOCAB_SIZE:
        print("warning: clip-edge expects 224x224 images, 77-token context and the 49408-token "
              "OpenAI vocabulary; this model differs (recorded in model.json)", file=sys.stderr)

    outliers = None
    if a.outliers:
        from outliers import inject_outliers
        probe = torch.from_numpy(np.random.default_rng(a.seed + 1).standard_normal(
            (2, 3, meta["image_size"], meta["image_size"])).astype(np.float32))
        before = img(probe)
        outliers = inject_outliers(img, meta["source"], a.outliers, a.seed)
        change = float((img(probe) - before).abs().max() / before.abs().max())
        print(f"injected {a.outliers} outlier channel(s) into {len(outliers)} LayerNorms; "
              f"embedding change max|after - before| / max|before| = {change:.1e}")
        if not change <= 1e-4:
            raise SystemExit(f"outlier injection changed the embedding ({change:.1e} > 1e-4)")

    a.out.mkdir(parents=True, exist_ok=True)
    S = meta["image_size"]
    rng = np.random.default_rng(a.seed)
    make_pixels = lambda b: rng.standard_normal((b, 3, S, S)).astype(np.float32)
    make_ids = lambda b: synthetic_token_ids(b, rng)

    jobs = [("image_encoder.onnx", img, "pixel_values", "image_embeds", make_pixels)]
    if not a.image_only:
        jobs.append(("text_encoder.onnx", txt, "input_ids", "text_embeds", make_ids))

    files, report = {}, {}
    for fname, mod, iname, oname, mk in jobs:
        path = a.out / fname
        t = time.time()
        # trace at batch 2 so nothing gets specialised to batch 1
        export_one(mod, torch.from_numpy(mk(2)), path, iname, oname)
        info = check_graph(path)
        print(f"exported {path} ({path.stat().st_size / 1e6:.2f} MB, {info['nodes']} nodes, "
              f"{time.time() - t:.1f}s)  inputs={info['inputs']} outputs={info['outputs']}")
        print(f"  ops: {info['ops']}")
        diff = None
        if not a.no_verify:
            diff = parity(mod, path, iname, mk)
            if not diff <= a.tolerance:
                raise SystemExit(f"{fname}: max abs diff {diff:.3e} > tolerance {a.tolerance}")
        files[fname.split(".")[0]] = dict(
            file=fname, input=iname, output=oname,
            input_shape=info["inputs"][iname], output_shape=info["outputs"][oname],
            bytes=path.stat().st_size, sha256=sha256(path))
        report[fname.split(".")[0]] = dict(max_abs_diff_vs_torch=diff, ops=info["ops"])
    if a.image_only:
        stale = a.out / "text_encoder.onnx"
        if stale.exists():
            stale.unlink()

    doc = dict(
        format="clip-edge-model/1",
        source=meta.pop("source"),
        model=meta.pop("model"),
        pretrained=meta.pop("pretrained", None),
        random_init=meta.pop("random_init", None),
        seed=meta.pop("seed", None),
        embed_dim=meta.pop("embed_dim"),
        image_size=meta.pop("image_size"),
        context_length=meta.pop("context_length"),
        vocab_size=meta.pop("vocab_size"),
        logit_scale=meta.pop("logit_scale"),
        logit_bias=meta.pop("logit_bias"),
        embeddings_normalized=False,
        tokenizer=dict(type="openai-clip-bpe", sot_token=SOT_TOKEN, eot_token=EOT_TOKEN,
                       pad_token=0, context_length=CONTEXT_LENGTH, lowercase=True,
                       text_pooling=meta.pop("text_pooling")),
        preprocess=meta.pop("preprocess"),
        opset=OPSET,
        image_encoder=files.get("image_encoder"),
        text_encoder=files.get("text_encoder"),
        architecture=meta.pop("architecture"),
        image_outliers=outliers,
        export=dict(exporter="torch.onnx.export(dynamo=False)", do_constant_folding=True,
                    torch_version=torch.__version__.split("+")[0],
                    parity_vs_torch=report, **meta),
    )
    (a.out / "model.json").write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {a.out / 'model.json'}  (total {time.time() - t0:.1f}s)")


if __name__ == "__main__":
    main()
