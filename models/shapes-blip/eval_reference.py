#!/usr/bin/env python3
"""Reference zero-shot top-1 of the exported shapes-BLIP ONNX encoders (Python).

Text: for each label of ../shapes/labels.txt, "a photo of a {label}." tokenised with
tokenizer.json through transformers' BertTokenizerFast(tokenizer_file=...) with
padding="max_length", max_length=35, truncation=True -> input_ids + attention_mask
-> text_encoder.onnx -> text_embeds, L2-normalised.

Images: ImageFolder ../shapes/eval/<label_with_underscores>/*.png, RGB, preprocessed by
transformers' BlipImageProcessor (PIL backend: BlipImageProcessorPil; squash to
384x384 bicubic, rescale 1/255, OpenAI CLIP mean/std; constructed directly, no hub
download) -> image_encoder.onnx -> image_embeds, L2-normalised.

Prediction = argmax cosine (the softmax of cosine * logit_scale from model.json
has the same argmax).  Prints top-1, per-class misses, colour/shape accuracy; exits
1 if top-1 is below --min-acc (default 0: never).

Example (from this directory):
    python3 eval_reference.py
    python3 eval_reference.py --json /tmp/eval.json --min-acc 0.9
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SHAPES = os.path.join(os.path.dirname(HERE), "shapes")
MEAN = [0.48145466, 0.4578275, 0.40821073]
STD = [0.26862954, 0.26130258, 0.27577711]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", default=HERE, help="dir with image_encoder.onnx, text_encoder.onnx, tokenizer.json")
    ap.add_argument("--eval-dir", default=os.path.join(SHAPES, "eval"))
    ap.add_argument("--labels", default=os.path.join(SHAPES, "labels.txt"))
    ap.add_argument("--template", default="a photo of a {}.")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--min-acc", type=float, default=0.0)
    ap.add_argument("--json", default=None, help="write per-image predictions here")
    a = ap.parse_args()

    import onnxruntime as ort
    from PIL import Image
    from transformers import BertTokenizerFast
    from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil

    with open(a.labels) as f:
        labels = [l.strip() for l in f if l.strip()]
    with open(os.path.join(a.model_dir, "model.json")) as f:
        meta = json.load(f)
    S = int(meta["image_size"])

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    img_sess = ort.InferenceSession(os.path.join(a.model_dir, "image_encoder.onnx"), so,
                                    providers=["CPUExecutionProvider"])
    txt_sess = ort.InferenceSession(os.path.join(a.model_dir, "text_encoder.onnx"), so,
                                    providers=["CPUExecutionProvider"])

    tok = BertTokenizerFast(tokenizer_file=os.path.join(a.model_dir, "tokenizer.json"))
    enc = tok([a.template.format(l) for l in labels], padding="max_length", max_length=35,
              truncation=True, return_tensors="np")
    t = txt_sess.run(["text_embeds"], {"input_ids": enc["input_ids"].astype(np.int64),
                                        "attention_mask": enc["attention_mask"].astype(np.int64)})[0]
    t = t / np.linalg.norm(t, axis=1, keepdims=True)

    proc = BlipImageProcessorPil(
        do_resize=True, size={"height": S, "width": S}, resample=Image.BICUBIC,
        do_rescale=True, rescale_factor=1 / 255, do_normalize=True,
        image_mean=MEAN, image_std=STD, do_convert_rgb=True)

    items = []
    for d in sorted(os.listdir(a.eval_dir)):
        p = os.path.join(a.eval_dir, d)
        if not os.path.isdir(p):
            continue
        lab = d.replace("_", " ")
        if lab not in labels:
            raise SystemExit(f"eval class {d!r} is not in {a.labels}")
        for fn in sorted(os.listdir(p)):
            if fn.lower().endswith((".png", ".jpg", ".jpeg")):
                items.append((os.path.join(p, fn), labels.index(lab)))
    if not items:
        raise SystemExit(f"no images under {a.eval_dir}")

    preds, scores = [], []
    for i in range(0, len(items), a.batch):
        chunk = items[i:i + a.batch]
        imgs = [Image.open(path).convert("RGB") for path, _ in chunk]
        pv = np.asarray(proc(images=imgs, return_tensors="np")["pixel_values"], dtype=np.float32)
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
    conf = collections.Counter((labels[yi], labels[pi]) for yi, pi in zip(y, p) if yi != pi)
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
    colour_ok = float(np.mean([labels[i].split()[0] == labels[j].split()[0] for i, j in zip(y, p)]))
    shape_ok = float(np.mean([labels[i].split()[1] == labels[j].split()[1] for i, j in zip(y, p)]))
    print(f"colour correct: {colour_ok * 100:.2f}%   shape correct: {shape_ok * 100:.2f}%")

    if a.json:
        with open(a.json, "w") as f:
            json.dump({"top1": acc, "colour_top1": colour_ok, "shape_top1": shape_ok, "per_class": per,
                       "images": [{"path": os.path.relpath(path, a.eval_dir), "label": labels[c],
                                   "pred": labels[pi], "cos": round(s, 5)}
                                  for (path, c), pi, s in zip(items, preds, scores)]}, f, indent=1)
    if acc < a.min_acc:
        print(f"FAIL: top-1 {acc:.4f} < --min-acc {a.min_acc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
