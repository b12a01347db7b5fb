//! clip-edge-core: the frame's way through the model on the board.
//!
//! ```text
//! RGB8 frame ─▶ preprocess ─▶ encoder (tract) ─▶ scoring ─▶ tracker
//!               resize, crop,  [1,3,S,S] → [1,D]  cosine,     seen / lost
//!               normalise                         softmax, top-k
//! ```
//!
//! [`Classifier`] ties the first three together for one bundle (read by
//! `clip-edge-bundle`); frames come from `clip-edge-device`, and the `clip-edge`
//! binary runs the loop.
//!
//! | module | job |
//! | --- | --- |
//! | [`image_io`] | decoding image files to RGB8 the way PIL's `convert("RGB")` does |
//! | [`preprocess`] | CLIP preprocessing, bit-exact with Pillow's bicubic resample; cached tables, no per-frame allocation |
//! | [`error_chain`] | an error with its causes on one line, for logs and JSON events |
//! | [`encoder`] | the image encoder as one fixed-shape tract plan and state; kernel names; per-node runs |
//! | [`process`] | the start of every clip-edge program: backtraces, `SIGPIPE` |
//! | [`scoring`] | cosine, softmax, top-k (`heapless`), no allocation |
//! | [`classifier`] | all of the above for one bundle |
//! | [`tracker`] | hysteresis: when a label counts as seen or lost |

pub mod classifier;
pub mod encoder;
pub mod error_chain;
pub mod image_io;
pub mod preprocess;
pub mod process;
pub mod scoring;
pub mod tracker;

pub use classifier::{Classifier, ClassifyError};
pub use encoder::{EncoderError, ImageEncoder};
pub use error_chain::ErrorChain;
pub use scoring::{Prediction, TopK};
