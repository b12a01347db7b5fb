//! Calibration: run the fp32 model on sample images and record, for static int8,
//! the distribution of |x| of every tensor that gets quantized, turned into one
//! scale per tensor (`minmax`, `percentile` or `entropy`); and, for outlier
//! smoothing, the largest |x| of each channel of a tensor.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use clip_edge_bundle::PreprocessConfig;
use clip_edge_core::image_io::load_rgb8;
use clip_edge_core::preprocess::Preprocessor;
use tract_onnx::pb::{ModelProto, ValueInfoProto};
use tract_onnx::prelude::*;

use crate::onnx_graph::model_bytes;

/// Bins of each |x| histogram.
const BINS: usize = 2048;
/// Percentile of |x| kept by the `percentile` method.
pub const PERCENTILE: f64 = 99.99;

/// File extensions treated as images when listing a folder.
const IMAGE_EXTENSIONS: &[&str] = &[
    "png", "jpg", "jpeg", "bmp", "tif", "tiff", "webp", "pnm", "ppm", "pgm",
];

/// How a tensor's scale is chosen from its |x| distribution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CalibrationMethod {
    /// The largest |x| seen: nothing clips.
    Minmax,
    /// The 99.99th percentile of |x|: rare outliers clip.
    Percentile,
    /// The threshold minimising the KL divergence between the fp32 and the int8
    /// histograms (TensorRT's method).
    Entropy,
}

/// What can go wrong calibrating.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CalibrationError {
    /// The folder cannot be listed.
    #[error("{path}: {source}")]
    Io {
        /// The folder.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// No usable image.
    #[error("{0}: no readable images (looked for {exts})", exts = IMAGE_EXTENSIONS.join(", "))]
    NoImages(PathBuf),
    /// The preprocessing configuration is invalid.
    #[error(transparent)]
    Preprocess(#[from] clip_edge_core::preprocess::PreprocessError),
    /// The model has no graph to instrument.
    #[error("the model has no graph")]
    NoGraph,
    /// tract failed on the instrumented model.
    #[error("running the fp32 model for calibration failed")]
    Model(#[source] TractError),
}

/// Image files under `dir`, recursively, in sorted order.
pub fn list_images(dir: &Path) -> Result<Vec<PathBuf>, CalibrationError> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).map_err(|source| CalibrationError::Io {
            path: d.clone(),
            source,
        })?;
        for entry in entries.flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if p
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
            {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Preprocessed model inputs (NCHW f32), each with the image it came from.
pub type Inputs = Vec<(PathBuf, Vec<f32>)>;
/// Files skipped, each with the reason.
pub type SkippedFiles = Vec<(PathBuf, String)>;

/// Loads and preprocesses images; unreadable ones are logged and skipped.
/// Returns the inputs (NCHW f32 each) and the skipped files with the reason.
pub fn load_inputs(
    images: &[PathBuf],
    config: &PreprocessConfig,
) -> Result<(Inputs, SkippedFiles), CalibrationError> {
    let mut pre = Preprocessor::new(*config)?;
    let mut ok = Vec::new();
    let mut skipped = Vec::new();
    for path in images {
        match load_rgb8(path) {
            Ok(rgb) => match pre.preprocess(&rgb) {
                Ok(x) => ok.push((path.clone(), x)),
                Err(e) => skipped.push((path.clone(), e.to_string())),
            },
            Err(e) => {
                log::warn!("skipping {}: {e}", path.display());
                skipped.push((path.clone(), e.to_string()));
            }
        }
    }
    Ok((ok, skipped))
}

/// A histogram of |x| over `[0, range)`, whose range doubles as larger values come.
#[derive(Debug, Clone)]
pub struct Histogram {
    range: f32,
    counts: Vec<u64>,
    max: f32,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            range: 0.0,
            counts: vec![0; BINS],
            max: 0.0,
        }
    }
}

impl Histogram {
    /// Adds |x| of every value.
    pub fn add(&mut self, values: &[f32]) {
        let batch_max = values.iter().fold(
            0.0f32,
            |m, x| if x.is_finite() { m.max(x.abs()) } else { m },
        );
        self.max = self.max.max(batch_max);
        if self.range == 0.0 {
            self.range = if batch_max > 0.0 {
                batch_max * 1.0001
            } else {
                1e-6
            };
        }
        while batch_max >= self.range {
            // Merge pairs of bins: the range doubles.
            let mut merged = vec![0u64; BINS];
            for (i, c) in self.counts.iter().enumerate() {
                merged[i / 2] += c;
            }
            self.counts = merged;
            self.range *= 2.0;
        }
        let per_bin = BINS as f32 / self.range;
        for x in values.iter().filter(|x| x.is_finite()) {
            let bin = ((x.abs() * per_bin) as usize).min(BINS - 1);
            self.counts[bin] += 1;
        }
    }

