#!/usr/bin/env python3
"""Tiny CLIP ONNX files in the layouts model hubs publish, for clip-quantize's tests.

Most CLIP ONNX files people download were made by Hugging Face optimum, or by
transformers.js's conversion scripts on top of it, not by our export_clip.py. This
script makes the same files from the tiny random model of models/fixtures/hf-tiny
(same config, seed 0), with the publishers' exporter and settings:

- split towers (transformers.js `scripts/convert.py --split_modalities`, which calls
  optimum's `export_models` with per-tower ONNX configs):
  `vision_model.onnx` (pixel_values -> image_embeds, last_hidden_state) and
  `text_model.onnx` (input_ids, attention_mask -> text_embeds, last_hidden_state),
  dynamic batch, spatial and sequence axes. transformers.js's
  `scripts/extra/clip.py` keeps only the embedding output; the configs here add
  `last_hidden_state` back, as optimum's own CLIP text config and earlier hub files
  do, so the files also carry an output the board does not need.
- one combined `model.onnx`: optimum's `main_export(task="zero-shot-image-classification")`
  (input_ids, pixel_values, attention_mask -> logits_per_image, logits_per_text,
  text_embeds, image_embeds).
- opset 14: `convert.py` passes no opset, so optimum's default for CLIP applies, and
  transformers.js pins optimum 1.26.1 (`scripts/requirements.txt`), whose CLIP/ViT
  configs default to 14 (optimum-onnx 0.1.0 would give 18). Opset 14 has no
  LayerNormalization: layer norms come out as ReduceMean/Sub/Pow/Sqrt/Div.
- onnxslim: `convert.py` slims every exported file (`onnxslim.slim`, then
  `check_and_save_model`: full checker, `onnx.save(convert_attribute=True)`) before
  the fp16 and int8 variants are made from it.
- `*_fp16.onnx`: transformers.js `scripts/quantize.py` mode fp16: its own
  `float16.py` (copied here as transformers_js_float16.py; onnxconverter-common's
  converter with fixes, which makes a text model ONNX Runtime refuses)
  `convert_float_to_float16(keep_io_types=True, op_block_list=DEFAULT_OP_BLOCK_LIST)`:
  f16 weights and compute, f32 inputs and outputs.
- `*_quantized.onnx`: transformers.js `scripts/quantize.py` mode q8: onnxruntime's
  `ONNXQuantizer` in IntegerOps (dynamic) mode, all integer-op types (MatMul, Conv,
  Gather, ...), activations uint8, weights uint8 when the graph has a Conv (onnxruntime-web
  has no int8-weight ConvInteger) else int8, per_channel and reduce_range on
  (`convert.py` sets both for every model type outside
  NO_PER_CHANNEL_REDUCE_RANGE_MODELS, which does not list clip), extra options
  EnableSubgraph and MatMulConstBOnly.

Sources read for these settings: github.com/huggingface/transformers.js at the
parent of 4e1b4b65, the commit that removed `scripts/` (scripts/convert.py,
scripts/quantize.py, scripts/extra/clip.py, scripts/utils.py, scripts/requirements.txt).
Not reproduced: the pinned package versions (transformers 4.52.4, optimum 1.26.1,
onnxruntime 1.22.0, onnx 1.18.0, onnxslim 0.1.52); the versions used are recorded in
each layout.json.

Set-up (optimum-onnx pins transformers < 4.58, so keep it in its own venv):

    python3 -m venv --system-site-packages /tmp/optvenv
    /tmp/optvenv/bin/pip install optimum-onnx==0.1.0 onnxslim
    /tmp/optvenv/bin/python models/export/export_hub_layouts.py

Then ONNX Runtime's reference embeddings (system Python; needs the release build):

    cargo build --release -p clip-edge && python3 models/fixtures/ort_reference.py
"""
import argparse
import hashlib
import json
import pathlib
import sys
import tempfile
from collections import Counter

import onnx
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from export_clip import hf_config_dict  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]
# optimum 1.26.1's default for CLIP, which transformers.js pins.
OPSET = 14


def check_and_save_model(model: "onnx.ModelProto", path: pathlib.Path) -> None:
    """transformers.js scripts/utils.py check_and_save_model (models < 2 GB)."""
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, path, convert_attribute=True)


def slim(path: pathlib.Path) -> None:
    """transformers.js scripts/convert.py: onnxslim.slim, then check_and_save_model."""
    import onnxslim

    check_and_save_model(onnxslim.slim(str(path)), path)


def make_model(seed: int, out: pathlib.Path) -> None:
    from transformers import CLIPConfig, CLIPModel

    cfg = CLIPConfig(**hf_config_dict("tiny"))
    torch.manual_seed(seed)
    model = CLIPModel(cfg).eval()
    model.save_pretrained(out)


def export_split(model_dir: pathlib.Path, out: pathlib.Path) -> None:
    from optimum.exporters.onnx import export_models
    from optimum.exporters.onnx.model_configs import CLIPTextOnnxConfig, ViTOnnxConfig
    from transformers import CLIPTextModelWithProjection, CLIPVisionModelWithProjection

    class TextWithProjection(CLIPTextOnnxConfig):
        # optimum 2.x's CLIP text config takes input_ids only; the hub files (and
        # transformers.js, which feeds it) also take the attention mask.
        @property
        def inputs(self):
            return {"input_ids": {0: "batch_size", 1: "sequence_length"},
                    "attention_mask": {0: "batch_size", 1: "sequence_length"}}

        @property
        def outputs(self):
            return {"text_embeds": {0: "batch_size"},
                    "last_hidden_state": {0: "batch_size", 1: "sequence_length"}}

        def generate_dummy_inputs(self, framework: str = "pt", **kwargs):
            dummy = super().generate_dummy_inputs(framework=framework, **kwargs)
            dummy["input_ids"] = dummy["input_ids"].to(dtype=torch.int64)
            return dummy

    class VisionWithProjection(ViTOnnxConfig):
        @property
        def outputs(self):
            return {"image_embeds": {0: "batch_size"},
                    "last_hidden_state": {0: "batch_size"}}

    text = CLIPTextModelWithProjection.from_pretrained(model_dir).eval()
    vision = CLIPVisionModelWithProjection.from_pretrained(model_dir).eval()
    export_models(
        models_and_onnx_configs={
            "text_model": (text, TextWithProjection(text.config)),
            "vision_model": (vision, VisionWithProjection(vision.config)),
        },
        output_dir=out,
        opset=OPSET,
    )


