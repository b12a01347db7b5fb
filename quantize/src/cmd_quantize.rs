//! `clip-quantize quantize` and `clip-quantize eval`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clip_edge_bundle::LabelTable;
use clip_edge_bundle::PreprocessConfig;
use clip_edge_core::encoder::ImageEncoder;
use clip_quantize::calibrate::{list_images, load_inputs, static_scales, Inputs};
use clip_quantize::eval::{compare, EvalReport};
use clip_quantize::model_description::METADATA_KEY;
use clip_quantize::onnx_graph::model_bytes;
use clip_quantize::prune_tokens::{keep_only_pooled_token, PruneSummary};
use clip_quantize::quant::{
    find_candidates, name_nodes, quantize, ActivationMode, QuantizeOptions, QuantizeSummary,
    ScaleGranularity,
};
use clip_quantize::rewrite_check::{check_rewrite, RewriteCheck, MAX_RELATIVE_DIFF};
use clip_quantize::tower::{self, Tower, TowerInputs};
use tract_onnx::pb::{ModelProto, StringStringEntryProto};

use crate::cmd_smooth::{mean_cosine, smooth_outliers, SmoothRequest, SmoothingReport};
use crate::{progress_bar, EvalArgs, ModeArg, QuantizeArgs, ScalesArg};
use clip_quantize::quant::smooth::SmoothedLayer;

/// Images used by the --max-cosine-drop search (each candidate model runs on all).
const SEARCH_IMAGES: usize = 16;

