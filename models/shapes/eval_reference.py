#!/usr/bin/env python3
"""Reference zero-shot top-1 of the exported ONNX encoders on eval/ (Python).

For each label: text embedding of "a photo of a {label}." (OpenAI CLIP BPE,
77 tokens) from text_encoder.onnx, L2-normalised.  Each image: preprocessed
exactly as transformers' CLIPImageProcessor with CLIP defaults (shortest edge
224, bicubic, centre crop 224, rescale 1/255, CLIP mean/std; constructed
directly, no hub download), embedded with image_encoder.onnx, L2-normalised;
prediction = argmax cosine similarity.

Prints top-1 accuracy, per-class accuracy and the confusions; exits non-zero
on any error, or if accuracy is below --min-acc (default 0: never).

Example:
    python3 eval_reference.py                 # uses this directory
    python3 eval_reference.py --json out.json # also write per-image results
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import clip_bpe  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", default=HERE, help="dir with image_encoder.onnx, text_encoder.onnx, labels.txt")
    ap.add_argument("--eval-dir", default=None, help="ImageFolder root (default <model-dir>/eval)")
    ap.add_argument("--template", default="a photo of a {}.")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--min-acc", type=float, default=0.0, help="exit 1 if top-1 is below this (0..1)")
    ap.add_argument("--json", default=None, help="write per-image predictions here")
    a = ap.parse_args()

    import onnxruntime as ort
    from PIL import Image
    from transformers import CLIPImageProcessor

    eval_dir = a.eval_dir or os.path.join(a.model_dir, "eval")
    with open(os.path.join(a.model_dir, "labels.txt")) as f:
        labels = [l.strip() for l in f if l.strip()]

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    img_sess = ort.InferenceSession(os.path.join(a.model_dir, "image_encoder.onnx"), so,
                                    providers=["CPUExecutionProvider"])
    txt_sess = ort.InferenceSession(os.path.join(a.model_dir, "text_encoder.onnx"), so,
                                    providers=["CPUExecutionProvider"])

    ids = clip_bpe.tokenize([a.template.format(l) for l in labels])
    t = txt_sess.run(["text_embeds"], {"input_ids": ids})[0]
    t = t / np.linalg.norm(t, axis=1, keepdims=True)

    proc = CLIPImageProcessor(
        do_resize=True, size={"shortest_edge": 224}, resample=Image.BICUBIC,
        do_center_crop=True, crop_size={"height": 224, "width": 224},
        do_rescale=True, rescale_factor=1 / 255, do_normalize=True,
        image_mean=[0.48145466, 0.4578275, 0.40821073], image_std=[0.26862954, 0.26130258, 0.27577711],
        do_convert_rgb=True,
    )

    items = []
    for d in sorted(os.listdir(eval_dir)):
        p = os.path.join(eval_dir, d)
        if not os.path.isdir(p):
            continue
        lab = d.replace("_", " ")
        if lab not in labels:
            raise SystemExit(f"eval class {d!r} is not in labels.txt")
        for fn in sorted(os.listdir(p)):
            if fn.lower().endswith((".png", ".jpg", ".jpeg")):
                items.append((os.path.join(p, fn), labels.index(lab)))
    if not items:
        raise SystemExit(f"no images under {eval_dir}")

    preds, scores = [], []
    for i in range(0, len(items), a.batch):
        chunk = items[i:i + a.batch]
        imgs = [Image.open(path).convert("RGB") for path, _ in chunk]
        pv = proc(images=imgs, return_tensors="np")["pixel_values"].astype(np.float32)
        e = img_sess.run(["image_embeds"], {"pixel_values": pv})[0]
        e = e / np.linalg.norm(e, axis=1, keepdims=True)
        sim = e @ t.T
        preds.extend(sim.argmax(1).tolist())
        scores.extend(sim.max(1).tolist())

    y = np.array([c for _, c in items])
    p = np.array(preds)
    acc = float((p == y).mean())
    print(f"zero-shot top-1: {acc * 100:.2f}% ({int((p == y).sum())}/{len(y)}) "
          f"template={a.template!r} classes={len(labels)}")
    print("per-class accuracy (only classes below 100% and their confusions):")
    conf = collections.Counter()
    for yi, pi in zip(y, p):
        if yi != pi:
            conf[(labels[yi], labels[pi])] += 1
    per = {}
    for ci, lab in enumerate(labels):
        m = y == ci
        if m.any():
            per[lab] = float((p[m] == ci).mean())
            if per[lab] < 1.0:
                wrong = ", ".join(f"{pl} x{n}" for (tl, pl), n in conf.items() if tl == lab)
                print(f"  {lab:16s} {per[lab] * 100:5.1f}%  -> {wrong}")
    if all(v == 1.0 for v in per.values()):
        print("  (all classes 100%)")
    colour_ok = np.mean([labels[a_].split()[0] == labels[b_].split()[0] for a_, b_ in zip(y, p)])
    shape_ok = np.mean([labels[a_].split()[1] == labels[b_].split()[1] for a_, b_ in zip(y, p)])
    print(f"colour correct: {colour_ok * 100:.2f}%   shape correct: {shape_ok * 100:.2f}%")

    if a.json:
        with open(a.json, "w") as f:
            json.dump({"top1": acc, "per_class": per,
                       "images": [{"path": os.path.relpath(path, eval_dir), "label": labels[c],
                                   "pred": labels[pi], "cos": round(s, 5)}
                                  for (path, c), pi, s in zip(items, preds, scores)]}, f, indent=1)
    if acc < a.min_acc:
        print(f"FAIL: top-1 {acc:.4f} < --min-acc {a.min_acc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
