//! clip-quantize: the workstation side of clip-edge.
//!
//! Turns a CLIP export (fp32 ONNX image and text encoders) into a bundle the
//! `clip-edge` runtime runs on the board.
//!
//! | module | job |
//! | --- | --- |
//! | [`tokenizer`] | OpenAI's CLIP tokenizer, id-for-id; a model's own `tokenizer.json` |
//! | [`text_description`] | which tokenizer, length and padding a text tower wants |
//! | [`prompts`] | labels files and prompt templates |
//! | [`tower`] | one tower (image or text) out of an ONNX file as hubs publish it |
//! | [`dynamic_quantize`] | onnxruntime's `DynamicQuantizeLinear` in core operators, for NNEF |
//! | [`text_encoder`] | the text encoder with tract, and the label-embedding recipe |
//! | [`qdq`] | QDQ int8 files lowered to the fp32 graph they approximate |
//! | [`onnx_graph`] | reading, editing and writing ONNX protobuf graphs |
//! | [`prune_tokens`] | the last layer computed for the pooled (CLS) token only |
//! | [`quant`] | the int8 rewrite of MatMul/Gemm/patch-Conv nodes |
//! | [`rewrite_check`] | an fp32 rewrite checked against its original |
//! | [`calibrate`] | activation statistics and scales for static int8 |
//! | [`eval`] | int8 against fp32: cosine, top-1 agreement, accuracy |
//! | [`nnef_export`] | the image encoder as the NNEF tar a bundle carries |
//! | [`bundle_writer`] | writing a bundle: model, label table, manifest |
//! | [`atomic_file`] | files replaced whole or not at all |
//! | [`atomic_dir`] | directories (bundles) replaced whole or not at all |
//!
//! The bundle format itself is the `clip-edge-bundle` crate, which the board reads
//! with; this crate only writes it.

pub mod atomic_dir;
pub mod atomic_file;
pub mod bundle_writer;
pub mod calibrate;
pub mod dynamic_quantize;
pub mod eval;
pub mod model_description;
pub mod nnef_export;
pub mod onnx_graph;
pub mod prompts;
pub mod prune_tokens;
pub mod qdq;
pub mod quant;
pub mod rewrite_check;
pub mod text_description;
pub mod text_encoder;
pub mod tokenizer;
pub mod tower;

#[cfg(test)]
mod test_dirs;
#[cfg(test)]
mod test_graph;
