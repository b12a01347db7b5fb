//! Tests of the stream and file sources (spec parsing, YUV and V4L2 have theirs
//! next to the code).

use std::io::{Cursor, Read};
use std::path::PathBuf;

use image::codecs::jpeg::JpegEncoder;
use image::{ExtendedColorType, Rgb, RgbImage};

use super::*;

/// Returns at most `chunk` bytes per read, to cross every buffer boundary.
struct Chunked<'a> {
    data: &'a [u8],
    chunk: usize,
}

impl Read for Chunked<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.chunk.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

fn picture(w: u32, h: u32, seed: u8) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        Rgb([(x * 7) as u8 ^ seed, (y * 11) as u8, seed.wrapping_mul(3)])
    })
}

fn jpeg(img: &RgbImage) -> Vec<u8> {
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, 90)
        .encode(
            img.as_raw(),
            img.width(),
            img.height(),
            ExtendedColorType::Rgb8,
        )
        .unwrap();
    out
}

/// What the `image` crate (the decoder behind `load_rgb8`) makes of `bytes`.
fn decoded(bytes: &[u8]) -> RgbImage {
    image::load_from_memory(bytes).unwrap().to_rgb8()
}

fn next(src: &mut dyn FrameSource, frame: &mut Frame) -> Result<bool, SourceError> {
    src.next_frame(frame)
}

#[test]
fn mjpeg_back_to_back_with_garbage_between() {
    let (a, b) = (jpeg(&picture(24, 16, 1)), jpeg(&picture(9, 13, 2)));
    let mut bytes = b"junk\xFF\x00\xFF".to_vec();
    bytes.extend(&a);
    bytes.extend(b"between\xFF\xD9\xFF");
    bytes.extend(&b);
    bytes.extend(b"trailing");
    for chunk in [1, 7, 1000, usize::MAX] {
        let reader = Chunked {
            data: &bytes,
            chunk,
        };
        let mut s = MjpegStream::new(reader, "stdin:mjpeg");
        let mut f = Frame::new();
        assert!(next(&mut s, &mut f).unwrap());
        assert_eq!(f.rgb, decoded(&a), "chunk {chunk}");
        assert_eq!(f.name, "stdin:mjpeg#0");
        assert!(next(&mut s, &mut f).unwrap());
        assert_eq!(f.rgb, decoded(&b), "chunk {chunk}");
        assert_eq!(f.name, "stdin:mjpeg#1");
        assert!(!next(&mut s, &mut f).unwrap());
        assert!(!next(&mut s, &mut f).unwrap());
    }
}

#[test]
fn mjpeg_truncated_or_corrupt_frame_is_skipped() {
    let imgs: Vec<_> = (0..3).map(|i| jpeg(&picture(32, 24, i * 50))).collect();
    // A header that decodes to nothing: SOF with a zero height.
    let mut zero = imgs[1].clone();
    let sof = zero.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
    zero[sof + 5] = 0;
    zero[sof + 6] = 0;
    let n = imgs[1].len();
    let cases: [(Vec<u8>, &str); 3] = [
        // Cut in the entropy-coded data: the next SOI shows it is truncated.
        (imgs[1][..n - 10].to_vec(), "truncated"),
        // Cut in the headers: a segment length runs into the next JPEG.
        (imgs[1][..n / 2].to_vec(), "bad frame"),
        (zero, "bad frame"),
    ];
    for (middle, needle) in cases {
        let mut bytes = imgs[0].clone();
        bytes.extend(&middle);
        bytes.extend(&imgs[2]);
        let mut s = MjpegStream::new(Cursor::new(bytes), "stdin:mjpeg");
        let mut f = Frame::new();
        assert!(next(&mut s, &mut f).unwrap());
        assert_eq!(f.rgb, decoded(&imgs[0]));
        let e = next(&mut s, &mut f).unwrap_err();
        assert_eq!(e.kind(), SourceErrorKind::BadFrame, "{e}");
        let msg = e.to_string();
        assert!(
            msg.contains("stdin:mjpeg#1") && msg.contains(needle),
            "{msg}"
        );
        assert!(next(&mut s, &mut f).unwrap());
        assert_eq!(f.rgb, decoded(&imgs[2]));
        assert_eq!(f.name, "stdin:mjpeg#2");
        assert!(!next(&mut s, &mut f).unwrap());
    }
    // EOF inside a JPEG: BadFrame, then the end.
    let mut bytes = imgs[0].clone();
    bytes.extend(&imgs[1][..100]);
    let mut s = MjpegStream::new(Cursor::new(bytes), "stdin:mjpeg");
    let mut f = Frame::new();
    assert!(next(&mut s, &mut f).unwrap());
    let e = next(&mut s, &mut f).unwrap_err();
    assert_eq!(e.kind(), SourceErrorKind::BadFrame);
    assert!(e.to_string().contains("ended inside"), "{e}");
    assert!(!next(&mut s, &mut f).unwrap());
}

