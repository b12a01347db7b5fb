//! The frame path outside tract allocates nothing after warm-up, and tract's own
//! per-frame allocations do not grow with the number of frames.
//!
//! This test binary installs the counting allocator; tests run one at a time
//! through a lock so their counts do not mix.

use std::path::Path;
use std::sync::Mutex;

use clip_edge::alloc_count::{snapshot, CountingAllocator};
use clip_edge_core::Classifier;

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

static SERIAL: Mutex<()> = Mutex::new(());

fn frame(width: u32, height: u32, seed: u32) -> image::RgbImage {
    image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x * 3 + seed) as u8, (y * 5) as u8, ((x ^ y) + seed) as u8])
    })
}

fn classifier(bundle: &str) -> Classifier {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../models/shapes")
        .join(bundle);
    Classifier::load(&dir).expect("shapes bundle loads")
}

/// Allocations made by `f`.
fn count(mut f: impl FnMut()) -> u64 {
    let before = snapshot().0;
    f();
    snapshot().0 - before
}

#[test]
fn preprocessing_and_scoring_allocate_nothing_per_frame() {
    let _guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for bundle in ["bundle", "bundle-int8"] {
        let mut c = classifier(bundle);
        // Frames of one camera size, with changing content.
        let frames: Vec<_> = (0..4).map(|i| frame(320, 240, i * 40)).collect();
        // Warm-up: the first frame of a size builds the resize tables.
        c.classify(&frames[0], 5).unwrap();
        for n in [3usize, 30] {
            let mut ours = 0;
            for i in 0..n {
                let f = &frames[i % frames.len()];
                ours += count(|| {
                    c.preprocess(f).unwrap();
                });
                c.encode().unwrap();
                ours += count(|| {
                    let top = c.score(5).unwrap();
                    assert_eq!(top.len(), 5);
                });
            }
            assert_eq!(
                ours, 0,
                "{bundle}: {ours} allocations in preprocess+score over {n} frames"
            );
        }
    }
}

#[test]
fn tract_allocations_per_frame_do_not_grow() {
    let _guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for bundle in ["bundle", "bundle-int8"] {
        let mut c = classifier(bundle);
        let f = frame(320, 240, 7);
        c.classify(&f, 5).unwrap();
        c.preprocess(&f).unwrap();
        let mut per_frame = Vec::new();
        for _ in 0..12 {
            per_frame.push(count(|| {
                c.encode().unwrap();
            }));
        }
        eprintln!("{bundle}: tract allocations per frame: {per_frame:?}");
        let first = per_frame[1];
        assert!(first > 0, "the counting allocator is not counting");
        assert!(
            per_frame[1..].iter().all(|&n| n == first),
            "{bundle}: tract's allocations per frame change from frame to frame: {per_frame:?}"
        );
    }
}
