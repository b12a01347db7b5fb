//! The `--source` spellings ([`SourceSpec`]), parsed with [`std::str::FromStr`].

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use super::SourceError;

/// Largest frame width or height any source accepts.
pub const MAX_SIDE: u32 = 16384;

/// What `--source` accepts, for error messages.
const ACCEPTED: &str = "expected v4l2:DEVICE[:WxH[:yuyv|mjpeg]], stdin:mjpeg, stdin:rgb24:WxH, \
stdin:yuv420:WxH, dir:PATH, files:A,B,..., or synthetic[:WxH[:N]]";

/// Pixel format asked of a V4L2 camera.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelFormat {
    /// YUYV (YUY2): packed 4:2:2, BT.601 limited range.
    Yuyv,
    /// Motion JPEG: one JPEG per frame.
    Mjpeg,
}

impl PixelFormat {
    /// The spelling used in specs and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            PixelFormat::Yuyv => "yuyv",
            PixelFormat::Mjpeg => "mjpeg",
        }
    }
}

/// Layout of raw frames on stdin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawFormat {
    /// Packed RGB, 3 bytes per pixel (`ffmpeg -pix_fmt rgb24 -f rawvideo`).
    Rgb24,
    /// I420 planar 4:2:0: the Y plane, then U, then V at half width and height
    /// (`rpicam-vid --codec yuv420`, `ffmpeg -pix_fmt yuv420p -f rawvideo`).
    Yuv420,
}

impl RawFormat {
    /// The spelling used in specs and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            RawFormat::Rgb24 => "rgb24",
            RawFormat::Yuv420 => "yuv420",
        }
    }

    /// Bytes of one `width`×`height` frame.
    pub fn frame_len(self, width: u32, height: u32) -> usize {
        let (w, h) = (width as usize, height as usize);
        match self {
            RawFormat::Rgb24 => w * h * 3,
            RawFormat::Yuv420 => w * h + 2 * (w / 2) * (h / 2),
        }
    }
}

/// A parsed `--source` argument; [`super::open`] opens it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    /// `v4l2:/dev/video0[:WxH[:yuyv|mjpeg]]` (also `v4l2:DEVICE:mjpeg`): a V4L2
    /// camera; without a size or format the driver's current ones are kept.
    V4l2 {
        /// The device node.
        device: PathBuf,
        /// Requested frame size (the driver may choose another; it is logged).
        size: Option<(u32, u32)>,
        /// Requested pixel format.
        format: Option<PixelFormat>,
    },
    /// `stdin:mjpeg`: JPEGs back to back on stdin.
    StdinMjpeg,
    /// `stdin:rgb24:WxH`, `stdin:yuv420:WxH`: raw frames on stdin.
    StdinRaw {
        /// Pixel layout.
        format: RawFormat,
        /// Frame width.
        width: u32,
        /// Frame height.
        height: u32,
    },
    /// `dir:PATH`: image files under PATH (recursive, sorted), or PATH itself if it
    /// is a file.
    Dir(PathBuf),
    /// `files:A,B,C`: these image files, in this order.
    Files(Vec<PathBuf>),
    /// `synthetic[:WxH[:N]]`: a deterministic moving pattern, 640x480 and endless by
    /// default.
    Synthetic {
        /// Frame width.
        width: u32,
        /// Frame height.
        height: u32,
        /// Number of frames, or endless.
        frames: Option<u64>,
    },
}

fn parse_size(text: &str) -> Result<(u32, u32), String> {
    let bad = || format!("{text:?} is not a size WxH (e.g. 640x480)");
    let (w, h) = text.split_once(['x', 'X']).ok_or_else(bad)?;
    let w: u32 = w.parse().map_err(|_| bad())?;
    let h: u32 = h.parse().map_err(|_| bad())?;
    if w == 0 || h == 0 || w > MAX_SIDE || h > MAX_SIDE {
        return Err(format!(
            "size {w}x{h} out of range (each side 1..={MAX_SIDE})"
        ));
    }
    Ok((w, h))
}

fn parse_pixel_format(text: &str) -> Option<PixelFormat> {
    match text.to_ascii_lowercase().as_str() {
        "yuyv" | "yuy2" => Some(PixelFormat::Yuyv),
        "mjpeg" | "mjpg" => Some(PixelFormat::Mjpeg),
        _ => None,
    }
}

fn looks_like_size(text: &str) -> bool {
    text.split_once(['x', 'X'])
        .is_some_and(|(w, h)| w.bytes().all(|b| b.is_ascii_digit()) && !h.is_empty())
}

