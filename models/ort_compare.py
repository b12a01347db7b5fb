#!/usr/bin/env python3
"""Cosine between the image embeddings of clip-edge bundles and ONNX Runtime on an
ONNX file, image by image: how closely a bundle (NNEF or ONNX, fp32 or int8) follows
the export it was made from.

    python3 models/ort_compare.py --onnx image_encoder.onnx --bundle B [--bundle B8 ...] \\
        IMAGE_OR_DIR...

Each image is preprocessed once by `clip-edge preprocess` (so both runtimes see the
same tensor), run by ONNX Runtime on --onnx, and embedded by `clip-edge embed` with
each bundle. Prints mean and min cosine per bundle. Needs numpy and onnxruntime.
"""
import argparse
import pathlib
import subprocess
import tempfile

import numpy as np
import onnxruntime as ort

ROOT = pathlib.Path(__file__).resolve().parents[1]


def images_of(paths):
    for p in map(pathlib.Path, paths):
        if p.is_dir():
            yield from sorted(q for q in p.rglob("*") if q.suffix.lower() in {".png", ".jpg", ".jpeg"})
        else:
            yield p


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--onnx", required=True, help="the source image encoder")
    parser.add_argument("--bundle", action="append", required=True, help="a bundle directory (repeatable)")
    parser.add_argument("--clip-edge", default=str(ROOT / "target/release/clip-edge"))
    parser.add_argument("images", nargs="+")
    args = parser.parse_args()

    session = ort.InferenceSession(args.onnx, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    cosines = {b: [] for b in args.bundle}
    with tempfile.TemporaryDirectory() as tmp:
        x, e = pathlib.Path(tmp) / "x.npy", pathlib.Path(tmp) / "e.npy"
        for image in images_of(args.images):
            subprocess.run([args.clip_edge, "preprocess", str(image), "--out", str(x)], check=True)
            ref = session.run(None, {name: np.load(x)})[0][0]
            for bundle in args.bundle:
                subprocess.run([args.clip_edge, "embed", "--bundle", bundle, str(image), "--out", str(e)],
                               check=True)
                got = np.load(e)[0]
                cosines[bundle].append(float(ref @ got / (np.linalg.norm(ref) * np.linalg.norm(got))))
    for bundle, c in cosines.items():
        print(f"{bundle}: cosine to onnxruntime on {args.onnx}: mean {np.mean(c):.6f}, "
              f"min {np.min(c):.6f} over {len(c)} images")


if __name__ == "__main__":
    main()