    /// Largest |x| seen.
    pub fn max(&self) -> f32 {
        self.max
    }

    fn bin_width(&self) -> f32 {
        self.range / BINS as f32
    }

    /// The |x| below which `p` percent of values lie.
    pub fn percentile(&self, p: f64) -> f32 {
        let total: u64 = self.counts.iter().sum();
        if total == 0 {
            return 0.0;
        }
        let target = (total as f64 * p / 100.0).ceil() as u64;
        let mut acc = 0;
        for (i, c) in self.counts.iter().enumerate() {
            acc += c;
            if acc >= target {
                return ((i + 1) as f32 * self.bin_width()).min(self.max);
            }
        }
        self.max
    }

    /// The clipping threshold that minimises KL(P‖Q) between the histogram clipped
    /// at the threshold and its 128-level quantization.
    pub fn entropy_threshold(&self) -> f32 {
        const LEVELS: usize = 128;
        let last_used = self.counts.iter().rposition(|&c| c > 0).unwrap_or(0) + 1;
        if last_used <= LEVELS {
            return self.max;
        }
        let mut best = (f64::INFINITY, last_used);
        let step = (last_used / 256).max(1);
        let mut i = LEVELS;
        while i <= last_used {
            // P: counts up to i, outliers folded into the last bin.
            let mut p: Vec<f64> = self.counts[..i].iter().map(|&c| c as f64).collect();
            p[i - 1] += self.counts[i..].iter().map(|&c| c as f64).sum::<f64>();
            // Q: the first i bins merged into LEVELS levels, spread back over the
            // non-empty bins of each level.
            let mut q = vec![0.0f64; i];
            for level in 0..LEVELS {
                let start = level * i / LEVELS;
                let end = ((level + 1) * i / LEVELS).max(start + 1);
                let sum: f64 = self.counts[start..end].iter().map(|&c| c as f64).sum();
                let nonzero = self.counts[start..end].iter().filter(|&&c| c > 0).count();
                if nonzero > 0 {
                    for (qj, &c) in q[start..end].iter_mut().zip(&self.counts[start..end]) {
                        if c > 0 {
                            *qj = sum / nonzero as f64;
                        }
                    }
                }
            }
            let (ps, qs): (f64, f64) = (p.iter().sum(), q.iter().sum());
            let mut kl = 0.0;
            for (&pj, &qj) in p.iter().zip(&q) {
                if pj > 0.0 {
                    let pn = pj / ps;
                    let qn = if qj > 0.0 { qj / qs } else { 1e-12 };
                    kl += pn * (pn / qn).ln();
                }
            }
            if kl < best.0 {
                best = (kl, i);
            }
            i += step;
        }
        (best.1 as f32 * self.bin_width()).min(self.max)
    }

    /// The int8 scale (threshold / 127) for a method.
    pub fn scale(&self, method: CalibrationMethod) -> f32 {
        let threshold = match method {
            CalibrationMethod::Minmax => self.max,
            CalibrationMethod::Percentile => self.percentile(PERCENTILE),
            CalibrationMethod::Entropy => self.entropy_threshold(),
        };
        (threshold / 127.0).max(1e-12)
    }
}

/// Runs the fp32 `model` on each input and returns the |x| histogram of each tensor
/// in `tensors`. `progress` is called after each image.
pub fn collect_histograms(
    model: &ModelProto,
    tensors: &[String],
    inputs: &[(PathBuf, Vec<f32>)],
    image_size: usize,
    progress: impl FnMut(usize),
) -> Result<HashMap<String, Histogram>, CalibrationError> {
    let mut hists: Vec<Histogram> = vec![Histogram::default(); tensors.len()];
    observe(
        model,
        tensors,
        inputs,
        image_size,
        progress,
        |i, values, _| hists[i].add(values),
    )?;
    Ok(tensors.iter().cloned().zip(hists).collect())
}

