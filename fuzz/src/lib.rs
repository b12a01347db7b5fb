//! Fuzz targets: every parser that reads input nobody checked (a bundle copied over the
//! network, a camera or pipe sending garbage, a hand-edited profile, a labels file), as
//! `clip-edge` and `clip-quantize` call it. Each target takes arbitrary bytes and must
//! return without panicking, hanging or allocating without bound; where a parse
//! succeeds, some also check a property (what is written reads back the same).
//!
//! Engines: `tests/smoke.rs` runs each target over its seed corpus (`corpus/TARGET/`)
//! and deterministic mutations of it in `cargo test` (CI); the long coverage-guided runs
//! are a recipe outside CI (fuzz/README.md).

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::path::{Path, PathBuf};

use clip_edge_bundle::{LabelTable, Manifest, TrustedKey, TrustedKeys};
use clip_edge_device::source::{FrameSource, MjpegStream, RawFormat, RawStream};

/// No input may make a target ask for more than this in one allocation.
pub const ALLOC_CAP: usize = 256 << 20;

/// The global allocator of every fuzz engine (`#[global_allocator]`): the system's,
/// refusing any single request over [`ALLOC_CAP`], which makes Rust abort with
/// "memory allocation of N bytes failed", a crash to the engine.
pub struct CappedAllocator;

// SAFETY: forwards to the system allocator, refusing (null) requests over the cap.
unsafe impl GlobalAlloc for CappedAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() > ALLOC_CAP {
            return std::ptr::null_mut();
        }
        // SAFETY: the caller's layout, passed on.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: allocated by System with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > ALLOC_CAP {
            return std::ptr::null_mut();
        }
        // SAFETY: as in alloc.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// A fuzz target: arbitrary bytes in, a panic on a bug.
pub type Target = fn(&[u8]);

/// Every target, by name (the name of its corpus folder).
pub const TARGETS: &[(&str, Target)] = &[
    ("manifest", manifest),
    ("labels", labels),
    ("nnef", nnef),
    ("mjpeg", mjpeg),
    ("raw_frames", raw_frames),
    ("board", board),
    ("image", image),
    ("tokenizer", tokenizer),
    ("signature", signature),
];

/// A scratch file for targets whose parser reads a path, one per thread.
fn scratch_file(data: &[u8], ext: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!(
        "clip-edge-fuzz-{}-{:?}.{ext}",
        std::process::id(),
        std::thread::current().id()
    ));
    let mut file = std::fs::File::create(&path).expect("scratch file");
    file.write_all(data).expect("scratch write");
    path
}

/// `bundle.toml`: parsed and validated as `Bundle::load` does; a manifest that parses
/// writes and reads back the same.
pub fn manifest(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("bundle.toml");
    if let Ok(m) = Manifest::from_toml(text, path) {
        let again = Manifest::from_toml(&m.to_toml(), path).expect("a written manifest reads back");
        assert_eq!(again, m);
    }
}

/// `labels.safetensors`: a table that loads saves and loads back the same.
pub fn labels(data: &[u8]) {
    if let Ok(table) = LabelTable::from_bytes(data) {
        let bytes = table.to_bytes().expect("a loaded table writes");
        let again = LabelTable::from_bytes(&bytes).expect("a written table reads back");
        assert_eq!(again.labels(), table.labels());
        assert_eq!(again.embeddings(), table.embeddings());
    }
}

/// A bundle's model file through clip-edge's loader into tract: NNEF (a tar) or,
/// told apart by content, ONNX.
pub fn nnef(data: &[u8]) {
    let path = scratch_file(data, "nnef.tar");
    let _ = clip_edge_core::ImageEncoder::load(&path, 224);
}

/// An MJPEG stream (stdin, V4L2): the splitter and the decoder, every frame.
pub fn mjpeg(data: &[u8]) {
    let mut stream = MjpegStream::new(data, "fuzz:mjpeg");
    let mut frame = clip_edge_device::source::Frame::new();
    for _ in 0..64 {
        match stream.next_frame(&mut frame) {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) if e.kind() == clip_edge_device::source::SourceErrorKind::BadFrame => {}
            Err(_) => return,
        }
    }
}

/// Raw frames (stdin RGB24 and I420, V4L2 YUYV) of any size: `[format, width, height]`
/// then the bytes, which may be too few or too many.
pub fn raw_frames(data: &[u8]) {
    let [format, w, h, rest @ ..] = data else {
        return;
    };
    let (w, h) = (u32::from(*w), u32::from(*h));
    let mut frame = clip_edge_device::source::Frame::new();
    match format % 3 {
        2 => {
            let (wu, hu) = (w as usize, h as usize);
            let mut rgb = vec![0u8; wu * hu * 3];
            let _ = clip_edge_device::source::yuv::yuyv_to_rgb(rest, wu * 2, wu, hu, &mut rgb);
        }
        f => {
            let format = if f == 0 {
                RawFormat::Rgb24
            } else {
                RawFormat::Yuv420
            };
            if let Ok(mut stream) = RawStream::new(rest, format, w, h, "fuzz:raw") {
                for _ in 0..16 {
                    if !matches!(stream.next_frame(&mut frame), Ok(true)) {
                        break;
                    }
                }
            }
        }
    }
}

/// A board profile, as `--board FILE` reads it.
pub fn board(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = clip_edge_device::board::BoardProfile::parse(text, "fuzz.toml");
    }
}

/// An image file (PNG, JPEG, BMP, TIFF, PNM, WebP; 16-bit, palette) through
/// `load_rgb8`, as `classify` and `dir:` sources read it.
pub fn image(data: &[u8]) {
    let path = scratch_file(data, "img");
    if let Ok(rgb) = clip_edge_core::image_io::load_rgb8(&path) {
        assert_eq!(
            rgb.as_raw().len(),
            rgb.width() as usize * rgb.height() as usize * 3
        );
    }
}

/// Label text through the CLIP tokenizer: always 77 ids, start and end of text.
pub fn tokenizer(data: &[u8]) {
    thread_local! {
        static TOKENIZER: clip_quantize::tokenizer::ClipTokenizer =
            clip_quantize::tokenizer::ClipTokenizer::new().expect("built-in tokenizer");
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    TOKENIZER.with(|t| {
        let ids = t.tokenize(text);
        assert_eq!(ids[0], 49406, "start of text");
        assert!(ids.contains(&49407), "end of text");
    });
}

/// A public key (PEM) and a signature (after a NUL), checked against a fixed manifest.
pub fn signature(data: &[u8]) {
    let (pem, sig) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let Ok(pem) = std::str::from_utf8(pem) else {
        return;
    };
    if let Ok(key) = TrustedKey::from_pem(pem, Path::new("fuzz.pub")) {
        let keys = TrustedKeys::new(vec![key]).expect("one key");
        let _ = keys.verify(b"format_version = 1\n", Path::new("m"), sig, Path::new("s"));
    }
}