#[test]
fn mjpeg_scanner_skips_segments_stuffing_and_restart_markers() {
    // A structurally valid but undecodable JPEG whose segment payload and entropy
    // data hold byte pairs that look like SOI/EOI: the splitter must take it whole
    // (one bad frame, #0), and the real JPEG after it is #1.
    let mut fake = vec![0xFF, 0xD8];
    fake.extend([0xFF, 0xE1, 0x00, 0x08, 0xFF, 0xD9, 0xFF, 0xD8, 0x00, 0x00]); // APP1
    fake.extend([0xFF, 0xDA, 0x00, 0x03, 0x00]); // SOS header
    fake.extend([
        0x12, 0xFF, 0x00, 0x34, 0xFF, 0xD0, 0x56, 0xFF, 0xFF, 0xD7, 0x78,
    ]);
    fake.extend([0xFF, 0xD9]);
    let real = jpeg(&picture(8, 8, 9));
    let mut bytes = fake.clone();
    bytes.extend(&real);
    let mut s = MjpegStream::new(
        Chunked {
            data: &bytes,
            chunk: 3,
        },
        "m",
    );
    let mut f = Frame::new();
    let e = next(&mut s, &mut f).unwrap_err();
    assert_eq!(e.kind(), SourceErrorKind::BadFrame);
    assert!(e.to_string().starts_with("m#0"), "{e}");
    assert!(!e.to_string().contains("truncated"), "{e}");
    assert!(next(&mut s, &mut f).unwrap());
    assert_eq!(f.name, "m#1");
    assert_eq!(f.rgb, decoded(&real));
    assert!(!next(&mut s, &mut f).unwrap());
}

