#!/usr/bin/env python3
"""A QDQ int8 file of an image tower, as ONNX Runtime's static quantization makes it.

    python3 models/export/make_qdq.py SRC.onnx DST.onnx [--images DIR] [--count N]

`onnxruntime.quantization.quantize_static` with its defaults (QDQ format, int8
activations and weights, per-tensor, MinMax calibration), after
`quant_pre_process` as ONNX Runtime's documentation asks, calibrated on N images of
DIR (default: 30 of models/shapes/eval, evenly spread) preprocessed by
`clip-edge preprocess`. Only the pixel input is fed, so SRC must be an image tower.
The fixture models/fixtures/hub-split/vision_model_qdq.onnx is

    python3 models/export/make_qdq.py models/fixtures/hub-split/vision_model.onnx \\
        models/fixtures/hub-split/vision_model_qdq.onnx

(needs `cargo build --release -p clip-edge`; then models/fixtures/ort_reference.py
writes its ONNX Runtime embeddings).
"""
import argparse
import pathlib
import subprocess
import sys
import tempfile

import numpy as np
import onnx
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

ROOT = pathlib.Path(__file__).resolve().parents[2]


class Images(CalibrationDataReader):
    def __init__(self, name: str, pixels: list[np.ndarray]):
        self.feeds = iter([{name: x} for x in pixels])

    def get_next(self):
        return next(self.feeds, None)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("src", type=pathlib.Path)
    p.add_argument("dst", type=pathlib.Path)
    p.add_argument("--images", type=pathlib.Path, default=ROOT / "models/shapes/eval")
    p.add_argument("--count", type=int, default=30)
    p.add_argument("--clip-edge", default=str(ROOT / "target/release/clip-edge"))
    a = p.parse_args()

    images = sorted(a.images.rglob("*.png"))
    images = [images[i * len(images) // a.count] for i in range(min(a.count, len(images)))]
    model = onnx.load(a.src)
    inits = {t.name for t in model.graph.initializer}
    inputs = [i.name for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        sys.exit(f"{a.src}: {len(inputs)} inputs ({inputs}); an image tower has one")
    with tempfile.TemporaryDirectory() as tmp:
        pixels = []
        for image in images:
            npy = pathlib.Path(tmp) / "x.npy"
            subprocess.run([a.clip_edge, "preprocess", str(image), "--out", str(npy)], check=True)
            pixels.append(np.load(npy))
        pre = pathlib.Path(tmp) / "pre.onnx"
        quant_pre_process(str(a.src), str(pre))
        quantize_static(str(pre), str(a.dst), Images(inputs[0], pixels),
                        quant_format=QuantFormat.QDQ)
    print(f"wrote {a.dst} ({a.dst.stat().st_size / 1e6:.2f} MB), calibrated on {len(pixels)} "
          f"images of {a.images}")


if __name__ == "__main__":
    main()
