//! `clip-edge bench`: load time, time to first result, per-stage latency
//! percentiles, throughput, peak memory and the tract kernels in the plan.
//!
//! Timings are wall-clock on whatever else the machine is doing: compare figures
//! from one run (e.g. fp32 and int8 bundles back to back), not across machines.

use std::path::Path;
use std::time::Instant;

use crate::alloc_count::{is_counting, snapshot};
use clip_edge_bundle::TrustedKeys;
use clip_edge_core::classifier::{Classifier, ClassifyError};

/// p50/p90/p99 of one stage, in milliseconds.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
}

impl Percentiles {
    /// Percentiles of `samples` (milliseconds); zeros when empty.
    pub fn of(samples: &mut [f64]) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        samples.sort_by(f64::total_cmp);
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
        Percentiles {
            p50: at(0.5),
            p90: at(0.9),
            p99: at(0.99),
        }
    }
}

/// Everything `bench` measures.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchReport {
    /// Bundle directory.
    pub bundle: String,
    /// fp32 or int8.
    pub precision: String,
    /// Frames timed (after the first).
    pub frames: usize,
    /// Loading and verifying the bundle and building the plan.
    pub load_ms: f64,
    /// Start of loading to the first frame's top-k.
    pub first_result_ms: f64,
    /// Preprocessing (resize, crop, normalise).
    pub preprocess_ms: Percentiles,
    /// The image encoder.
    pub encode_ms: Percentiles,
    /// Cosine, softmax, top-k.
    pub score_ms: Percentiles,
    /// Frames per second over the timed frames.
    pub fps: f64,
    /// Peak resident memory of the process (VmHWM), MB.
    pub peak_rss_mb: Option<f64>,
    /// Threads tract uses.
    pub threads: usize,
    /// Matmul kernels in the optimised plan.
    pub kernels: Vec<String>,
    /// Heap allocations per frame outside tract (preprocess, score, top-k); `None`
    /// when the counting allocator is not installed.
    pub allocs_per_frame: Option<f64>,
    /// Heap allocations per frame inside the encoder run (tract).
    pub tract_allocs_per_frame: Option<f64>,
    /// Bytes allocated per frame inside the encoder run (tract).
    pub tract_alloc_bytes_per_frame: Option<f64>,
}

/// Benchmarks `bundle` on `frame`, `frames` times after a first (cold) frame;
/// `threads` is what [`clip_edge_core::encoder::set_threads`] was given, for the report;
/// with `trusted`, the bundle's signature is checked as part of loading.
pub fn run(
    bundle: &Path,
    trusted: Option<&TrustedKeys>,
    frame: &image::RgbImage,
    frames: usize,
    threads: usize,
) -> Result<BenchReport, ClassifyError> {
    let start = Instant::now();
    let mut classifier = Classifier::load_with(bundle, trusted)?;
    let load_ms = ms(start);
    classifier.classify(frame, 1)?;
    let first_result_ms = ms(start);

    let (mut pre, mut enc, mut score) = (
        Vec::with_capacity(frames),
        Vec::with_capacity(frames),
        Vec::with_capacity(frames),
    );
    let (mut ours, mut tract, mut tract_bytes) = (0u64, 0u64, 0u64);
    let timed = Instant::now();
    for _ in 0..frames {
        let a0 = snapshot();
        let t = Instant::now();
        classifier.preprocess(frame)?;
        pre.push(ms(t));
        let a1 = snapshot();
        let t = Instant::now();
        classifier.encode()?;
        enc.push(ms(t));
        let a2 = snapshot();
        let t = Instant::now();
        classifier.score(5)?;
        score.push(ms(t));
        let a3 = snapshot();
        ours += (a1.0 - a0.0) + (a3.0 - a2.0);
        tract += a2.0 - a1.0;
        tract_bytes += a2.1 - a1.1;
    }
    let total_s = timed.elapsed().as_secs_f64();
    let counting = is_counting();
    let per_frame = |n: u64| n as f64 / frames.max(1) as f64;
    Ok(BenchReport {
        bundle: bundle.display().to_string(),
        precision: format!("{:?}", classifier.bundle().manifest.model.precision).to_lowercase(),
        frames,
        load_ms,
        first_result_ms,
        preprocess_ms: Percentiles::of(&mut pre),
        encode_ms: Percentiles::of(&mut enc),
        score_ms: Percentiles::of(&mut score),
        fps: if total_s > 0.0 {
            frames as f64 / total_s
        } else {
            0.0
        },
        peak_rss_mb: peak_rss_mb(),
        threads,
        kernels: classifier.encoder().kernels().to_vec(),
        allocs_per_frame: counting.then(|| per_frame(ours)),
        tract_allocs_per_frame: counting.then(|| per_frame(tract)),
        tract_alloc_bytes_per_frame: counting.then(|| per_frame(tract_bytes)),
    })
}

/// A deterministic test frame (640×480 gradients and bars), for benchmarks without
/// an image.
pub fn synthetic_frame() -> image::RgbImage {
    image::RgbImage::from_fn(640, 480, |x, y| {
        let bar = ((x / 80) % 2) as u8 * 60;
        image::Rgb([
            (x % 256) as u8,
            (y % 256) as u8,
            bar.wrapping_add((x + y) as u8 / 2),
        ])
    })
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}

/// Peak resident set size from `/proc/self/status` (Linux), MB.
pub fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Time per operator over `frames` runs of the encoder, most expensive first:
/// `(operator, ms per frame, calls per frame)`.
pub fn profile(
    bundle: &Path,
    trusted: Option<&TrustedKeys>,
    frame: &image::RgbImage,
    frames: usize,
) -> Result<Vec<(String, f64, usize)>, ClassifyError> {
    let mut classifier = Classifier::load_with(bundle, trusted)?;
    let input = classifier.preprocess(frame)?.to_vec();
    let mut acc = std::collections::BTreeMap::new();
    let frames = frames.max(1);
    for _ in 0..frames {
        classifier.encoder_mut().profile(&input, &mut acc)?;
    }
    let mut rows: Vec<(String, f64, usize)> = acc
        .into_iter()
        .map(|(op, (s, n))| (op, s * 1e3 / frames as f64, n / frames))
        .collect();
    rows.sort_by(|a, b| b.1.total_cmp(&a.1));
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_ranks() {
        let mut v: Vec<f64> = (1..=100).map(f64::from).collect();
        v.reverse();
        let p = Percentiles::of(&mut v);
        assert_eq!((p.p50, p.p90, p.p99), (51.0, 90.0, 99.0));
        assert_eq!(Percentiles::of(&mut []).p50, 0.0);
    }
}