#[test]
fn mjpeg_grayscale_comes_out_as_rgb_like_load_rgb8() {
    let gray = image::GrayImage::from_fn(10, 6, |x, y| image::Luma([(x * 20 + y * 3) as u8]));
    let mut bytes = Vec::new();
    JpegEncoder::new_with_quality(&mut bytes, 95)
        .encode(gray.as_raw(), 10, 6, ExtendedColorType::L8)
        .unwrap();
    let dir = tmpdir("gray");
    let path = dir.join("g.jpg");
    std::fs::write(&path, &bytes).unwrap();
    let want = clip_edge_core::image_io::load_rgb8(&path).unwrap();
    let mut s = MjpegStream::new(Cursor::new(bytes), "stdin:mjpeg");
    let mut f = Frame::new();
    assert!(next(&mut s, &mut f).unwrap());
    assert_eq!(f.rgb, want);
    assert!(f.rgb.pixels().all(|p| p[0] == p[1] && p[1] == p[2]));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn raw_rgb24_with_a_partial_last_frame() {
    let (w, h) = (3u32, 2u32);
    let len = (w * h * 3) as usize;
    let bytes: Vec<u8> = (0..len * 2 + 5).map(|i| i as u8).collect();
    let mut s = RawStream::new(Cursor::new(&bytes), RawFormat::Rgb24, w, h, "stdin:rgb24").unwrap();
    let mut f = Frame::new();
    assert!(next(&mut s, &mut f).unwrap());
    assert_eq!(f.rgb.as_raw(), &bytes[..len]);
    assert_eq!(f.name, "stdin:rgb24#0");
    assert!(next(&mut s, &mut f).unwrap());
    assert_eq!(f.rgb.as_raw(), &bytes[len..2 * len]);
    let e = next(&mut s, &mut f).unwrap_err();
    assert_eq!(e.kind(), SourceErrorKind::BadFrame);
    assert!(e.to_string().contains("stdin:rgb24#2") && e.to_string().contains("5 of 18"));
    assert!(!next(&mut s, &mut f).unwrap());
    // EOF exactly at a frame boundary, read a byte at a time.
    let reader = Chunked {
        data: &bytes[..len],
        chunk: 1,
    };
    let mut s = RawStream::new(reader, RawFormat::Rgb24, w, h, "r").unwrap();
    assert!(next(&mut s, &mut f).unwrap());
    assert!(!next(&mut s, &mut f).unwrap());
    assert!(s.describe().contains("3x2"));
}

#[test]
fn raw_yuv420_converts_and_checks_sizes() {
    // 4x2 I420: 8 Y bytes, 2 U, 2 V.
    let frame_bytes = [16u8, 235, 126, 126, 81, 81, 145, 41, 128, 90, 128, 240];
    let mut bytes = frame_bytes.repeat(2);
    bytes.extend(&frame_bytes[..3]);
    let mut s =
        RawStream::new(Cursor::new(bytes), RawFormat::Yuv420, 4, 2, "stdin:yuv420").unwrap();
    let mut f = Frame::new();
    let mut want = vec![0u8; 4 * 2 * 3];
    yuv::i420_to_rgb(&frame_bytes, 4, 2, &mut want).unwrap();
    assert_eq!(&want[..6], &[0, 0, 0, 255, 255, 255]);
    for _ in 0..2 {
        assert!(next(&mut s, &mut f).unwrap());
        assert_eq!(f.rgb.as_raw(), &want);
        assert_eq!(f.rgb.dimensions(), (4, 2));
    }
    assert_eq!(
        next(&mut s, &mut f).unwrap_err().kind(),
        SourceErrorKind::BadFrame
    );
    assert!(!next(&mut s, &mut f).unwrap());
    let e = RawStream::new(Cursor::new(vec![]), RawFormat::Yuv420, 5, 2, "y")
        .err()
        .unwrap();
    assert_eq!(e.kind(), SourceErrorKind::Config);
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("clip_edge_source_{}_{name}", std::process::id()));
    std::fs::remove_dir_all(&d).ok();
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn dir_is_recursive_sorted_and_skips_bad_files() {
    let d = tmpdir("dir");
    for sub in ["a", "b", "c/sub"] {
        std::fs::create_dir_all(d.join(sub)).unwrap();
    }
    let files = ["b/2.png", "a.png", "a/1.png", "c/sub/x.JPG"];
    for (i, f) in files.iter().enumerate() {
        let img = picture(5 + i as u32, 4, i as u8);
        let format = if f.ends_with("JPG") {
            image::ImageFormat::Jpeg
        } else {
            image::ImageFormat::Png
        };
        img.save_with_format(d.join(f), format).unwrap();
    }
    std::fs::write(d.join("bad.png"), b"not a png").unwrap();
    std::fs::write(d.join("notes.txt"), b"ignored").unwrap();
    let spec: SourceSpec = format!("dir:{}", d.display()).parse().unwrap();
    let mut s = open(&spec).unwrap();
    assert!(s.describe().contains("5 image files"), "{}", s.describe());
    let mut f = Frame::new();
    let mut names = Vec::new();
    let mut bad = Vec::new();
    loop {
        match next(s.as_mut(), &mut f) {
            Ok(true) => names.push(f.name.clone()),
            Ok(false) => break,
            Err(e) => {
                assert_eq!(e.kind(), SourceErrorKind::BadFrame, "{e}");
                bad.push(e.to_string());
            }
        }
    }
    let rel = |p: &str| d.join(p).to_string_lossy().into_owned();
    assert_eq!(
        names,
        ["a/1.png", "a.png", "b/2.png", "c/sub/x.JPG"].map(rel)
    );
    assert_eq!(bad.len(), 1);
    assert!(bad[0].contains("bad.png"), "{}", bad[0]);
    // The last frame is the JPEG, same pixels as load_rgb8 gives.
    assert_eq!(
        f.rgb,
        clip_edge_core::image_io::load_rgb8(&d.join("c/sub/x.JPG")).unwrap()
    );

    // A single file; an explicit list keeps its order.
    let mut one = DirSource::open_dir(&d.join("a.png")).unwrap();
    assert!(one.next_frame(&mut f).unwrap());
    assert!(!one.next_frame(&mut f).unwrap());
    let list = vec![d.join("b/2.png"), d.join("a.png")];
    let listed = DirSource::from_files(list.clone()).unwrap();
    assert_eq!(listed.files(), &list[..]);
    let e = DirSource::from_files(vec![d.join("nope.png")]).unwrap_err();
    assert_eq!(e.kind(), SourceErrorKind::Config);
    assert!(e.to_string().contains("nope.png"));

    // No images, or no such folder: Config errors naming it.
    let empty = d.join("c/empty");
    std::fs::create_dir_all(&empty).unwrap();
    for path in [empty.clone(), d.join("missing")] {
        let e = DirSource::open_dir(&path).unwrap_err();
        assert_eq!(e.kind(), SourceErrorKind::Config, "{e}");
        assert!(e.to_string().contains(&*path.to_string_lossy()), "{e}");
    }
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn open_synthetic_through_the_spec() {
    let mut s = open(&"synthetic:16x8:2".parse().unwrap()).unwrap();
    let mut f = Frame::new();
    assert!(s.next_frame(&mut f).unwrap());
    assert_eq!(f.rgb.dimensions(), (16, 8));
    assert!(s.next_frame(&mut f).unwrap());
    assert_eq!(f.name, "synthetic#1");
    assert!(!s.next_frame(&mut f).unwrap());
    let e = s.reopen().unwrap_err();
    assert_eq!(e.kind(), SourceErrorKind::Config);
}

#[test]
fn reshape_reuses_the_allocation() {
    let mut f = Frame::new();
    assert_eq!(f.reshape(4, 2).len(), 24);
    let ptr = f.rgb.as_ptr();
    assert_eq!(f.reshape(2, 2).len(), 12);
    assert_eq!(f.rgb.dimensions(), (2, 2));
    assert_eq!(f.reshape(3, 2).len(), 18);
    assert_eq!(
        f.rgb.as_ptr(),
        ptr,
        "shrinking and regrowing within capacity"
    );
    f.set_name_indexed("stdin:mjpeg", 12);
    assert_eq!(f.name, "stdin:mjpeg#12");
}
