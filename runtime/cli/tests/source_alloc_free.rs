//! Frame sources allocate nothing per frame once warm: raw RGB24/I420 and the
//! synthetic pattern not at all; MJPEG only what the JPEG decoder itself allocates
//! (the splitter and read buffer add nothing).
//!
//! This test binary installs the counting allocator and counts the allocations of
//! the calling thread only: the harness's own thread allocated in the middle of a
//! count once, on a loaded machine (4 extra in one frame of 40).

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;
use std::io::Cursor;

use clip_edge::alloc_count::CountingAllocator;
use clip_edge_device::source::{
    decode_jpeg_into, Frame, FrameSource, MjpegStream, RawFormat, RawStream, Synthetic,
};

thread_local! {
    /// Allocations (alloc, alloc_zeroed, realloc) made by this thread.
    static THREAD_ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn note_allocation() {
    let _ = THREAD_ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
}

/// The crate's counting allocator, plus a count per thread.
struct PerThread;

unsafe impl GlobalAlloc for PerThread {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        unsafe { CountingAllocator.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        unsafe { CountingAllocator.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation();
        unsafe { CountingAllocator.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { CountingAllocator.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: PerThread = PerThread;

/// Allocations made by `f` on this thread.
fn count<T>(f: impl FnOnce() -> T) -> (u64, T) {
    let before = THREAD_ALLOCATIONS.with(Cell::get);
    let out = f();
    (THREAD_ALLOCATIONS.with(Cell::get) - before, out)
}

/// Reads `frames` frames after `warm` warm-up ones; returns allocations per frame.
fn per_frame(src: &mut dyn FrameSource, warm: usize, frames: usize) -> Vec<u64> {
    let mut frame = Frame::new();
    for _ in 0..warm {
        assert!(src.next_frame(&mut frame).unwrap());
    }
    (0..frames)
        .map(|_| {
            let (n, ok) = count(|| src.next_frame(&mut frame).unwrap());
            assert!(ok);
            n
        })
        .collect()
}

#[test]
fn sources_allocate_nothing_per_frame_once_warm() {
    raw_and_synthetic_sources_allocate_nothing_per_frame();
    mjpeg_allocates_only_what_the_decoder_does();
}

fn raw_and_synthetic_sources_allocate_nothing_per_frame() {
    let (w, h) = (64u32, 48u32);
    for format in [RawFormat::Rgb24, RawFormat::Yuv420] {
        let bytes: Vec<u8> = (0..format.frame_len(w, h) * 12)
            .map(|i| (i * 7) as u8)
            .collect();
        let mut src = RawStream::new(Cursor::new(bytes), format, w, h, "stdin:raw").unwrap();
        let counts = per_frame(&mut src, 1, 10);
        assert!(counts.iter().all(|&n| n == 0), "{format:?}: {counts:?}");
    }
    let mut syn = Synthetic::new(w, h, None).unwrap();
    let counts = per_frame(&mut syn, 1, 20);
    assert!(counts.iter().all(|&n| n == 0), "synthetic: {counts:?}");
}

fn mjpeg_allocates_only_what_the_decoder_does() {
    let jpegs: Vec<Vec<u8>> = (0..4u32)
        .map(|s| {
            let img = image::RgbImage::from_fn(160, 120, |x, y| {
                image::Rgb([(x * 3 + s * 40) as u8, (y * 2) as u8, ((x ^ y) + s) as u8])
            });
            let mut out = Vec::new();
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 85)
                .encode(img.as_raw(), 160, 120, image::ExtendedColorType::Rgb8)
                .unwrap();
            out
        })
        .collect();
    // The decoder's own allocations for each JPEG, into a warm frame.
    let mut frame = Frame::new();
    decode_jpeg_into(&jpegs[0], &mut frame).unwrap();
    let decoder: Vec<u64> = jpegs
        .iter()
        .map(|j| count(|| decode_jpeg_into(j, &mut frame).unwrap()).0)
        .collect();
    // 40 frames through the stream.
    let stream: Vec<u8> = (0..40).flat_map(|i| jpegs[i % 4].clone()).collect();
    let mut src = MjpegStream::new(Cursor::new(stream), "stdin:mjpeg");
    let counts = per_frame(&mut src, 1, 39);
    for (i, &n) in counts.iter().enumerate() {
        let want = decoder[(i + 1) % 4];
        assert_eq!(
            n,
            want,
            "frame {}: stream {n} vs decoder alone {want}",
            i + 1
        );
    }
    eprintln!(
        "zune-jpeg allocations per 160x120 frame: {:?} (the stream adds none)",
        decoder
    );
}