/// Runs `clip-quantize quantize`.
pub fn run(args: &QuantizeArgs) -> Result<()> {
    let selected = tower::load(&args.model, Tower::Image, args.image_output.as_deref())?;
    let description = args.describe.describe(
        &args.model,
        selected.fixed_image_size,
        selected.embedded_description.as_deref(),
    )?;
    let config = description.preprocess;
    let size = config.crop_size as usize;
    let mut fp32 = selected.model;
    if let TowerInputs::Image { pixels } = &selected.inputs {
        if tower::fix_image_size(&mut fp32, pixels, size) {
            log::info!(
                "{}: input {pixels:?} fixed to [batch, 3, {size}, {size}]",
                args.model.display()
            );
        }
    }
    name_nodes(&mut fp32);
    let (candidates, skipped) = find_candidates(&fp32)?;
    if args.list {
        for c in &candidates {
            println!(
                "{:<60} {:?} [{} x {}] input {}",
                c.node, c.kind, c.k, c.n, c.input
            );
        }
        for s in &skipped {
            println!("{:<60} {} (stays fp32: {})", s.node, s.op, s.reason);
        }
        return Ok(());
    }
    let Some(out) = args.out.as_deref() else {
        bail!("--out is required");
    };
    if let Some(a) = args.smooth_alpha {
        if !(0.0..=1.0).contains(&a) {
            bail!("--smooth-alpha must be in [0, 1], got {a}");
        }
    }
    if let Some(x) = args.max_cosine_drop {
        if !(0.0..1.0).contains(&x) {
            bail!("--max-cosine-drop must be in [0, 1), got {x}");
        }
    }
    if candidates.is_empty() {
        bail!(
            "{}: no MatMul, Gemm or patch Conv with a constant weight: nothing to quantize",
            args.model.display()
        );
    }
    let mode = match args.mode {
        ModeArg::Dynamic => ActivationMode::Dynamic,
        ModeArg::Static => ActivationMode::Static,
        ModeArg::Weights => ActivationMode::Weights,
    };
    let inputs = match &args.calibration {
        Some(dir) => read_images(dir, &config, args.max_images)?,
        None => {
            if mode == ActivationMode::Static {
                bail!("--mode static needs --calibration DIR (a folder of representative images)");
            }
            if args.max_cosine_drop.is_some() {
                bail!("--max-cosine-drop needs --calibration DIR to measure the cosine on");
            }
            Vec::new()
        }
    };

    let (pruned, pruning, original) = if args.keep_all_tokens {
        let summary = PruneSummary::unchanged("--keep-all-tokens");
        (
            None,
            TokenPruning {
                summary,
                check: None,
            },
            None,
        )
    } else {
        prune_last_layer(&fp32, &inputs, size)?
    };
    // The model that gets quantized; the pruned one's matmuls read sliced tensors.
    let model = pruned.as_ref().unwrap_or(&fp32);

    let mut options = QuantizeOptions {
        mode,
        granularity: match args.activation_scales {
            ScalesArg::Tensor => ScaleGranularity::Tensor,
            ScalesArg::Token => ScaleGranularity::Token,
        },
        exclude: args.exclude.clone(),
        static_scales: HashMap::new(),
    };
    // The original fp32 model, as given: the reference for the rewrites' checks
    // and the evaluation.
    let load_original = || ImageEncoder::from_onnx_bytes(&model_bytes(&fp32), &args.model, size);
    let mut original = original;
    let search: Inputs = inputs.iter().take(SEARCH_IMAGES).cloned().collect();
    let (smoothed, smoothing) = if args.no_smooth || mode == ActivationMode::Weights {
        (None, None)
    } else {
        let encoder = match original.as_mut() {
            Some(e) => e,
            None => original.insert(load_original()?),
        };
        let (smoothed, report) = smooth_outliers(SmoothRequest {
            model,
            options: &options,
            method: args.method,
            calibration: &inputs,
            search: &search,
            alpha: args.smooth_alpha,
            original: encoder,
            name: &args.model,
        })?;
        (smoothed, Some(report))
    };
    let model = smoothed.as_ref().unwrap_or(model);
    let candidates = find_candidates(model)?.0;
    // The evaluation needs the original only when there are images to run
    // (otherwise its memory goes before quantizing).
    let mut reference = match original {
        _ if inputs.is_empty() => None,
        Some(encoder) => Some(encoder),
        None => Some(load_original()?),
    };

    if mode == ActivationMode::Static {
        let tensors: Vec<String> = candidates.iter().map(|c| c.input.clone()).collect();
        let bar = progress_bar(inputs.len(), "calibrating", "images");
        options.static_scales = static_scales(model, &tensors, &inputs, size, args.method, |i| {
            bar.set_position(i as u64)
        })?;
        bar.finish_and_clear();
    }

    let (mut int8, mut summary) = quantize(model, &options)?;
    let mut kept_for_cosine = Vec::new();
    if let (Some(x), Some(reference)) = (args.max_cosine_drop, reference.as_mut()) {
        kept_for_cosine = keep_sensitive_layers(
            model,
            &int8,
            &mut options,
            reference,
            &search,
            x,
            &args.model,
        )?;
        if !kept_for_cosine.is_empty() {
            (int8, summary) = quantize(model, &options)?;
        }
    }

    // The int8 file carries the description, so that `bundle` finds it wherever
    // the file is written (CLIP's defaults need no record).
    if description.rule.is_some() {
        int8.metadata_props.retain(|e| e.key != METADATA_KEY);
        int8.metadata_props.push(StringStringEntryProto {
            key: METADATA_KEY.to_string(),
            value: description.to_json(),
        });
    }
    let bytes = model_bytes(&int8);
    // The written model must load in tract as the runtime will load it.
    let mut candidate = ImageEncoder::from_onnx_bytes(&bytes, out, size)
        .context("the int8 model does not load in tract (please report this)")?;
    crate::write_atomically(out, &bytes)?;

    let eval = match reference.as_mut() {
        Some(reference) => {
            let bar = progress_bar(inputs.len(), "evaluating", "images");
            let r = compare(reference, &mut candidate, &inputs, None, |i| {
                bar.set_position(i as u64)
            })?;
            bar.finish_and_clear();
            Some(r)
        }
        None => None,
    };

    let fp32_size = std::fs::metadata(&args.model).map(|m| m.len()).unwrap_or(0);
    print_summary(
        &summary,
        &pruning,
        fp32_size,
        bytes.len() as u64,
        eval.as_ref(),
        &kept_for_cosine,
        out,
    );
    if let Some(sm) = &smoothing {
        print_smoothing(sm);
    }
    if let Some(path) = &args.report {
        let report = serde_json::json!({
            "model": args.model.display().to_string(),
            "out": out.display().to_string(),
            "mode": mode,
            "activation_scales": options.granularity,
            "method": (mode == ActivationMode::Static).then_some(args.method),
            "fp32_bytes": fp32_size,
            "int8_bytes": bytes.len(),
            "size_ratio": bytes.len() as f64 / fp32_size.max(1) as f64,
            "quantized": summary.quantized,
            "skipped": summary.skipped,
            "kept_fp32_for_cosine": kept_for_cosine,
            "token_pruning": pruning,
            "smoothing": smoothing,
            "calibration_images": inputs.len(),
            "eval": eval,
        });
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// What the CLS-only rewrite of the last layer did, for the summary and the report.
#[derive(serde::Serialize)]
struct TokenPruning {
    #[serde(flatten)]
    summary: PruneSummary,
    /// The pruned fp32 model against the original (when it was checked).
    check: Option<RewriteCheck>,
}

/// `fp32` with its last layer computed for the pooled token only, if the graph
/// allows it and the pruned model gives the same embedding as the original on two
/// pseudo-random inputs and the calibration images; otherwise `None` (with the
/// reason in the summary). Also returns the original model loaded in tract when the
/// check loaded it, to serve as the evaluation reference.
fn prune_last_layer(
    fp32: &ModelProto,
    inputs: &Inputs,
    size: usize,
) -> Result<(Option<ModelProto>, TokenPruning, Option<ImageEncoder>)> {
    let (pruned, summary) = keep_only_pooled_token(fp32, &[1, 3, size, size])?;
    if !summary.pruned() {
        log::info!(
            "all tokens kept: {}",
            summary.skipped.as_deref().unwrap_or("")
        );
        let pruning = TokenPruning {
            summary,
            check: None,
        };
        return Ok((None, pruning, None));
    }
    let mut original =
        ImageEncoder::from_onnx_bytes(&model_bytes(fp32), Path::new("<fp32>"), size)?;
    let bar = progress_bar(inputs.len(), "checking the pruned model", "inputs");
    let check = check_rewrite(
        &mut original,
        &pruned,
        inputs.iter().map(|(_, x)| {
            bar.inc(1);
            x.as_slice()
        }),
    );
    bar.finish_and_clear();
    let failed = match &check {
        Ok(c) if c.max_relative_diff <= MAX_RELATIVE_DIFF => None,
        Ok(c) => Some(format!(
            "the pruned model's embedding differs from the original's (max |difference| / |embedding| = {:.1e} > {MAX_RELATIVE_DIFF:.0e} on {} inputs)",
            c.max_relative_diff, c.inputs
        )),
        Err(e) => Some(format!("the pruned model does not run: {e}")),
    };
    let check = check.ok();
    match failed {
        None => Ok((
            Some(pruned),
            TokenPruning { summary, check },
            Some(original),
        )),
        Some(why) => {
            log::warn!("not pruning the last layer to the pooled token: {why}; please report this");
            let summary = PruneSummary::unchanged(why);
            Ok((None, TokenPruning { summary, check }, Some(original)))
        }
    }
}

/// Preprocessed inputs of the images under `dir` (at most `max`, evenly spread);
/// unreadable files are skipped with a warning, an empty result is an error.
fn read_images(dir: &Path, config: &PreprocessConfig, max: usize) -> Result<Inputs> {
    let images = list_images(dir)?;
    if images.is_empty() {
        bail!("{}: no images found", dir.display());
    }
    let images: Vec<PathBuf> = spread(&images, max);
    let (inputs, skipped) = load_inputs(&images, config)?;
    for (path, why) in &skipped {
        eprintln!("warning: skipped {}: {why}", path.display());
    }
    if inputs.is_empty() {
        bail!(
            "{}: none of the {} images could be read",
            dir.display(),
            images.len()
        );
    }
    Ok(inputs)
}

/// At most `max` items, evenly spread (so every class of an ImageFolder is seen).
fn spread<T: Clone>(items: &[T], max: usize) -> Vec<T> {
    if items.len() <= max || max == 0 {
        return items.to_vec();
    }
    (0..max)
        .map(|i| items[i * items.len() / max].clone())
        .collect()
}

/// Greedy search (`all` is `fp32` with every layer quantized): measure each
/// layer's damage alone, then keep the worst layers in fp32 one by one until the
/// mean cosine reaches `1 - max_drop`.
fn keep_sensitive_layers(
    fp32: &ModelProto,
    all: &ModelProto,
    options: &mut QuantizeOptions,
    reference: &mut ImageEncoder,
    inputs: &Inputs,
    max_drop: f64,
    name: &Path,
) -> Result<Vec<String>> {
    let target = 1.0 - max_drop;
    let cos = mean_cosine(all, reference, inputs, name)?;
    if cos >= target {
        eprintln!("mean cosine {cos:.5} >= {target:.5} with every layer quantized");
        return Ok(Vec::new());
    }
    let (candidates, _) = find_candidates(fp32)?;
    let layers: Vec<String> = candidates
        .iter()
        .map(|c| c.node.clone())
        .filter(|n| !options.exclude.contains(n))
        .collect();
    let bar = progress_bar(layers.len(), "measuring layer sensitivity", "layers");
    let mut damage = Vec::new();
    for (i, layer) in layers.iter().enumerate() {
        let only: Vec<String> = layers.iter().filter(|l| *l != layer).cloned().collect();
        let mut one = options.clone();
        one.exclude.extend(only);
        let (m, _) = quantize(fp32, &one)?;
        damage.push((
            1.0 - mean_cosine(&m, reference, inputs, name)?,
            layer.clone(),
        ));
        bar.set_position(i as u64 + 1);
    }
    bar.finish_and_clear();
    damage.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut kept = Vec::new();
    for (d, layer) in damage {
        options.exclude.push(layer.clone());
        kept.push(layer.clone());
        let (m, _) = quantize(fp32, options)?;
        let cos = mean_cosine(&m, reference, inputs, name)?;
        log::info!("kept {layer} in fp32 (alone it cost {d:.5}): mean cosine {cos:.5}");
        if cos >= target {
            return Ok(kept);
        }
    }
    bail!("the mean cosine stays below {target} even with every layer in fp32")
}

fn print_summary(
    summary: &QuantizeSummary,
    pruning: &TokenPruning,
    fp32_bytes: u64,
    int8_bytes: u64,
    eval: Option<&EvalReport>,
    kept: &[String],
    out: &Path,
) {
    let mb = |b: u64| b as f64 / 1e6;
    eprintln!(
        "wrote {}: {} nodes int8 ({} weights), {:.2} MB -> {:.2} MB ({:.0}%)",
        out.display(),
        summary.quantized.len(),
        summary.int8_weights,
        mb(fp32_bytes),
        mb(int8_bytes),
        100.0 * int8_bytes as f64 / fp32_bytes.max(1) as f64
    );
    let mut reasons: HashMap<&str, usize> = HashMap::new();
    for s in &summary.skipped {
        *reasons.entry(s.reason.as_str()).or_default() += 1;
    }
    let mut reasons: Vec<_> = reasons.into_iter().collect();
    reasons.sort();
    for (reason, count) in reasons {
        eprintln!("  fp32: {count} node(s): {reason}");
    }
    let p = &pruning.summary;
    match &p.skipped {
        None => eprintln!(
            "  pooled token only: {} nodes of the last layer run on 1 of {} tokens ({} matmuls: {}){}",
            p.one_token_nodes.len(),
            p.tokens.unwrap_or(0),
            p.one_token_matmuls.len(),
            p.one_token_matmuls.join(", "),
            pruning
                .check
                .as_ref()
                .map(|c| format!(
                    "; same fp32 embedding on {} inputs (max relative difference {:.1e})",
                    c.inputs, c.max_relative_diff
                ))
                .unwrap_or_default()
        ),
        Some(why) => eprintln!("  all tokens computed: {why}"),
    }
    if !kept.is_empty() {
        eprintln!("  kept in fp32 for --max-cosine-drop: {}", kept.join(", "));
    }
    if let Some(e) = eval {
        eprintln!(
            "  on {} calibration images: embedding cosine to fp32 mean {:.5}, min {:.5}",
            e.images, e.cosine_mean, e.cosine_min
        );
    }
}

fn print_smoothing(sm: &SmoothingReport) {
    let Some(alpha) = sm.alpha else {
        eprintln!("  outlier smoothing not applied ({})", sm.alpha_from);
        return;
    };
    let outliers: usize = sm.layers.iter().map(|l| l.outlier_channels.len()).sum();
    let worst = |f: fn(&SmoothedLayer) -> f32| sm.layers.iter().map(f).fold(0.0, f32::max);
    eprintln!(
        "  outliers smoothed into the weights of {} LayerNorm outputs (strength {alpha}, {}; ranges from {}): {outliers} channel(s) over 8x the median; largest channel over median {:.1} -> {:.1}",
        sm.layers.len(),
        sm.alpha_from,
        sm.ranges_from,
        worst(|l| l.spread_before),
        worst(|l| l.spread_after),
    );
    if let Some(none) = sm.search.iter().find(|p| p.alpha.is_none()) {
        let with = sm.search.iter().find(|p| p.alpha == Some(alpha));
        eprintln!(
            "    search images' mean cosine: without smoothing {:.5}, with {:.5}",
            none.cosine_mean,
            with.map_or(f64::NAN, |p| p.cosine_mean)
        );
    }
}

/// Runs `clip-quantize eval`.
pub fn eval_cmd(args: &EvalArgs) -> Result<()> {
    let labels = args.labels.as_deref().map(LabelTable::load).transpose()?;
    let fp32 = tower::prepare(&args.fp32, Tower::Image, None)?;
    let int8 = tower::prepare(&args.int8, Tower::Image, None)?;
    let config = args
        .describe
        .describe(
            &args.fp32,
            fp32.fixed_image_size.or(int8.fixed_image_size),
            fp32.embedded_description
                .as_deref()
                .or(int8.embedded_description.as_deref()),
        )?
        .preprocess;
    let size = config.crop_size as usize;
    let mut reference = ImageEncoder::load(fp32.path(), size)?;
    let mut candidate = ImageEncoder::load(int8.path(), size)?;
    if let Some(t) = &labels {
        if t.dim() != reference.dim() || t.dim() != candidate.dim() {
            bail!(
                "dimensions differ: fp32 model {}, int8 model {}, labels {}",
                reference.dim(),
                candidate.dim(),
                t.dim()
            );
        }
    }
    let inputs = read_images(&args.images, &config, usize::MAX)?;
    let bar = progress_bar(inputs.len(), "evaluating", "images");
    let report = compare(
        &mut reference,
        &mut candidate,
        &inputs,
        labels.as_ref(),
        |i| bar.set_position(i as u64),
    )?;
    bar.finish_and_clear();
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
        return Ok(());
    }
    println!("images:                 {}", report.images);
    println!(
        "cosine int8 vs fp32:    mean {:.5}  min {:.5} ({})",
        report.cosine_mean, report.cosine_min, report.cosine_min_image
    );
    if let Some(a) = report.top1_agreement {
        println!("top-1 agreement:        {:.2}%", 100.0 * a);
    }
    if let (Some(a), Some(b)) = (report.fp32.top1_accuracy, report.int8.top1_accuracy) {
        println!(
            "zero-shot top-1 ({} labelled images): fp32 {:.2}%  int8 {:.2}%",
            report.labelled_images,
            100.0 * a,
            100.0 * b
        );
    }
    Ok(())
}
