#!/usr/bin/env python3
"""Generate the held-out evaluation set (eval/) and the demo images (samples/).

Both use seeds that no training run uses (training renders from
random.Random(seed*1_000_003 + chunk) with the --seed of train.py, default
1234, and validates on seed+777777), so no eval or sample image was seen in
training.  Images have varied sizes/aspect ratios (never 224x224) so that the
shortest-edge resize + centre crop is exercised; the shape always lies inside
the central square crop.  Noise is mild and low-frequency so the PNGs stay
small.

Layout (ImageFolder):  eval/<label with spaces as _>/NNN.png
Example:
    python3 make_eval.py --per-class 5
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import shapes_data as sd  # noqa: E402

EVAL_SEED = 20240917
SAMPLE_SEED = 5550123

SIZES = [(160, 120), (120, 160), (200, 150), (150, 200), (180, 180), (240, 180), (180, 240),
         (256, 256), (320, 240), (240, 320), (300, 300), (400, 300), (300, 400), (360, 200),
         (200, 360), (288, 216)]

SAMPLES = ["red triangle", "blue triangle", "green star", "yellow square", "purple cross", "orange star"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-class", type=int, default=5)
    ap.add_argument("--out", default=HERE)
    a = ap.parse_args()

    ev = os.path.join(a.out, "eval")
    if os.path.isdir(ev):
        shutil.rmtree(ev)
    rng = random.Random(EVAL_SEED)
    nrng = np.random.default_rng(EVAL_SEED)
    n = 0
    for lab in sd.LABELS:
        c, s = lab.split(" ")
        d = os.path.join(ev, lab.replace(" ", "_"))
        os.makedirs(d)
        for i in range(a.per_class):
            w, h = rng.choice(SIZES)
            img = sd.render_eval(c, s, w, h, rng, nrng)
            img.save(os.path.join(d, f"{i:03d}.png"), optimize=True)
            n += 1
    print(f"wrote {n} eval images to {ev}")

    sp = os.path.join(a.out, "samples")
    if os.path.isdir(sp):
        shutil.rmtree(sp)
    os.makedirs(sp)
    rng = random.Random(SAMPLE_SEED)
    nrng = np.random.default_rng(SAMPLE_SEED)
    sizes = [(320, 240), (240, 320), (256, 256), (400, 300), (300, 200), (200, 200)]
    for lab, (w, h) in zip(SAMPLES, sizes):
        c, s = lab.split(" ")
        img = sd.render_eval(c, s, w, h, rng, nrng)
        img.save(os.path.join(sp, lab.replace(" ", "_") + ".png"), optimize=True)
    print(f"wrote {len(SAMPLES)} samples to {sp}")


if __name__ == "__main__":
    main()
