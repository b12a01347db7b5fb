//! Motion JPEG: a byte stream of JPEGs back to back (`ffmpeg -f mjpeg`,
//! `rpicam-vid --codec mjpeg -o -`), split into frames and decoded into the frame
//! buffer.
//!
//! The splitter walks the JPEG marker structure rather than searching for byte
//! pairs: segment lengths are skipped (an EXIF thumbnail holds its own FFD8…FFD9),
//! and inside entropy-coded data `FF00` (stuffing), `FFD0`–`FFD7` (restart markers)
//! and fill bytes are not frame boundaries. Bytes outside SOI…EOI are skipped. A
//! JPEG cut short by a new SOI, or with a broken marker structure, or one that does
//! not decode, is a [`SourceErrorKind::BadFrame`](super::SourceErrorKind) and the
//! stream resumes at the next SOI.
//!
//! Decoding uses `zune-jpeg` (the decoder behind the `image` crate, with the same
//! lenient options), writing RGB straight into the frame; grayscale and CMYK JPEGs
//! come out as RGB (gray replicated into R, G, B, as PIL's `convert("RGB")`). The
//! read buffer is reused; `zune-jpeg` itself makes a few allocations per frame (its
//! decoder state), a constant number at a given size.

use std::io::Read;

use zune_core::bytestream::ZCursor;
use zune_core::colorspace::ColorSpace;
use zune_core::options::DecoderOptions;
use zune_jpeg::JpegDecoder;

use super::{Frame, FrameSource, SourceError, MAX_SIDE};

/// Initial read buffer; it doubles when a JPEG does not fit.
const INITIAL_BUFFER: usize = 1 << 20;
/// A JPEG larger than this without an EOI is dropped as corrupt.
const MAX_JPEG: usize = 64 << 20;

/// Why a JPEG could not be decoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JpegError {
    /// The decoder refused the data.
    #[error(transparent)]
    Decode(#[from] zune_jpeg::errors::DecodeErrors),
    /// The headers decoded but carry no image size.
    #[error("no image size in the JPEG headers")]
    NoSize,
}

/// Decodes one JPEG into `frame` as RGB8 (resizing it, reusing its allocation).
pub fn decode_jpeg_into(jpeg: &[u8], frame: &mut Frame) -> Result<(), JpegError> {
    let options = DecoderOptions::default()
        .set_strict_mode(false)
        .set_max_width(MAX_SIDE as usize)
        .set_max_height(MAX_SIDE as usize)
        .jpeg_set_out_colorspace(ColorSpace::RGB);
    let mut decoder = JpegDecoder::new_with_options(ZCursor::new(jpeg), options);
    decoder.decode_headers()?;
    let (w, h) = decoder.dimensions().ok_or(JpegError::NoSize)?;
    let out = frame.reshape(w as u32, h as u32);
    Ok(decoder.decode_into(out)?)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Looking for an SOI.
    Seek,
    /// At a marker between segments.
    Segment,
    /// Inside entropy-coded data after an SOS header.
    Entropy,
}

/// What the scanner found in the buffered bytes.
#[derive(Debug, PartialEq, Eq)]
enum Event {
    /// A whole JPEG, SOI to EOI: `buf[start..end]`.
    Jpeg { start: usize, end: usize },
    /// A broken JPEG; scanning resumes at `resume`.
    Broken {
        resume: usize,
        message: &'static str,
    },
    /// The buffered bytes end before the next event.
    NeedMore,
}

/// Splits a byte stream of concatenated JPEGs and decodes each into a [`Frame`].
/// Generic over the reader so tests feed it byte slices; [`super::open`] gives it
/// stdin.
pub struct MjpegStream<R: Read> {
    reader: R,
    label: String,
    buf: Vec<u8>,
    /// Valid bytes are `buf[..filled]`.
    filled: usize,
    /// Scan position.
    pos: usize,
    /// SOI of the JPEG being scanned.
    start: Option<usize>,
    mode: Mode,
    /// JPEGs seen so far, good and bad.
    index: u64,
    eof: bool,
}

impl<R: Read> MjpegStream<R> {
    /// A stream reading `reader`; `label` names it in frame names and errors
    /// (e.g. "stdin:mjpeg").
    pub fn new(reader: R, label: impl Into<String>) -> Self {
        MjpegStream {
            reader,
            label: label.into(),
            buf: vec![0; INITIAL_BUFFER],
            filled: 0,
            pos: 0,
            start: None,
            mode: Mode::Seek,
            index: 0,
            eof: false,
        }
    }

