//! V4L2 cameras (`v4l2:/dev/video0[:WxH[:yuyv|mjpeg]]`): memory-mapped streaming
//! capture through the `linuxvideo` crate (pure-Rust ioctls, so it cross-compiles
//! for musl and armv7 without a sysroot or bindgen).
//!
//! Format selection: the requested pixel format must be one the device lists
//! (else a [`SourceErrorKind::Config`](super::SourceErrorKind) error listing what it
//! offers); without one, the device's current format is kept if it is YUYV or MJPEG,
//! else YUYV, else MJPEG. Without a size the current size is kept. The driver may
//! adjust the size; what it chose is logged and shown by
//! [`FrameSource::describe`]. YUYV is converted with [`super::yuv`] (BT.601 limited
//! range), MJPEG decoded with [`super::decode_jpeg_into`], both straight from the
//! mapped buffer into the frame.
//!
//! Frames of another size than negotiated: a YUYV buffer shorter than the negotiated
//! frame is a cut frame, and one longer than the driver's `sizeimage` is a frame of
//! another size (a camera that changed mode); both are
//! [`SourceErrorKind::BadFrame`](super::SourceErrorKind), never read as a garbled image.
//! An MJPEG frame carries its own size and is decoded at it (a warning names the
//! first size that differs from the negotiated one).
//!
//! Errors: a missing or unplugged device (`ENOENT`, `ENODEV`, `EIO`, ...), a busy one
//! (`EBUSY`) and a capture timeout are [`SourceErrorKind::Disconnected`](super::SourceErrorKind);
//! [`FrameSource::reopen`] opens it again with the same settings. A node that is not
//! a capture device, or lacks the format, is `Config`.

use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use linuxvideo::format::{Format, PixFormat};
use linuxvideo::stream::ReadStream;
use linuxvideo::{BufType, CapabilityFlags, Device};

use super::yuv::yuyv_to_rgb;
use super::{decode_jpeg_into, Frame, FrameSource, PixelFormat, SourceError, MAX_SIDE};

/// How long [`V4l2Source::next_frame`] waits for a frame before reporting the
/// camera as disconnected.
pub const FRAME_TIMEOUT_MS: i32 = 5000;

fn fourcc(format: PixelFormat) -> linuxvideo::format::PixelFormat {
    match format {
        PixelFormat::Yuyv => linuxvideo::format::PixelFormat::YUYV,
        PixelFormat::Mjpeg => linuxvideo::format::PixelFormat::MJPG,
    }
}

fn ours(fourcc: linuxvideo::format::PixelFormat) -> Option<PixelFormat> {
    use linuxvideo::format::PixelFormat as F;
    if fourcc == F::YUYV {
        Some(PixelFormat::Yuyv)
    } else if fourcc == F::MJPG || fourcc == F::JPEG {
        Some(PixelFormat::Mjpeg)
    } else {
        None
    }
}

/// Maps an I/O error on `device` to a [`SourceError`]: gone, unplugged or busy is
/// Disconnected, the rest (permissions, not a V4L2 node, invalid request) Config.
fn io_error(device: &Path, doing: &str, e: io::Error) -> SourceError {
    let origin = device.display().to_string();
    match e.raw_os_error() {
        Some(
            libc::ENOENT
            | libc::ENODEV
            | libc::ENXIO
            | libc::EIO
            | libc::EPIPE
            | libc::EBUSY
            | libc::ETIMEDOUT
            | libc::EAGAIN,
        ) => SourceError::Disconnected {
            origin,
            message: format!("{doing}: {e}"),
            source: Some(e),
        },
        Some(libc::EACCES | libc::EPERM) => SourceError::config(
            origin,
            format!("{doing}: {e} (is the user in the `video` group?)"),
        ),
        Some(libc::ENOTTY) => {
            SourceError::config(origin, format!("{doing}: not a V4L2 device ({e})"))
        }
        _ => SourceError::config(origin, format!("{doing}: {e}")),
    }
}

/// The frame format agreed with the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Negotiated {
    width: u32,
    height: u32,
    /// Bytes per row (YUYV: at least `2 × width`).
    stride: usize,
    /// The driver's `sizeimage`: the largest buffer a frame of this format fills.
    size_image: usize,
    format: PixelFormat,
}

