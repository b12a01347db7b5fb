//! clip-edge: zero-shot CLIP image classification on ARM boards, the binary and its
//! run loop.
//!
//! A *bundle* (written on a workstation by `clip-quantize`, format in
//! `clip-edge-bundle`) holds an image encoder and a table of label embeddings. The
//! `clip-edge` binary ([`src/bin/clip-edge`](../src/bin/clip-edge/main.rs)) reads
//! frames (`clip-edge-device`), runs them through the model (`clip-edge-core`) and
//! reports top-k as text, JSON lines and GPIO. This library holds what the binary's
//! commands share and what its tests drive.
//!
//! | module | job |
//! | --- | --- |
//! | [`run`] | the `clip-edge run` loop: pacing, skipped frames, reconnect with backoff, events as JSON lines or log lines |
//! | [`json`] | the top-k JSON of `classify --json` and `run --json` |
//! | [`bench`] | `clip-edge bench`: load time, per-stage latency, memory, kernels |
//! | [`alloc_count`] | a counting global allocator (dlmalloc on static musl), for allocation-free frame paths |
//! | [`npy`] | writing tensors as `.npy` for checks in Python |

pub mod alloc_count;
pub mod bench;
pub mod json;
pub mod npy;
pub mod run;
