//! clip-edge-device: what the board's runtime talks to outside the model.
//!
//! Frames come in (cameras, stdin, folders; files decoded by clip-edge-core), labels drive
//! GPIO pins, a button asks for a frame, systemd hears that the loop is alive, and a
//! board profile says which pins and camera a board has. Nothing here runs the model
//! (that is clip-edge-core).
//!
//! | module | job |
//! | --- | --- |
//! | [`source`] | frame sources: V4L2 (mmap streaming, YUYV/MJPEG), MJPEG and raw YUV420/RGB24 on stdin, image folders, a synthetic pattern |
//! | [`gpio`] | label-driven outputs and a debounced button over `embedded-hal`, `linux-embedded-hal` cdev pins |
//! | [`watchdog`] | systemd `READY=1`, `WATCHDOG=1`, `STATUS=`, `STOPPING=1` (`sd_notify`) |
//! | [`bundle_store`] | bundles installed side by side, switched atomically, rolled back (`clip-edge bundle`) |
//! | [`board`] | board profiles (`boards/*.toml`, built in and user-supplied): CPU, threads, camera, GPIO pins |

pub mod board;
#[cfg(unix)]
pub mod bundle_store;
pub mod gpio;
pub mod source;
#[cfg(unix)]
pub mod watchdog;
