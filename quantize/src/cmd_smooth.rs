//! The outlier-smoothing step of `clip-quantize quantize`: channel ranges, the
//! migration strength, the rewrite, and its fp32 check.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use clip_edge_core::encoder::ImageEncoder;
use clip_quantize::calibrate::{collect_channel_ranges, static_scales, CalibrationMethod, Inputs};
use clip_quantize::onnx_graph::model_bytes;
use clip_quantize::quant::smooth::{
    find_groups, smooth, with_outliers, SmoothGroup, SmoothedLayer, DEFAULT_ALPHA,
};
use clip_quantize::quant::{find_candidates, quantize, ActivationMode, QuantizeOptions, Skipped};
use clip_quantize::rewrite_check::{
    check_rewrite, pseudo_random_input, RewriteCheck, MAX_RELATIVE_DIFF,
};
use tract_onnx::pb::ModelProto;

use crate::progress_bar;

/// Migration strengths tried when calibration images choose one.
const ALPHA_GRID: [f32; 5] = [0.3, 0.4, 0.5, 0.6, 0.7];

/// What smoothing did, for the summary and the report.
#[derive(Debug, serde::Serialize)]
pub struct SmoothingReport {
    /// The migration strength used (`None`: smoothing measured worse and was not applied).
    pub alpha: Option<f32>,
    /// How it was chosen.
    pub alpha_from: &'static str,
    /// Where the channel ranges came from.
    pub ranges_from: &'static str,
    /// Mean embedding cosine of int8 to fp32 on the search images, without smoothing
    /// and at each strength tried (calibration only).
    pub search: Vec<SearchPoint>,
    /// What was done to each LayerNorm.
    pub layers: Vec<SmoothedLayer>,
    /// LayerNorms left alone, and why.
    pub skipped: Vec<Skipped>,
    /// The smoothed fp32 model against the original.
    pub check: Option<RewriteCheck>,
}

/// One point of the strength search.
#[derive(Debug, serde::Serialize)]
pub struct SearchPoint {
    /// The strength (`None`: no smoothing).
    pub alpha: Option<f32>,
    /// Mean embedding cosine, int8 to fp32.
    pub cosine_mean: f64,
}

/// How `run` should smooth.
pub struct SmoothRequest<'a> {
    /// The fp32 model about to be quantized.
    pub model: &'a ModelProto,
    /// The quantization settings (mode, exclusions); static scales are recomputed.
    pub options: &'a QuantizeOptions,
    /// Static mode's calibration method.
    pub method: CalibrationMethod,
    /// Calibration inputs (may be empty).
    pub calibration: &'a Inputs,
    /// Inputs the strength search and the fp32 check run on.
    pub search: &'a Inputs,
    /// A fixed strength (`--smooth-alpha`).
    pub alpha: Option<f32>,
    /// The original fp32 model, loaded.
    pub original: &'a mut ImageEncoder,
    /// The model file, for messages.
    pub name: &'a Path,
}

