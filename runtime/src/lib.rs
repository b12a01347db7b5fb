//! clip-edge: zero-shot CLIP image classification on ARM boards.
//!
//! The runtime library behind the `clip-edge` binary. A *bundle* (written on a
//! workstation by `clip-quantize`) holds an image encoder and a table of label
//! embeddings; the runtime turns each frame into the encoder's input, runs it with
//! tract, and ranks the labels by cosine similarity.
//!
//! | module | job |
//! | --- | --- |
//! | [`bundle`] | the bundle directory: manifest, hashes, consistency checks, writing |
//! | [`labels`] | the label table (`labels.safetensors`) |
//! | [`image_io`] | decoding image files to RGB8 the way PIL's `convert("RGB")` does |
//! | [`preprocess`] | CLIP preprocessing, bit-exact with PIL's bicubic resize |
//! | [`encoder`] | the image encoder as one fixed-shape tract plan |
//! | [`scoring`] | cosine, softmax, top-k, without allocating |
//! | [`classifier`] | all of the above for one bundle |
//! | [`source`] | where frames come from: V4L2 cameras, MJPEG/raw video on stdin, image folders, a synthetic pattern |
//! | [`alloc_count`] | a counting global allocator, for allocation-free frame paths |
//! | [`bench`] | load time, per-stage latency, memory, kernels |
//! | [`npy`] | writing tensors as `.npy` for checks in Python |
//! | [`run`] | the `clip-edge run` loop: pacing, retries, events as JSON or log lines |
//! | [`tracker`] | hysteresis: when a label counts as seen or lost |
//! | [`board`] | board profiles (`boards/*.toml`): CPU, threads, int8 kernel, memory budget, camera, GPIO pins |
//! | [`gpio`] | GPIO actions over `embedded-hal`: outputs driven by labels, a debounced button |
//! | [`watchdog`] | systemd readiness, status and watchdog pings (`sd_notify`) |

pub mod alloc_count;
pub mod bench;
pub mod board;
pub mod bundle;
pub mod classifier;
pub mod encoder;
pub mod gpio;
pub mod image_io;
pub mod labels;
pub mod npy;
pub mod preprocess;
pub mod run;
pub mod scoring;
pub mod source;
pub mod tracker;
#[cfg(unix)]
pub mod watchdog;

pub use bundle::Bundle;
pub use classifier::{Classifier, ClassifyError};
pub use labels::LabelTable;
pub use scoring::{Prediction, TopK};