    fn scan(&mut self) -> Event {
        let buf = &self.buf[..self.filled];
        loop {
            match self.mode {
                Mode::Seek => {
                    match buf[self.pos..].windows(2).position(|w| w == [0xFF, 0xD8]) {
                        Some(i) => {
                            self.start = Some(self.pos + i);
                            self.pos += i + 2;
                            self.mode = Mode::Segment;
                        }
                        None => {
                            // Keep a trailing FF: it may be the first half of an SOI.
                            self.pos = self.filled.saturating_sub(1).max(self.pos);
                            return Event::NeedMore;
                        }
                    }
                }
                Mode::Segment => {
                    let p = self.pos;
                    if p + 1 >= buf.len() {
                        return Event::NeedMore;
                    }
                    if buf[p] != 0xFF {
                        return self.broken("no marker where a JPEG segment should start");
                    }
                    match buf[p + 1] {
                        0xFF => self.pos += 1, // fill byte
                        0xD8 => {
                            // A new image starts before this one ended.
                            let message = "truncated JPEG (a new one starts before its EOI)";
                            self.start = None;
                            self.mode = Mode::Seek;
                            return Event::Broken { resume: p, message };
                        }
                        0xD9 => {
                            let start = self.start.take().unwrap_or(0);
                            self.pos = p + 2;
                            self.mode = Mode::Seek;
                            return Event::Jpeg { start, end: p + 2 };
                        }
                        0x01 | 0xD0..=0xD7 => self.pos += 2,
                        0x00 => return self.broken("stuffed byte outside entropy-coded data"),
                        marker => {
                            if p + 3 >= buf.len() {
                                return Event::NeedMore;
                            }
                            let len = u16::from_be_bytes([buf[p + 2], buf[p + 3]]) as usize;
                            if len < 2 {
                                return self.broken("JPEG segment with a length below 2");
                            }
                            self.pos = p + 2 + len;
                            if marker == 0xDA {
                                self.mode = Mode::Entropy;
                            }
                        }
                    }
                }
                Mode::Entropy => {
                    let from = self.pos.min(buf.len());
                    let Some(i) = buf[from..].iter().position(|&b| b == 0xFF) else {
                        self.pos = buf.len().max(self.pos);
                        return Event::NeedMore;
                    };
                    let p = from + i;
                    if p + 1 >= buf.len() {
                        self.pos = p;
                        return Event::NeedMore;
                    }
                    match buf[p + 1] {
                        0x00 | 0xD0..=0xD7 => self.pos = p + 2,
                        0xFF => self.pos = p + 1,
                        _ => {
                            self.pos = p;
                            self.mode = Mode::Segment;
                        }
                    }
                }
            }
        }
    }

    /// Drops the JPEG being scanned; resumes looking for an SOI after its own.
    fn broken(&mut self, message: &'static str) -> Event {
        let resume = self.start.take().map_or(self.pos, |s| s + 2);
        self.pos = resume;
        self.mode = Mode::Seek;
        Event::Broken { resume, message }
    }

    /// Makes room and reads more bytes; `Ok(false)` at EOF.
    fn fill(&mut self) -> Result<bool, SourceError> {
        if self.filled == self.buf.len() {
            let keep = self.start.unwrap_or(self.pos).min(self.filled);
            if keep > 0 {
                self.buf.copy_within(keep..self.filled, 0);
                self.filled -= keep;
                self.pos -= keep.min(self.pos);
                self.start = self.start.map(|s| s - keep);
            }
            // Grow when less than a quarter is free: a JPEG nearly as large as the
            // buffer must not be read a few bytes at a time.
            if self.buf.len() - self.filled < self.buf.len() / 4 {
                let grown = self.buf.len() * 2;
                self.buf.resize(grown, 0);
            }
        }
        loop {
            match self.reader.read(&mut self.buf[self.filled..]) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    self.filled += n;
                    return Ok(true);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(SourceError::read_failed(self.label.clone(), e)),
            }
        }
    }

    fn bad(&self, index: u64, message: impl Into<String>) -> SourceError {
        SourceError::bad_frame(format!("{}#{index}", self.label), message)
    }
}

impl<R: Read> FrameSource for MjpegStream<R> {
    fn describe(&self) -> String {
        self.label.clone()
    }

    fn next_frame(&mut self, frame: &mut Frame) -> Result<bool, SourceError> {
        loop {
            match self.scan() {
                Event::Jpeg { start, end } => {
                    let index = self.index;
                    self.index += 1;
                    frame.set_name_indexed(&self.label, index);
                    return match decode_jpeg_into(&self.buf[start..end], frame) {
                        Ok(()) => Ok(true),
                        Err(e) => Err(self.bad(index, e.to_string())),
                    };
                }
                Event::Broken { resume, message } => {
                    self.pos = resume;
                    let index = self.index;
                    self.index += 1;
                    return Err(self.bad(index, message));
                }
                Event::NeedMore => {
                    if self.eof {
                        return Ok(false);
                    }
                    if let Some(start) = self.start {
                        if self.filled - start > MAX_JPEG {
                            self.start = None;
                            self.mode = Mode::Seek;
                            self.pos = self.filled;
                            let index = self.index;
                            self.index += 1;
                            return Err(self.bad(index, "JPEG larger than 64 MiB (no EOI)"));
                        }
                    }
                    if !self.fill()? {
                        self.eof = true;
                        if self.start.take().is_some() {
                            self.mode = Mode::Seek;
                            self.pos = self.filled;
                            let index = self.index;
                            self.index += 1;
                            return Err(self.bad(index, "stream ended inside a JPEG"));
                        }
                        if self.filled > self.pos + 1 {
                            log::debug!("{}: ignoring bytes after the last JPEG", self.label);
                        }
                        return Ok(false);
                    }
                }
            }
        }
    }
}
