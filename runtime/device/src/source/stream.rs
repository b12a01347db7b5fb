//! Raw video on a byte stream: fixed-size frames back to back, packed RGB24 or I420
//! (`ffmpeg -f rawvideo -pix_fmt rgb24|yuv420p -`, `rpicam-vid --codec yuv420 -o -`).

use std::io::Read;

use super::yuv::i420_to_rgb;
use super::{Frame, FrameSource, RawFormat, SourceError, MAX_SIDE};

/// Reads raw frames of one size from `R` (stdin in [`super::open`], byte slices in
/// tests). RGB24 is read straight into the frame; I420 into a reused buffer, then
/// converted (BT.601 limited range, see [`super::yuv`]). No allocation per frame
/// once the frame buffer has its size.
///
/// EOF exactly at a frame boundary ends the stream (`Ok(false)`); EOF inside a frame
/// is a [`SourceErrorKind::BadFrame`](super::SourceErrorKind) for that partial
/// frame, then `Ok(false)`.
pub struct RawStream<R: Read> {
    reader: R,
    format: RawFormat,
    width: u32,
    height: u32,
    label: String,
    /// I420 bytes of one frame (empty for RGB24).
    yuv: Vec<u8>,
    index: u64,
    eof: bool,
}

impl<R: Read> RawStream<R> {
    /// A stream of `width`×`height` frames in `format` read from `reader`; `label`
    /// names it in frame names and errors (e.g. "stdin:rgb24"). I420 needs an even
    /// width and height.
    pub fn new(
        reader: R,
        format: RawFormat,
        width: u32,
        height: u32,
        label: impl Into<String>,
    ) -> Result<Self, SourceError> {
        let label = label.into();
        if width == 0 || height == 0 || width > MAX_SIDE || height > MAX_SIDE {
            return Err(SourceError::config(
                label,
                format!("frame size {width}x{height} out of range (each side 1..={MAX_SIDE})"),
            ));
        }
        if format == RawFormat::Yuv420 && (!width.is_multiple_of(2) || !height.is_multiple_of(2)) {
            return Err(SourceError::config(
                label,
                format!("yuv420 (I420) needs an even width and height, got {width}x{height}"),
            ));
        }
        let yuv = match format {
            RawFormat::Rgb24 => Vec::new(),
            RawFormat::Yuv420 => vec![0; format.frame_len(width, height)],
        };
        Ok(RawStream {
            reader,
            format,
            width,
            height,
            label,
            yuv,
            index: 0,
            eof: false,
        })
    }
}

/// Reads until `buf` is full or EOF; returns the bytes read.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match reader.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

impl<R: Read> FrameSource for RawStream<R> {
    fn describe(&self) -> String {
        format!("{} {}x{}", self.label, self.width, self.height)
    }

    fn next_frame(&mut self, frame: &mut Frame) -> Result<bool, SourceError> {
        if self.eof {
            return Ok(false);
        }
        let index = self.index;
        let dst: &mut [u8] = match self.format {
            RawFormat::Rgb24 => frame.reshape(self.width, self.height),
            RawFormat::Yuv420 => &mut self.yuv,
        };
        let want = dst.len();
        let got = read_full(&mut self.reader, dst)
            .map_err(|e| SourceError::read_failed(self.label.clone(), e))?;
        if got == 0 {
            self.eof = true;
            return Ok(false);
        }
        self.index += 1;
        if got < want {
            self.eof = true;
            return Err(SourceError::bad_frame(
                format!("{}#{index}", self.label),
                format!("stream ended inside the frame ({got} of {want} bytes)"),
            ));
        }
        if self.format == RawFormat::Yuv420 {
            let (w, h) = (self.width as usize, self.height as usize);
            let out = frame.reshape(self.width, self.height);
            i420_to_rgb(&self.yuv, w, h, out).map_err(|e| {
                SourceError::bad_frame(format!("{}#{index}", self.label), e.to_string())
            })?;
        }
        frame.set_name_indexed(&self.label, index);
        Ok(true)
    }
}