/// Converts one dequeued buffer into `frame`, refusing a YUYV buffer that is not a
/// frame of the negotiated size (see the module docs). MJPEG is decoded at its own size.
fn convert_buffer(buffer: &[u8], negotiated: &Negotiated, frame: &mut Frame) -> Result<(), String> {
    let Negotiated {
        width: w,
        height: h,
        stride,
        size_image,
        format,
    } = *negotiated;
    match format {
        PixelFormat::Yuyv => {
            let largest = size_image.max(stride.saturating_mul(h as usize));
            if buffer.len() > largest {
                return Err(format!(
                    "the camera delivered {} bytes, more than a {w}x{h} YUYV frame ({largest}): \
                     it is sending another frame size than negotiated",
                    buffer.len()
                ));
            }
            let out = frame.reshape(w, h);
            yuyv_to_rgb(buffer, stride, w as usize, h as usize, out).map_err(|e| e.to_string())
        }
        PixelFormat::Mjpeg => decode_jpeg_into(buffer, frame).map_err(|e| e.to_string()),
    }
}

/// A V4L2 camera streaming into memory-mapped buffers.
pub struct V4l2Source {
    device: PathBuf,
    size: Option<(u32, u32)>,
    format: Option<PixelFormat>,
    stream: Option<ReadStream>,
    driver: String,
    negotiated: Negotiated,
    /// Whether an MJPEG frame of another size than negotiated was already logged.
    warned_size: bool,
    index: u64,
}

