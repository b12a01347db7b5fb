#!/usr/bin/env python3
"""Export a trained shapes-CLIP checkpoint to ONNX + model.json and verify it.

Writes into --out:
  image_encoder.onnx  pixel_values f32 [batch,3,224,224] -> image_embeds f32 [batch,64]
  text_encoder.onnx   input_ids   i64 [batch,77]        -> text_embeds  f32 [batch,64]
  model.json          architecture, logit scale, preprocessing, labels, training settings
  labels.txt          one label per line

The encoders are exactly transformers' CLIPVisionModelWithProjection /
CLIPTextModelWithProjection (weights split out of the trained CLIPModel);
embeddings are projected but NOT L2-normalised.  Both exports are checked
against PyTorch with onnxruntime (max abs diff), including a batch size other
than the one used for tracing.

Example:
    python3 export.py --ckpt checkpoints/shapes_clip.pt --out .
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import clip_bpe  # noqa: E402
import shapes_data as sd  # noqa: E402

OPSET = 17


class ImageEncoder(torch.nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, pixel_values):
        return self.m(pixel_values=pixel_values).image_embeds


class TextEncoder(torch.nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, input_ids):
        return self.m(input_ids=input_ids).text_embeds


def load_towers(ckpt_path):
    from transformers import (CLIPConfig, CLIPModel, CLIPTextModelWithProjection,
                              CLIPVisionModelWithProjection)

    ck = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    cfg = CLIPConfig(text_config=dict(ck["text"]), vision_config=dict(ck["vision"]),
                     projection_dim=ck["projection_dim"])
    for c in (cfg, cfg.text_config, cfg.vision_config):
        c._attn_implementation = "eager"
    full = CLIPModel(cfg)
    full.load_state_dict(ck["state_dict"])
    full.eval()
    sdict = full.state_dict()

    vcfg = cfg.vision_config
    vcfg.projection_dim = ck["projection_dim"]
    tcfg = cfg.text_config
    tcfg.projection_dim = ck["projection_dim"]
    vis = CLIPVisionModelWithProjection(vcfg)
    txt = CLIPTextModelWithProjection(tcfg)
    for tower, prefixes in ((vis, ("vision_model.", "visual_projection.")),
                            (txt, ("text_model.", "text_projection."))):
        sub = {k: v for k, v in sdict.items() if k.startswith(prefixes)}
        missing, unexpected = tower.load_state_dict(sub, strict=False)
        missing = [k for k in missing if not k.endswith("position_ids")]
        if missing or unexpected:
            raise RuntimeError(f"state dict mismatch: missing={missing} unexpected={unexpected}")
        tower.eval()
    return ck, cfg, full, vis, txt


def export(ckpt_path, out_dir):
    import onnx
    import onnxruntime as ort

    os.makedirs(out_dir, exist_ok=True)
    ck, cfg, full, vis, txt = load_towers(ckpt_path)
    img_path = os.path.join(out_dir, "image_encoder.onnx")
    txt_path = os.path.join(out_dir, "text_encoder.onnx")

    gen = torch.Generator().manual_seed(0)
    dummy_img = torch.randn(2, 3, 224, 224, generator=gen)
    dummy_ids = torch.from_numpy(clip_bpe.tokenize(["a photo of a red triangle.", "a blue star"]))

    with torch.no_grad():
        torch.onnx.export(ImageEncoder(vis), (dummy_img,), img_path, dynamo=False,
                          input_names=["pixel_values"], output_names=["image_embeds"],
                          dynamic_axes={"pixel_values": {0: "batch"}, "image_embeds": {0: "batch"}},
                          opset_version=OPSET, do_constant_folding=True)
        torch.onnx.export(TextEncoder(txt), (dummy_ids,), txt_path, dynamo=False,
                          input_names=["input_ids"], output_names=["text_embeds"],
                          dynamic_axes={"input_ids": {0: "batch"}, "text_embeds": {0: "batch"}},
                          opset_version=OPSET, do_constant_folding=True)
    for p in (img_path, txt_path):
        onnx.checker.check_model(onnx.load(p))

    # ---- verify against PyTorch (the towers and the full CLIPModel)
    rng = np.random.default_rng(1)
    x = torch.from_numpy(rng.standard_normal((5, 3, 224, 224)).astype(np.float32))
    prompts = ["a photo of a {}.".format(l) for l in sd.LABELS]
    ids = torch.from_numpy(clip_bpe.tokenize(prompts))
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    si = ort.InferenceSession(img_path, so, providers=["CPUExecutionProvider"])
    st = ort.InferenceSession(txt_path, so, providers=["CPUExecutionProvider"])
    with torch.no_grad():
        ref_i = vis(pixel_values=x).image_embeds.numpy()
        ref_t = txt(input_ids=ids).text_embeds.numpy()
        full_i = full.visual_projection(full.vision_model(pixel_values=x).pooler_output).numpy()
        full_t = full.text_projection(full.text_model(input_ids=ids).pooler_output).numpy()
    got_i = si.run(["image_embeds"], {"pixel_values": x.numpy()})[0]
    got_t = st.run(["text_embeds"], {"input_ids": ids.numpy()})[0]
    got_i1 = si.run(["image_embeds"], {"pixel_values": x.numpy()[:1]})[0]
    diffs = {
        "image_encoder_vs_torch_max_abs": float(np.abs(got_i - ref_i).max()),
        "image_encoder_batch1_vs_batch5_max_abs": float(np.abs(got_i1 - got_i[:1]).max()),
        "text_encoder_vs_torch_max_abs": float(np.abs(got_t - ref_t).max()),
        "towers_vs_clipmodel_max_abs": float(max(np.abs(ref_i - full_i).max(), np.abs(ref_t - full_t).max())),
    }
    print("export check:", json.dumps(diffs), flush=True)
    if max(diffs.values()) > 1e-3:
        raise SystemExit(f"ONNX export mismatch: {diffs}")

    def io(sess):
        return {"inputs": [{"name": i.name, "type": i.type, "shape": i.shape} for i in sess.get_inputs()],
                "outputs": [{"name": o.name, "type": o.type, "shape": o.shape} for o in sess.get_outputs()]}

    logit_scale = float(full.logit_scale.detach())
    labels = list(sd.LABELS)
    with open(os.path.join(out_dir, "labels.txt"), "w") as f:
        f.write("\n".join(labels) + "\n")

    vc = {k: getattr(cfg.vision_config, k) for k in
          ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
           "patch_size", "image_size", "num_channels", "hidden_act", "layer_norm_eps")}
    tc = {k: getattr(cfg.text_config, k) for k in
          ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
           "max_position_embeddings", "hidden_act", "layer_norm_eps",
           "bos_token_id", "eos_token_id", "pad_token_id")}
    meta = {
        "name": "shapes-clip-tiny",
        "description": "Tiny CLIP (transformers CLIPModel architecture) trained from scratch on "
                       "procedurally generated coloured shapes, for zero-shot classification demos/tests.",
        "architecture": {
            "model_type": "clip",
            "projection_dim": cfg.projection_dim,
            "vision_config": vc,
            "text_config": tc,
            "text_pooling": "hidden state at the first EOT token (id 49407) after final_layer_norm",
            "vision_pooling": "CLS token after post_layernorm",
        },
        "logit_scale": logit_scale,
        "logit_scale_exp": math.exp(logit_scale),
        "embeddings_normalised": False,
        "preprocessing": {
            "resize_shortest_edge": 224, "resample": "bicubic", "center_crop": [224, 224],
            "rescale_factor": 1 / 255, "image_mean": list(sd.CLIP_MEAN), "image_std": list(sd.CLIP_STD),
            "layout": "NCHW RGB float32",
        },
        "tokenizer": {
            "type": "OpenAI CLIP BPE (bpe_simple_vocab_16e6)", "context_length": 77,
            "sot_token_id": clip_bpe.SOT, "eot_token_id": clip_bpe.EOT, "pad_token_id": clip_bpe.PAD,
            "lowercase": True,
        },
        "zero_shot_template": "a photo of a {}.",
        "labels": labels,
        "files": {
            "image_encoder": {"path": "image_encoder.onnx", **io(si)},
            "text_encoder": {"path": "text_encoder.onnx", **io(st)},
        },
        "onnx": {"opset": OPSET, "exporter": "torch.onnx.export(dynamo=False)",
                 "torch": torch.__version__, "check": diffs},
        **ck.get("meta", {}),
    }
    with open(os.path.join(out_dir, "model.json"), "w") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")
    for p in (img_path, txt_path):
        print(f"wrote {p} ({os.path.getsize(p) / 1e6:.2f} MB)")
    return diffs


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", default=os.path.join(HERE, "checkpoints", "shapes_clip.pt"))
    ap.add_argument("--out", default=HERE)
    a = ap.parse_args()
    export(a.ckpt, a.out)


if __name__ == "__main__":
    main()