def export_combined(model_dir: pathlib.Path, out: pathlib.Path) -> None:
    from optimum.exporters.onnx import main_export

    main_export(str(model_dir), output=out, task="zero-shot-image-classification",
                opset=OPSET, do_validation=True)


def to_fp16(src: pathlib.Path, dst: pathlib.Path) -> None:
    import transformers_js_float16 as float16

    model = float16.convert_float_to_float16(
        onnx.load(src), keep_io_types=True,
        op_block_list=set(float16.DEFAULT_OP_BLOCK_LIST))
    check_and_save_model(model, dst)


def to_q8(src: pathlib.Path, dst: pathlib.Path) -> str:
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization.onnx_quantizer import ONNXQuantizer
    from onnxruntime.quantization.quant_utils import QuantizationMode
    from onnxruntime.quantization.registry import IntegerOpsRegistry

    model = onnx.load(src)
    has_conv = any(n.op_type == "Conv" for n in model.graph.node)
    weight_type = QuantType.QUInt8 if has_conv else QuantType.QInt8
    quantizer = ONNXQuantizer(
        model, True, True, mode=QuantizationMode.IntegerOps, static=False,
        weight_qType=weight_type, activation_qType=QuantType.QUInt8,
        tensors_range=None, nodes_to_quantize=[], nodes_to_exclude=[],
        op_types_to_quantize=set(IntegerOpsRegistry.keys()),
        extra_options=dict(EnableSubgraph=True, MatMulConstBOnly=True),
    )
    quantizer.quantize_model()
    check_and_save_model(quantizer.model.model, dst)
    return weight_type.name


def describe(path: pathlib.Path, note: str | None) -> dict:
    model = onnx.load(path)

    def io(v):
        t = v.type.tensor_type
        dims = [d.dim_param or d.dim_value for d in t.shape.dim]
        return {"name": v.name, "dtype": onnx.TensorProto.DataType.Name(t.elem_type).lower(),
                "shape": dims}

    init = {t.name for t in model.graph.initializer}
    entry = {
        "inputs": [io(v) for v in model.graph.input if v.name not in init],
        "outputs": [io(v) for v in model.graph.output],
        "opset": max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
        "ops": dict(sorted(Counter(n.op_type for n in model.graph.node).items())),
        "bytes": path.stat().st_size,
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
    }
    if note:
        entry["made_with"] = note
    return entry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out-split", type=pathlib.Path,
                        default=ROOT / "models/fixtures/hub-split")
    parser.add_argument("--out-combined", type=pathlib.Path,
                        default=ROOT / "models/fixtures/hub-combined")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from importlib.metadata import version

    versions = {p: version(p) for p in ["torch", "transformers", "optimum", "optimum-onnx",
                                        "onnx", "onnxruntime", "onnxslim"]}
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = pathlib.Path(tmp) / "hf"
        make_model(args.seed, model_dir)
        for out, export, stems in [
            (args.out_split, export_split, ["vision_model", "text_model"]),
            (args.out_combined, export_combined, ["model"]),
        ]:
            out.mkdir(parents=True, exist_ok=True)
            export(model_dir, out)
            layout = {"versions": versions, "seed": args.seed,
                      "model": "random CLIPModel, config of models/fixtures/hf-tiny "
                               "(openai/clip-vit-base-patch32 layout, widths shrunk)",
                      "files": {}}
            for stem in stems:
                fp32 = out / f"{stem}.onnx"
                fp16 = out / f"{stem}_fp16.onnx"
                q8 = out / f"{stem}_quantized.onnx"
                slim(fp32)
                to_fp16(fp32, fp16)
                weights = to_q8(fp32, q8)
                layout["files"][fp32.name] = describe(fp32, f"optimum export, opset {OPSET}, onnxslim")
                layout["files"][fp16.name] = describe(
                    fp16, "transformers.js float16.py convert_float_to_float16(keep_io_types=True)")
                layout["files"][q8.name] = describe(
                    q8, f"onnxruntime ONNXQuantizer IntegerOps, weights {weights}, "
                        "activations QUInt8, per_channel=True, reduce_range=True")
            # optimum also writes config/tokenizer files; the fixtures keep the graphs.
            for extra in out.iterdir():
                if extra.suffix not in (".onnx", ".npy") and extra.name != "layout.json":
                    extra.unlink()
            (out / "layout.json").write_text(json.dumps(layout, indent=1) + "\n")
            for name, f in layout["files"].items():
                print(f"{out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}/{name}: "
                      f"{f['bytes'] / 1e6:.2f} MB, inputs "
                      f"{[(i['name'], i['dtype'], i['shape']) for i in f['inputs']]}, outputs "
                      f"{[(o['name'], o['dtype']) for o in f['outputs']]}")


if __name__ == "__main__":
    main()