impl V4l2Source {
    /// Opens `device`, negotiates `size` and `format` (see the module docs) and
    /// starts streaming.
    pub fn open(
        device: &Path,
        size: Option<(u32, u32)>,
        format: Option<PixelFormat>,
    ) -> Result<Self, SourceError> {
        let origin = || device.display().to_string();
        let dev = Device::open(device).map_err(|e| io_error(device, "cannot open", e))?;
        let caps = dev
            .capabilities()
            .map_err(|e| io_error(device, "cannot query capabilities", e))?;
        let driver = format!("{} ({})", caps.driver(), caps.card());
        let flags = caps.device_capabilities();
        if !flags.contains(CapabilityFlags::VIDEO_CAPTURE | CapabilityFlags::STREAMING) {
            return Err(SourceError::config(
                origin(),
                format!("{driver} is not a streaming video capture device ({flags:?})"),
            ));
        }
        let mut offered = Vec::new();
        for desc in dev.formats(BufType::VIDEO_CAPTURE) {
            let desc = desc.map_err(|e| io_error(device, "cannot list formats", e))?;
            offered.push(desc.pixel_format());
        }
        let offers = |f: PixelFormat| offered.iter().any(|&o| ours(o) == Some(f));
        let listing = || {
            offered
                .iter()
                .map(|f| f.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let current = match dev.format(BufType::VIDEO_CAPTURE) {
            Ok(Format::VideoCapture(f)) => Some(f),
            _ => None,
        };
        let chosen = match format {
            Some(f) if offers(f) => f,
            Some(f) => {
                return Err(SourceError::config(
                    origin(),
                    format!(
                        "{driver} does not offer {}; it offers: {}",
                        f.as_str(),
                        listing()
                    ),
                ))
            }
            None => match current.as_ref().and_then(|c| ours(c.pixel_format())) {
                Some(f) => f,
                None if offers(PixelFormat::Yuyv) => PixelFormat::Yuyv,
                None if offers(PixelFormat::Mjpeg) => PixelFormat::Mjpeg,
                None => {
                    return Err(SourceError::config(
                        origin(),
                        format!(
                            "{driver} offers neither YUYV nor MJPEG (it offers: {})",
                            listing()
                        ),
                    ))
                }
            },
        };
        let (w, h) = size
            .or(current.as_ref().map(|c| (c.width(), c.height())))
            .unwrap_or((640, 480));
        let capture = dev
            .video_capture(PixFormat::new(w, h, fourcc(chosen)))
            .map_err(|e| io_error(device, "cannot set the capture format", e))?;
        let got = capture.format();
        if ours(got.pixel_format()) != Some(chosen) {
            return Err(SourceError::config(
                origin(),
                format!(
                    "asked for {}, the driver chose {}",
                    chosen.as_str(),
                    got.pixel_format()
                ),
            ));
        }
        let (width, height, stride) = (got.width(), got.height(), got.bytes_per_line() as usize);
        let size_image = got.size_image() as usize;
        if width == 0 || height == 0 || width > MAX_SIDE || height > MAX_SIDE {
            return Err(SourceError::config(
                origin(),
                format!("the driver chose an unusable size {width}x{height}"),
            ));
        }
        if (width, height) != (w, h) {
            log::info!(
                "{}: asked for {w}x{h}, the driver chose {width}x{height}",
                origin()
            );
        }
        let stream = capture
            .into_stream()
            .map_err(|e| io_error(device, "cannot start streaming", e))?;
        let source = V4l2Source {
            device: device.to_path_buf(),
            size,
            format,
            stream: Some(stream),
            driver,
            negotiated: Negotiated {
                width,
                height,
                stride: if chosen == PixelFormat::Yuyv {
                    stride.max(width as usize * 2)
                } else {
                    stride
                },
                size_image,
                format: chosen,
            },
            warned_size: false,
            index: 0,
        };
        log::info!("opened {}", source.describe());
        Ok(source)
    }

    /// Waits until a buffer is ready, up to [`FRAME_TIMEOUT_MS`].
    fn wait(&self, fd: i32) -> Result<(), SourceError> {
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        loop {
            // SAFETY: `pfd` is a valid pollfd and we pass a count of 1.
            let n = unsafe { libc::poll(&mut pfd, 1, FRAME_TIMEOUT_MS) };
            if n > 0 {
                return Ok(());
            }
            if n == 0 {
                return Err(SourceError::Disconnected {
                    origin: self.device.display().to_string(),
                    message: format!("no frame for {} ms", FRAME_TIMEOUT_MS),
                    source: None,
                });
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(io_error(&self.device, "waiting for a frame", e));
            }
        }
    }
}

impl FrameSource for V4l2Source {
    fn describe(&self) -> String {
        format!(
            "v4l2:{} {}x{} {} [{}]",
            self.device.display(),
            self.negotiated.width,
            self.negotiated.height,
            self.negotiated.format.as_str(),
            self.driver
        )
    }

    fn next_frame(&mut self, frame: &mut Frame) -> Result<bool, SourceError> {
        let Some(stream) = self.stream.as_ref() else {
            return Err(SourceError::Disconnected {
                origin: self.device.display().to_string(),
                message: "not streaming since the last error; reopen it".to_string(),
                source: None,
            });
        };
        if let Err(e) = self.wait(stream.as_raw_fd()) {
            self.stream = None;
            return Err(e);
        }
        let negotiated = self.negotiated;
        let Some(stream) = self.stream.as_mut() else {
            return Ok(false);
        };
        let result = stream.dequeue(|view| {
            if view.is_error() {
                return Ok(Err("the driver flagged the buffer as corrupt".to_string()));
            }
            Ok(convert_buffer(&view, &negotiated, frame))
        });
        let index = self.index;
        self.index += 1;
        match result {
            Ok(Ok(())) => {
                let (w, h) = (negotiated.width, negotiated.height);
                if frame.rgb.dimensions() != (w, h) && !self.warned_size {
                    self.warned_size = true;
                    let (fw, fh) = frame.rgb.dimensions();
                    log::warn!(
                        "{}: frame #{index} is {fw}x{fh}, not the negotiated {w}x{h}; \
                         classifying it at its own size",
                        self.device.display()
                    );
                }
                frame.set_name_indexed(&self.device.to_string_lossy(), index);
                Ok(true)
            }
            Ok(Err(message)) => Err(SourceError::bad_frame(
                format!("{}#{index}", self.device.display()),
                message,
            )),
            Err(e) => {
                self.stream = None;
                Err(io_error(&self.device, "capture failed", e))
            }
        }
    }

    fn reopen(&mut self) -> Result<(), SourceError> {
        self.stream = None;
        let fresh = V4l2Source::open(&self.device, self.size, self.format)?;
        let index = self.index;
        *self = fresh;
        self.index = index;
        Ok(())
    }
}

/// The first `/dev/video*` node whose driver is `vivid` (the kernel's virtual
/// video test driver) with a capture interface, if any; for tests.
pub fn find_vivid() -> Option<PathBuf> {
    let mut nodes: Vec<PathBuf> = std::fs::read_dir("/dev")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("video"))
        })
        .collect();
    nodes.sort();
    nodes.into_iter().find(|p| {
        Device::open(p)
            .and_then(|d| d.capabilities())
            .is_ok_and(|c| {
                c.driver() == "vivid"
                    && c.device_capabilities()
                        .contains(CapabilityFlags::VIDEO_CAPTURE)
            })
    })
}

#[cfg(test)]
mod tests {
    use super::super::SourceErrorKind;
    use super::*;

    #[test]
    fn missing_device_is_an_error_naming_it() {
        let e = V4l2Source::open(Path::new("/dev/video9"), None, None)
            .err()
            .expect("no /dev/video9 here");
        assert!(
            matches!(
                e.kind(),
                SourceErrorKind::Disconnected | SourceErrorKind::Config
            ),
            "{e}"
        );
        assert!(e.to_string().contains("/dev/video9"), "{e}");
        // Not a V4L2 node at all.
        let e = V4l2Source::open(Path::new("/dev/null"), None, None)
            .err()
            .expect("/dev/null is no camera");
        assert!(e.to_string().contains("/dev/null"), "{e}");
    }