/// `DEVICE[:WxH][:FORMAT]`, parsed from the right so that device paths with colons
/// (`/dev/v4l/by-path/...usb-0:1:1.0...`) work.
fn parse_v4l2(rest: &str) -> Result<SourceSpec, String> {
    let mut device = rest;
    let mut format = None;
    let mut size = None;
    if let Some((head, last)) = device.rsplit_once(':') {
        if let Some(f) = parse_pixel_format(last) {
            format = Some(f);
            device = head;
        }
    }
    if let Some((head, last)) = device.rsplit_once(':') {
        if looks_like_size(last) {
            size = Some(parse_size(last)?);
            device = head;
        }
    }
    if device.is_empty() {
        return Err("missing the device path, e.g. v4l2:/dev/video0".to_string());
    }
    Ok(SourceSpec::V4l2 {
        device: PathBuf::from(device),
        size,
        format,
    })
}

fn parse_stdin(rest: &str) -> Result<SourceSpec, String> {
    let (kind, size) = match rest.split_once(':') {
        Some((k, s)) => (k, Some(s)),
        None => (rest, None),
    };
    let format = match kind.to_ascii_lowercase().as_str() {
        "mjpeg" | "mjpg" => {
            return match size {
                None => Ok(SourceSpec::StdinMjpeg),
                Some(_) => Err("stdin:mjpeg takes no size (each JPEG has its own)".to_string()),
            }
        }
        "rgb24" | "rgb" => RawFormat::Rgb24,
        "yuv420" | "i420" | "yuv420p" => RawFormat::Yuv420,
        other => {
            return Err(format!(
                "unknown stdin format {other:?}: expected stdin:mjpeg, stdin:rgb24:WxH or stdin:yuv420:WxH"
            ))
        }
    };
    let size = size.ok_or_else(|| {
        format!(
            "stdin:{} needs a frame size, e.g. stdin:{}:640x480",
            format.as_str(),
            format.as_str()
        )
    })?;
    let (width, height) = parse_size(size)?;
    if format == RawFormat::Yuv420 && (!width.is_multiple_of(2) || !height.is_multiple_of(2)) {
        return Err(format!(
            "yuv420 (I420) needs an even width and height, got {width}x{height}"
        ));
    }
    Ok(SourceSpec::StdinRaw {
        format,
        width,
        height,
    })
}

fn parse_synthetic(rest: Option<&str>) -> Result<SourceSpec, String> {
    let (mut width, mut height, mut frames) = (640, 480, None);
    if let Some(rest) = rest {
        let (size, n) = match rest.split_once(':') {
            Some((s, n)) => (s, Some(n)),
            None => (rest, None),
        };
        (width, height) = parse_size(size)?;
        if let Some(n) = n {
            frames = Some(
                n.parse::<u64>()
                    .map_err(|_| format!("{n:?} is not a frame count"))?,
            );
        }
    }
    Ok(SourceSpec::Synthetic {
        width,
        height,
        frames,
    })
}

impl FromStr for SourceSpec {
    type Err = SourceError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (scheme, rest) = match text.split_once(':') {
            Some((s, r)) => (s, Some(r)),
            None => (text, None),
        };
        let result = match (scheme, rest) {
            ("v4l2", Some(rest)) => parse_v4l2(rest),
            ("v4l2", None) => Ok(SourceSpec::V4l2 {
                device: PathBuf::from("/dev/video0"),
                size: None,
                format: None,
            }),
            ("stdin", Some(rest)) => parse_stdin(rest),
            ("dir", Some(rest)) if !rest.is_empty() => Ok(SourceSpec::Dir(PathBuf::from(rest))),
            ("files", Some(rest)) => {
                let files: Vec<PathBuf> = rest
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(PathBuf::from)
                    .collect();
                if files.is_empty() {
                    Err("files: needs at least one path, e.g. files:a.jpg,b.png".to_string())
                } else {
                    Ok(SourceSpec::Files(files))
                }
            }
            ("synthetic", rest) => parse_synthetic(rest),
            _ => Err(ACCEPTED.to_string()),
        };
        result.map_err(|message| SourceError::Spec {
            spec: text.to_string(),
            message,
        })
    }
}

