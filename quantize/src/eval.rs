//! Comparing an int8 image encoder with its fp32 original on images: embedding
//! cosine similarity, top-1 agreement and, for an ImageFolder tree whose folder
//! names are labels, zero-shot top-1 accuracy of each.

use std::path::{Path, PathBuf};

use clip_edge_bundle::{LabelTable, ScoringSection};
use clip_edge_core::encoder::{EncoderError, ImageEncoder};
use clip_edge_core::scoring::{dot, l2_normalize, Scorer};

/// Figures for one model on the evaluation images.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ModelFigures {
    /// Zero-shot top-1 on the images whose folder names a label (None without labels).
    pub top1_accuracy: Option<f64>,
}

/// The result of comparing two encoders.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct EvalReport {
    /// Images compared.
    pub images: usize,
    /// Mean cosine of int8 to fp32 embeddings.
    pub cosine_mean: f64,
    /// Smallest cosine, and the image it was on.
    pub cosine_min: f64,
    /// Image with the smallest cosine.
    pub cosine_min_image: String,
    /// Fraction of images where both models rank the same label first (with labels).
    pub top1_agreement: Option<f64>,
    /// Images whose folder names a label (the accuracy denominators).
    pub labelled_images: usize,
    /// fp32 figures.
    pub fp32: ModelFigures,
    /// int8 figures.
    pub int8: ModelFigures,
}

/// Compares `reference` (fp32) and `candidate` (int8) on preprocessed inputs.
/// `labels` enables top-1 agreement and, where an image's parent folder (with `_`
/// read as a space) is a label, accuracy. `progress` is called after each image.
pub fn compare(
    reference: &mut ImageEncoder,
    candidate: &mut ImageEncoder,
    inputs: &[(PathBuf, Vec<f32>)],
    labels: Option<&LabelTable>,
    mut progress: impl FnMut(usize),
) -> Result<EvalReport, EncoderError> {
    let mut report = EvalReport {
        cosine_min: f64::INFINITY,
        ..Default::default()
    };
    let mut cos_sum = 0.0;
    let (mut agree, mut correct_ref, mut correct_cand) = (0usize, 0usize, 0usize);
    // Only the ranking is used: any scale gives the same top-1.
    let softmax = ScoringSection::softmax(100.0);
    let mut scorers = labels.map(|t| (Scorer::new(t, &softmax), Scorer::new(t, &softmax)));
    for (i, (path, x)) in inputs.iter().enumerate() {
        let mut a = reference.encode(x)?.to_vec();
        let mut b = candidate.encode(x)?.to_vec();
        let cos = if l2_normalize(&mut a) && l2_normalize(&mut b) {
            dot(&a, &b) as f64
        } else {
            0.0
        };
        cos_sum += cos;
        if cos < report.cosine_min {
            report.cosine_min = cos;
            report.cosine_min_image = path.display().to_string();
        }
        if let (Some(table), Some((sa, sb))) = (labels, scorers.as_mut()) {
            let ta = sa
                .score(table, &a, 1)
                .and_then(|t| t.first().map(|p| p.index));
            let tb = sb
                .score(table, &b, 1)
                .and_then(|t| t.first().map(|p| p.index));
            if ta.is_some() && ta == tb {
                agree += 1;
            }
            if let Some(truth) = folder_label(path, table) {
                report.labelled_images += 1;
                correct_ref += (ta == Some(truth)) as usize;
                correct_cand += (tb == Some(truth)) as usize;
            }
        }
        progress(i + 1);
    }
    report.images = inputs.len();
    if report.images > 0 {
        report.cosine_mean = cos_sum / report.images as f64;
    } else {
        report.cosine_min = 0.0;
    }
    if labels.is_some() && report.images > 0 {
        report.top1_agreement = Some(agree as f64 / report.images as f64);
    }
    if report.labelled_images > 0 {
        let n = report.labelled_images as f64;
        report.fp32.top1_accuracy = Some(correct_ref as f64 / n);
        report.int8.top1_accuracy = Some(correct_cand as f64 / n);
    }
    Ok(report)
}

/// The label named by an image's parent folder (`red_circle` → `red circle`).
pub fn folder_label(path: &Path, table: &LabelTable) -> Option<usize> {
    let dir = path.parent()?.file_name()?.to_str()?;
    let spaced = dir.replace('_', " ");
    table.labels().iter().position(|l| l == dir || *l == spaced)
}
