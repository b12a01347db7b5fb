//! Frame sources: where the frames of `clip-edge run` come from.
//!
//! A [`SourceSpec`] is the parsed `--source` argument; [`open`] turns it into a
//! [`FrameSource`], which writes one frame at a time into a caller-owned [`Frame`]:
//!
//! | spec | source | per-frame heap allocations once warm |
//! | --- | --- | --- |
//! | `v4l2:/dev/video0[:WxH[:yuyv\|mjpeg]]` | a V4L2 camera, memory-mapped streaming (`v4l2` module, 64-bit Linux only) | none for YUYV; MJPEG: the JPEG decoder's own |
//! | `stdin:mjpeg` | concatenated JPEGs on stdin ([`MjpegStream`]) | the JPEG decoder's own (a few, constant) |
//! | `stdin:rgb24:WxH`, `stdin:yuv420:WxH` | raw frames on stdin ([`RawStream`]) | none |
//! | `dir:PATH` | image files under a folder, recursive, sorted ([`DirSource`]) | one decoded image per file |
//! | `files:A,B,C` | an explicit list of image files ([`DirSource`]) | one decoded image per file |
//! | `synthetic[:WxH[:N]]` | a deterministic moving pattern ([`Synthetic`]) | none |
//!
//! Errors carry a [`SourceErrorKind`] telling the caller what to do: skip the frame
//! ([`SourceErrorKind::BadFrame`]), retry with backoff through
//! [`FrameSource::reopen`] ([`SourceErrorKind::Disconnected`]), or stop
//! ([`SourceErrorKind::Config`]).

mod dir;
mod mjpeg;
mod spec;
mod stream;
mod synthetic;
#[cfg(test)]
mod tests;
#[cfg(target_os = "linux")]
pub mod v4l2;
pub mod yuv;

use std::io::Read;

pub use dir::DirSource;
pub use mjpeg::{decode_jpeg_into, JpegError, MjpegStream};
pub use spec::{PixelFormat, RawFormat, SourceSpec, MAX_SIDE};
pub use stream::RawStream;
pub use synthetic::Synthetic;

/// One frame, owned by the caller and reused for every frame: sources write into it.
#[derive(Debug, Clone, Default)]
pub struct Frame {
    /// RGB8 pixels; sources reuse its allocation (reallocate only when the size grows).
    pub rgb: image::RgbImage,
    /// Where the frame came from: the file path for `dir:`/files, else e.g.
    /// "stdin:mjpeg#12" or "/dev/video0#3".
    pub name: String,
}

impl Frame {
    /// An empty (0×0) frame; the first source write sizes it.
    pub fn new() -> Self {
        Self::default()
    }

    /// Resizes [`Frame::rgb`] to `width`×`height`, reusing its allocation (it only
    /// reallocates when the frame grows), and returns the raw RGB8 buffer
    /// (`width * height * 3` bytes, row-major, contents unspecified).
    ///
    /// Sources in this module keep both sides at most [`MAX_SIDE`], so the size
    /// always fits a `usize`.
    pub fn reshape(&mut self, width: u32, height: u32) -> &mut [u8] {
        let len = (width as usize)
            .saturating_mul(height as usize)
            .saturating_mul(3);
        let mut raw = std::mem::take(&mut self.rgb).into_raw();
        raw.resize(len, 0);
        self.rgb = match image::RgbImage::from_raw(width, height, raw) {
            Some(img) => img,
            // Unreachable: `raw` has exactly the length `from_raw` needs.
            None => image::RgbImage::new(width, height),
        };
        &mut self.rgb
    }

    /// Sets [`Frame::name`] to `prefix#index` without allocating once the string
    /// has grown to fit.
    pub fn set_name_indexed(&mut self, prefix: &str, index: u64) {
        use std::fmt::Write;
        self.name.clear();
        self.name.push_str(prefix);
        // Writing into a String cannot fail.
        let _ = write!(self.name, "#{index}");
    }
}

/// Something that produces frames: a camera, a stream on stdin, a folder of images.
pub trait FrameSource {
    /// Short description for logs, e.g. "v4l2:/dev/video0 640x480 yuyv".
    fn describe(&self) -> String;

    /// Writes the next frame into `frame`. `Ok(false)` at the end of the stream (end
    /// of a directory, EOF on stdin); a camera never ends.
    fn next_frame(&mut self, frame: &mut Frame) -> Result<bool, SourceError>;

    /// Tries to reopen the device after an error of kind
    /// [`SourceErrorKind::Disconnected`] (e.g. camera unplugged). Default: returns
    /// a [`SourceErrorKind::Config`] error saying that this source cannot.
    fn reopen(&mut self) -> Result<(), SourceError> {
        Err(SourceError::Config {
            origin: self.describe(),
            message: "this source cannot be reopened".to_string(),
        })
    }
}