/// Smooths `request.model`'s outlier channels; returns the smoothed fp32 model
/// (or `None` when nothing was smoothed) and the report. Fails if the smoothed
/// model's fp32 embedding differs from the original's.
pub fn smooth_outliers(
    request: SmoothRequest<'_>,
) -> Result<(Option<ModelProto>, SmoothingReport)> {
    let SmoothRequest {
        model,
        options,
        method,
        calibration,
        search,
        alpha,
        original,
        name,
    } = request;
    let size = original.input_shape()[2];
    let (groups, skipped) = find_groups(model)?;
    let mut report = SmoothingReport {
        alpha: None,
        alpha_from: "",
        ranges_from: "",
        search: Vec::new(),
        layers: Vec::new(),
        skipped,
        check: None,
    };
    if groups.is_empty() {
        log::info!("no LayerNorm feeds only quantized matmuls: nothing to smooth");
        report.alpha_from = "nothing to smooth";
        return Ok((None, report));
    }
    let tensors: Vec<String> = groups.iter().map(|g| g.output.clone()).collect();
    // Without calibration images, two pseudo-random ones: the outliers a trained
    // model carries in its LayerNorms, or that arrive in their inputs (a large
    // residual dimension), show on any input.
    let probes: Inputs;
    let measured_on = if calibration.is_empty() {
        report.ranges_from = "two pseudo-random images (no calibration images)";
        probes = (1..=2)
            .map(|seed| {
                let name = PathBuf::from(format!("<pseudo-random input {seed}>"));
                (name, pseudo_random_input(original.input_len(), seed))
            })
            .collect();
        &probes
    } else {
        report.ranges_from = "calibration images";
        calibration
    };
    let bar = progress_bar(measured_on.len(), "measuring channel ranges", "images");
    let ranges = collect_channel_ranges(model, &tensors, measured_on, size, |i| {
        bar.set_position(i as u64)
    })?;
    bar.finish_and_clear();
    let (groups, without) = with_outliers(groups, &ranges);
    report.skipped.extend(without);
    if groups.is_empty() {
        log::info!("no LayerNorm output has outlier channels: nothing to smooth");
        report.alpha_from = "no outlier channels";
        return Ok((None, report));
    }
    let chosen = match alpha {
        Some(a) => {
            report.alpha_from = "--smooth-alpha";
            Some(a)
        }
        None if search.is_empty() => {
            report.alpha_from = "default (no calibration images to choose by)";
            Some(DEFAULT_ALPHA)
        }
        None => {
            report.alpha_from = "calibration search";
            let mut score = |a: Option<f32>| -> Result<f64> {
                let smoothed = match a {
                    Some(a) => Some(smooth(model, &groups, &ranges, a)?.0),
                    None => None,
                };
                let m = smoothed.as_ref().unwrap_or(model);
                let q = quantize_with(m, options, method, search, size)?;
                mean_cosine(&q, original, search, name)
            };
            let points: Vec<Option<f32>> =
                std::iter::once(None).chain(ALPHA_GRID.map(Some)).collect();
            let bar = progress_bar(points.len(), "choosing the smoothing strength", "strengths");
            for a in points {
                let cosine_mean = score(a)?;
                log::info!("smoothing strength {a:?}: mean cosine {cosine_mean:.5}");
                report.search.push(SearchPoint {
                    alpha: a,
                    cosine_mean,
                });
                bar.inc(1);
            }
            bar.finish_and_clear();
            report
                .search
                .iter()
                .max_by(|a, b| a.cosine_mean.total_cmp(&b.cosine_mean))
                .and_then(|p| p.alpha)
        }
    };
    let Some(a) = chosen else {
        log::info!("smoothing measured worse than none on the search images: not applied");
        return Ok((None, report));
    };
    let (smoothed, layers) = smooth(model, &groups, &ranges, a)?;
    let check = check_rewrite(
        original,
        &smoothed,
        search.iter().map(|(_, x)| x.as_slice()),
    )?;
    // check_rewrite turns NaN into infinity, so this comparison catches it.
    if check.max_relative_diff > MAX_RELATIVE_DIFF {
        bail!(
            "{}: smoothing changed the fp32 embedding (max |difference| / |embedding| = {:.1e} > {MAX_RELATIVE_DIFF:.0e}) in one of: {}; quantize with --no-smooth, and please report this",
            name.display(),
            check.max_relative_diff,
            group_names(&groups)
        );
    }
    report.alpha = Some(a);
    report.layers = layers;
    report.check = Some(check);
    Ok((Some(smoothed), report))
}

fn group_names(groups: &[SmoothGroup]) -> String {
    groups
        .iter()
        .map(|g| g.node.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// `model` quantized with `options`, static scales measured on `inputs`.
fn quantize_with(
    model: &ModelProto,
    options: &QuantizeOptions,
    method: CalibrationMethod,
    inputs: &Inputs,
    size: usize,
) -> Result<ModelProto> {
    let mut options = options.clone();
    if options.mode == ActivationMode::Static {
        let (candidates, _) = find_candidates(model)?;
        let tensors: Vec<String> = candidates.iter().map(|c| c.input.clone()).collect();
        options.static_scales = static_scales(model, &tensors, inputs, size, method, |_| {})?;
    }
    Ok(quantize(model, &options)?.0)
}

/// Mean embedding cosine of `model` to `reference` on `inputs`.
pub fn mean_cosine(
    model: &ModelProto,
    reference: &mut ImageEncoder,
    inputs: &Inputs,
    name: &Path,
) -> Result<f64> {
    let size = reference.input_shape()[2];
    let mut enc = ImageEncoder::from_onnx_bytes(&model_bytes(model), name, size)?;
    Ok(clip_quantize::eval::compare(reference, &mut enc, inputs, None, |_| {})?.cosine_mean)
}
