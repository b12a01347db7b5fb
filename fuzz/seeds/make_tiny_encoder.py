"""Writes corpus/nnef/tiny_encoder.onnx (and output_not_produced.onnx, below): the smallest image encoder with a bundle's interface
(pixel_values [1,3,224,224] f32 -> image_embeds [1,8]): a global average pool, a
flatten and one matmul. The fuzz smoke converts it to the NNEF tar a bundle carries
(clip_quantize::nnef_export), the seed of the `nnef` target: a real graph.nnef and
.dat files small enough that mutations land in the parts the parser reads.

    python3 fuzz/seeds/make_tiny_encoder.py
"""
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

w = numpy_helper.from_array(np.linspace(-1, 1, 24, dtype=np.float32).reshape(3, 8), "w")
graph = helper.make_graph(
    [
        helper.make_node("GlobalAveragePool", ["pixel_values"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("MatMul", ["flat", "w"], ["image_embeds"]),
    ],
    "tiny_encoder",
    [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, [1, 3, 224, 224])],
    [helper.make_tensor_value_info("image_embeds", TensorProto.FLOAT, [1, 8])],
    [w],
)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
model.ir_version = 8
onnx.checker.check_model(model)
corpus = Path(__file__).resolve().parent.parent / "corpus/nnef"
onnx.save(model, corpus / "tiny_encoder.onnx")

# A regression seed: the graph output names a value nothing produces (tract-onnx
# panicked on it; third_party/patches/tract-onnx/0001).
model.graph.output[0].name = "nothing"
onnx.save(model, corpus / "output_not_produced.onnx")