/// Static int8 scales of `tensors`: [`collect_histograms`] turned into one scale
/// each by `method`.
pub fn static_scales(
    model: &ModelProto,
    tensors: &[String],
    inputs: &[(PathBuf, Vec<f32>)],
    image_size: usize,
    method: CalibrationMethod,
    progress: impl FnMut(usize),
) -> Result<HashMap<String, f32>, CalibrationError> {
    let hists = collect_histograms(model, tensors, inputs, image_size, progress)?;
    Ok(hists
        .iter()
        .map(|(t, h)| (t.clone(), h.scale(method)))
        .collect())
}

/// Runs the fp32 `model` on each input and returns, for each tensor in `tensors`,
/// the largest |x| of each channel (its last axis) over all inputs and positions.
/// `progress` is called after each image.
pub fn collect_channel_ranges(
    model: &ModelProto,
    tensors: &[String],
    inputs: &[(PathBuf, Vec<f32>)],
    image_size: usize,
    progress: impl FnMut(usize),
) -> Result<HashMap<String, Vec<f32>>, CalibrationError> {
    let mut ranges: Vec<Vec<f32>> = vec![Vec::new(); tensors.len()];
    observe(
        model,
        tensors,
        inputs,
        image_size,
        progress,
        |i, values, channels| {
            let r = &mut ranges[i];
            r.resize(channels, 0.0);
            for row in values.chunks_exact(channels.max(1)) {
                for (m, v) in r.iter_mut().zip(row) {
                    *m = m.max(v.abs());
                }
            }
        },
    )?;
    Ok(tensors.iter().cloned().zip(ranges).collect())
}

/// Runs the fp32 `model` on each input and calls `visit(i, values, last_dim)` with
/// the values of `tensors[i]` (the model input itself included).
fn observe(
    model: &ModelProto,
    tensors: &[String],
    inputs: &[(PathBuf, Vec<f32>)],
    image_size: usize,
    mut progress: impl FnMut(usize),
    mut visit: impl FnMut(usize, &[f32], usize),
) -> Result<(), CalibrationError> {
    let err = CalibrationError::Model;
    let mut instrumented = model.clone();
    let graph = instrumented
        .graph
        .as_mut()
        .ok_or(CalibrationError::NoGraph)?;
    let input_name = graph
        .input
        .iter()
        .find(|i| !graph.initializer.iter().any(|t| t.name == i.name))
        .map(|i| i.name.clone())
        .unwrap_or_default();
    // Tensors that are the model input itself are measured on the input directly;
    // the others become extra outputs, in order.
    let mut probed = Vec::new();
    for (i, t) in tensors.iter().enumerate() {
        if *t != input_name {
            probed.push(i);
            graph.output.push(ValueInfoProto {
                name: t.clone(),
                ..Default::default()
            });
        }
    }
    let bytes = model_bytes(&instrumented);
    let mut tract_model = tract_onnx::onnx()
        .model_for_read(&mut bytes.as_slice())
        .map_err(err)?;
    let shape = [1, 3, image_size, image_size];
    tract_model
        .set_input_fact(0, f32::fact(shape).into())
        .map_err(err)?;
    let plan = tract_model
        .into_optimized()
        .map_err(err)?
        .into_runnable()
        .map_err(err)?;
    for (n, (_, x)) in inputs.iter().enumerate() {
        let tensor = Tensor::from_shape(&shape, x).map_err(err)?;
        let outputs = plan.run(tvec!(tensor.into_tvalue())).map_err(err)?;
        for (i, t) in tensors.iter().enumerate() {
            if *t == input_name {
                visit(i, x, image_size);
            }
        }
        for (&i, out) in probed.iter().zip(outputs.iter().skip(1)) {
            let out = out.cast_to::<f32>().map_err(err)?;
            let view = out.try_as_plain_ram().map_err(err)?;
            let channels = out.shape().last().copied().unwrap_or(1);
            visit(i, view.as_slice::<f32>().map_err(err)?, channels);
        }
        progress(n + 1);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_grows_and_keeps_percentiles() {
        let mut h = Histogram::default();
        let small: Vec<f32> = (0..100_000).map(|i| i as f32 / 100_000.0).collect();
        h.add(&small);
        h.add(&[-50.0]);
        assert_eq!(h.max(), 50.0);
        assert!(h.percentile(50.0) < 1.0, "{}", h.percentile(50.0));
        assert_eq!(h.scale(CalibrationMethod::Minmax), 50.0 / 127.0);
        // The single outlier is clipped by percentile and entropy.
        assert!(h.scale(CalibrationMethod::Percentile) < 1.0 / 127.0 * 1.1);
        assert!(h.entropy_threshold() < 50.0);
    }
}