impl fmt::Display for SourceSpec {
    /// The canonical spelling, which parses back to the same spec.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceSpec::V4l2 {
                device,
                size,
                format,
            } => {
                write!(f, "v4l2:{}", device.display())?;
                if let Some((w, h)) = size {
                    write!(f, ":{w}x{h}")?;
                }
                if let Some(p) = format {
                    write!(f, ":{}", p.as_str())?;
                }
                Ok(())
            }
            SourceSpec::StdinMjpeg => write!(f, "stdin:mjpeg"),
            SourceSpec::StdinRaw {
                format,
                width,
                height,
            } => write!(f, "stdin:{}:{width}x{height}", format.as_str()),
            SourceSpec::Dir(p) => write!(f, "dir:{}", p.display()),
            SourceSpec::Files(files) => {
                write!(f, "files:")?;
                for (i, p) in files.iter().enumerate() {
                    let sep = if i == 0 { "" } else { "," };
                    write!(f, "{sep}{}", p.display())?;
                }
                Ok(())
            }
            SourceSpec::Synthetic {
                width,
                height,
                frames,
            } => {
                write!(f, "synthetic:{width}x{height}")?;
                if let Some(n) = frames {
                    write!(f, ":{n}")?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> SourceSpec {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn good_spellings() {
        let v = |d: &str, size, format| SourceSpec::V4l2 {
            device: PathBuf::from(d),
            size,
            format,
        };
        assert_eq!(parse("v4l2:/dev/video0"), v("/dev/video0", None, None));
        assert_eq!(parse("v4l2"), v("/dev/video0", None, None));
        assert_eq!(
            parse("v4l2:/dev/video2:1280x720"),
            v("/dev/video2", Some((1280, 720)), None)
        );
        assert_eq!(
            parse("v4l2:/dev/video0:640x480:MJPEG"),
            v("/dev/video0", Some((640, 480)), Some(PixelFormat::Mjpeg))
        );
        assert_eq!(
            parse("v4l2:/dev/video0:yuyv"),
            v("/dev/video0", None, Some(PixelFormat::Yuyv))
        );
        let by_path = "/dev/v4l/by-path/pci-0000:00:14.0-usb-0:1:1.0-video-index0";
        assert_eq!(
            parse(&format!("v4l2:{by_path}:320x240:yuyv")),
            v(by_path, Some((320, 240)), Some(PixelFormat::Yuyv))
        );
        assert_eq!(parse("stdin:mjpeg"), SourceSpec::StdinMjpeg);
        assert_eq!(
            parse("stdin:rgb24:4x3"),
            SourceSpec::StdinRaw {
                format: RawFormat::Rgb24,
                width: 4,
                height: 3
            }
        );
        assert_eq!(
            parse("stdin:yuv420:640x480"),
            SourceSpec::StdinRaw {
                format: RawFormat::Yuv420,
                width: 640,
                height: 480
            }
        );
        assert_eq!(parse("dir:/tmp/a:b"), SourceSpec::Dir("/tmp/a:b".into()));
        assert_eq!(
            parse("files:a.jpg,b/c.png"),
            SourceSpec::Files(vec!["a.jpg".into(), "b/c.png".into()])
        );
        let syn = |width, height, frames| SourceSpec::Synthetic {
            width,
            height,
            frames,
        };
        assert_eq!(parse("synthetic"), syn(640, 480, None));
        assert_eq!(parse("synthetic:32x16"), syn(32, 16, None));
        assert_eq!(parse("synthetic:32x16:5"), syn(32, 16, Some(5)));
        // Display round-trips.
        for s in [
            "v4l2:/dev/video0:640x480:mjpeg",
            "stdin:yuv420:8x2",
            "files:a,b",
            "synthetic:8x8:3",
            "dir:x",
        ] {
            assert_eq!(parse(s).to_string(), s);
        }
    }

    #[test]
    fn bad_spellings_say_what_is_accepted() {
        for (text, needle) in [
            ("camera", "expected v4l2:DEVICE"),
            ("", "expected v4l2:DEVICE"),
            ("v4l2:", "missing the device path"),
            ("v4l2:/dev/video0:0x480", "out of range"),
            ("stdin", "expected v4l2:DEVICE"),
            ("stdin:h264", "unknown stdin format"),
            ("stdin:rgb24", "needs a frame size"),
            ("stdin:rgb24:640", "not a size"),
            ("stdin:yuv420:641x480", "even width and height"),
            ("stdin:mjpeg:640x480", "takes no size"),
            ("dir:", "expected v4l2:DEVICE"),
            ("files:", "at least one path"),
            ("synthetic:big", "not a size"),
            ("synthetic:8x8:many", "not a frame count"),
            ("synthetic:99999x8", "out of range"),
        ] {
            let e = text.parse::<SourceSpec>().unwrap_err();
            let msg = e.to_string();
            assert_eq!(e.kind(), super::super::SourceErrorKind::Config, "{msg}");
            assert!(msg.contains(needle), "{text:?}: {msg}");
            assert!(!msg.contains('\n'), "one line: {msg}");
        }
    }
}