/// What the caller should do about a [`SourceError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SourceErrorKind {
    /// This frame is bad (corrupt JPEG, wrong size, unreadable file): count it, skip
    /// it, go on.
    BadFrame,
    /// The device went away or a read failed: retry with backoff via
    /// [`FrameSource::reopen`].
    Disconnected,
    /// The spec or the device cannot work at all (bad spec, no such dir, format
    /// unsupported): stop with an error.
    Config,
}

/// What can go wrong opening a source or reading a frame; every message names the
/// file, device or stream.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// The `--source` text is not a valid spec.
    #[error("invalid source {spec:?}: {message}")]
    Spec {
        /// The text as given.
        spec: String,
        /// What is wrong and what is accepted.
        message: String,
    },
    /// The source cannot work at all (missing folder, no images, unsupported format).
    #[error("{origin}: {message}")]
    Config {
        /// The device, folder or stream.
        origin: String,
        /// The problem.
        message: String,
    },
    /// One frame is unusable; the next call goes on with the next frame.
    #[error("{origin}: bad frame: {message}")]
    BadFrame {
        /// The file, or the stream and frame number.
        origin: String,
        /// The problem.
        message: String,
    },
    /// The device went away or a read failed.
    #[error("{origin}: {message}")]
    Disconnected {
        /// The device or stream.
        origin: String,
        /// The problem.
        message: String,
        /// The underlying I/O error, when there is one.
        #[source]
        source: Option<std::io::Error>,
    },
}

impl SourceError {
    /// What the caller should do about this error.
    pub fn kind(&self) -> SourceErrorKind {
        match self {
            SourceError::Spec { .. } | SourceError::Config { .. } => SourceErrorKind::Config,
            SourceError::BadFrame { .. } => SourceErrorKind::BadFrame,
            SourceError::Disconnected { .. } => SourceErrorKind::Disconnected,
        }
    }

    /// A [`SourceErrorKind::BadFrame`] error for `origin` (for sources outside this crate too).
    pub fn bad_frame(origin: impl Into<String>, message: impl Into<String>) -> Self {
        SourceError::BadFrame {
            origin: origin.into(),
            message: message.into(),
        }
    }

    /// A [`SourceErrorKind::Config`] error for `origin`.
    pub fn config(origin: impl Into<String>, message: impl Into<String>) -> Self {
        SourceError::Config {
            origin: origin.into(),
            message: message.into(),
        }
    }

    /// A [`SourceErrorKind::Disconnected`] error without an I/O cause.
    pub fn disconnected(origin: impl Into<String>, message: impl Into<String>) -> Self {
        SourceError::Disconnected {
            origin: origin.into(),
            message: message.into(),
            source: None,
        }
    }

    /// A [`SourceErrorKind::Disconnected`] error from a failed read.
    pub fn read_failed(origin: impl Into<String>, source: std::io::Error) -> Self {
        SourceError::Disconnected {
            origin: origin.into(),
            message: format!("read failed: {source}"),
            source: Some(source),
        }
    }
}

/// Opens the source `spec` describes. `stdin:` sources read this process's stdin.
///
/// Errors from `open` are best treated as fatal whatever their kind (a missing
/// camera is [`SourceErrorKind::Disconnected`], which only means "might come back"):
/// the kinds matter for errors from [`FrameSource::next_frame`] and
/// [`FrameSource::reopen`].
pub fn open(spec: &SourceSpec) -> Result<Box<dyn FrameSource>, SourceError> {
    let stdin = || -> Box<dyn Read> { Box::new(std::io::stdin().lock()) };
    Ok(match spec {
        SourceSpec::V4l2 {
            device,
            size,
            format,
        } => open_v4l2(device, *size, *format)?,
        SourceSpec::StdinMjpeg => Box::new(MjpegStream::new(stdin(), "stdin:mjpeg")),
        SourceSpec::StdinRaw {
            format,
            width,
            height,
        } => Box::new(RawStream::new(
            stdin(),
            *format,
            *width,
            *height,
            format!("stdin:{}", format.as_str()),
        )?),
        SourceSpec::Dir(path) => Box::new(DirSource::open_dir(path)?),
        SourceSpec::Files(paths) => Box::new(DirSource::from_files(paths.clone())?),
        SourceSpec::Synthetic {
            width,
            height,
            frames,
        } => Box::new(Synthetic::new(*width, *height, *frames)?),
    })
}

#[cfg(target_os = "linux")]
fn open_v4l2(
    device: &std::path::Path,
    size: Option<(u32, u32)>,
    format: Option<PixelFormat>,
) -> Result<Box<dyn FrameSource>, SourceError> {
    Ok(Box::new(v4l2::V4l2Source::open(device, size, format)?))
}

#[cfg(not(target_os = "linux"))]
fn open_v4l2(
    device: &std::path::Path,
    _size: Option<(u32, u32)>,
    _format: Option<PixelFormat>,
) -> Result<Box<dyn FrameSource>, SourceError> {
    Err(SourceError::config(
        device.display().to_string(),
        "V4L2 capture needs Linux (pipe frames in with stdin:mjpeg or stdin:yuv420:WxH)",
    ))
}
