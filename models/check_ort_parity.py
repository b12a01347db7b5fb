#!/usr/bin/env python3
"""Check that ONNX Runtime runs an (int8) image encoder and gives the same embedding
as clip-edge (tract) does.

    python models/check_ort_parity.py --bundle BUNDLE_DIR --binary target/release/clip-edge IMG...

For each image: `clip-edge preprocess` gives the input tensor, ONNX Runtime runs the
bundle's model.onnx on it, `clip-edge embed` gives tract's embedding; prints the max
absolute difference and the cosine. Exits 1 if any cosine is below --min-cosine.
"""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnx
import onnxruntime as ort


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--binary", default="target/release/clip-edge")
    ap.add_argument("--min-cosine", type=float, default=0.9999)
    ap.add_argument("images", nargs="+")
    a = ap.parse_args()
    model = os.path.join(a.bundle, "model.onnx")
    onnx.checker.check_model(onnx.load(model))
    sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    worst = 1.0
    with tempfile.TemporaryDirectory() as tmp:
        x_path, e_path = os.path.join(tmp, "x.npy"), os.path.join(tmp, "e.npy")
        for img in a.images:
            subprocess.run([a.binary, "preprocess", img, "--out", x_path], check=True)
            subprocess.run([a.binary, "embed", "--bundle", a.bundle, img, "--out", e_path], check=True)
            ours = np.load(e_path)[0]
            ref = sess.run(None, {name: np.load(x_path)})[0][0]
            cos = float(ours @ ref / np.linalg.norm(ours) / np.linalg.norm(ref))
            worst = min(worst, cos)
            print(f"{img}: max abs diff {np.abs(ours - ref).max():.3g}, cosine {cos:.7f}")
    print(f"worst cosine {worst:.7f}")
    return 0 if worst >= a.min_cosine else 1


if __name__ == "__main__":
    sys.exit(main())