    const QVGA_YUYV: Negotiated = Negotiated {
        width: 320,
        height: 240,
        stride: 640,
        size_image: 640 * 240,
        format: PixelFormat::Yuyv,
    };

    /// A YUYV buffer of `w`×`h` grey pixels with one bright pixel pair per row.
    fn yuyv(w: usize, h: usize) -> Vec<u8> {
        let mut buf = [16u8, 128].repeat(w * h);
        for row in buf.chunks_exact_mut((w * 2).max(1)) {
            row[0] = 235;
            row[2] = 235;
        }
        buf
    }

    #[test]
    fn a_yuyv_buffer_of_the_negotiated_size_converts() {
        let mut frame = Frame::new();
        convert_buffer(&yuyv(320, 240), &QVGA_YUYV, &mut frame).unwrap();
        assert_eq!(frame.rgb.dimensions(), (320, 240));
        assert_eq!(frame.rgb.get_pixel(0, 239).0, [255, 255, 255]);
        assert_eq!(frame.rgb.get_pixel(2, 239).0, [0, 0, 0]);
        // A driver whose sizeimage pads the frame (rows rounded up to 16 here) delivers
        // the padding too; the frame is still the negotiated one.
        let padded = Negotiated {
            size_image: 640 * 256,
            ..QVGA_YUYV
        };
        let mut buf = yuyv(320, 240);
        buf.resize(640 * 256, 0);
        convert_buffer(&buf, &padded, &mut frame).unwrap();
        assert_eq!(frame.rgb.dimensions(), (320, 240));
    }

    /// A camera that sends another frame size than it negotiated: every case is a
    /// bad frame naming the sizes, not a frame read as garbage or a panic.
    #[test]
    fn yuyv_buffers_of_another_size_than_negotiated_are_bad_frames() {
        let mut frame = Frame::new();
        for (w, h) in [
            (640, 480),
            (320, 241),
            (352, 288),
            (320, 200),
            (160, 120),
            (0, 0),
        ] {
            let e = convert_buffer(&yuyv(w, h), &QVGA_YUYV, &mut frame)
                .err()
                .unwrap_or_else(|| panic!("a {w}x{h} buffer taken as 320x240"));
            assert!(e.contains("320x240"), "{w}x{h}: {e}");
            assert!(e.contains(&(w * h * 2).to_string()), "{w}x{h}: {e}");
        }
        let e = convert_buffer(&yuyv(640, 480), &QVGA_YUYV, &mut frame).unwrap_err();
        assert!(e.contains("another frame size than negotiated"), "{e}");
    }

    #[test]
    fn an_mjpeg_frame_is_decoded_at_its_own_size() {
        let picture =
            image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([x as u8 * 4, y as u8 * 5, 90]));
        let mut jpeg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 90)
            .encode_image(&picture)
            .unwrap();
        let mut frame = Frame::new();
        let mjpeg = Negotiated {
            format: PixelFormat::Mjpeg,
            ..QVGA_YUYV
        };
        convert_buffer(&jpeg, &mjpeg, &mut frame).unwrap();
        assert_eq!(frame.rgb.dimensions(), (64, 48));
        let e = convert_buffer(&jpeg[..jpeg.len() / 3], &mjpeg, &mut frame);
        assert!(e.is_err() || frame.rgb.dimensions() == (64, 48));
        assert!(convert_buffer(&yuyv(320, 240), &mjpeg, &mut frame).is_err());
    }

    /// Captures from the kernel's `vivid` test driver when one is loaded
    /// (`modprobe vivid`); skipped otherwise.
    #[test]
    fn captures_from_vivid() {
        let Some(node) = find_vivid() else {
            eprintln!("skipped: no vivid device");
            return;
        };
        let mut cam = V4l2Source::open(&node, Some((320, 240)), Some(PixelFormat::Yuyv))
            .unwrap_or_else(|e| panic!("{e}"));
        let mut frame = Frame::new();
        for _ in 0..3 {
            assert!(cam.next_frame(&mut frame).unwrap());
        }
        assert_eq!(
            frame.rgb.dimensions(),
            (cam.negotiated.width, cam.negotiated.height)
        );
        assert!(frame.name.ends_with("#2"), "{}", frame.name);
        assert!(frame.rgb.as_raw().iter().any(|&b| b != 0));
        cam.reopen().unwrap();
        assert!(cam.next_frame(&mut frame).unwrap());
        assert!(cam.describe().contains("yuyv"), "{}", cam.describe());
    }
}
