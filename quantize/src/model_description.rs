//! What a bundle says about its model: the family, the input size, the
//! preprocessing and the scoring rule, found for an image encoder.
//!
//! The description comes from, in this order:
//!
//! 1. a family preset named on the command line (`--family`), sized to the model's
//!    fixed input when it has one;
//! 2. a config file named on the command line (`--model-config`);
//! 3. the description `clip-quantize quantize` records in the int8 file's metadata
//!    ([`METADATA_KEY`]);
//! 4. a config file beside the model or one folder up (a hub's `onnx/` layout): our
//!    export's `model.json`, Hugging Face's `preprocessor_config.json`, or
//!    OpenCLIP's `open_clip_config.json`;
//! 5. CLIP's preprocessing at 224 (what bundles always had), only for a model whose
//!    input is 224 or not fixed.
//!
//! A model whose input is fixed at another size and that nothing describes is an
//! error naming the flags, never a silent guess.

use std::path::{Path, PathBuf};

use clip_edge_bundle::{
    CropOffset, Interpolation, ModelFamily, PreprocessConfig, ResizeMode, ScoringRule, CLIP_MEAN,
    CLIP_STD,
};

/// Key of the ONNX metadata entry where `clip-quantize quantize` records the
/// description of the model it rewrote (in our `model.json` format), so that
/// `bundle` finds it on an int8 file written anywhere.
pub const METADATA_KEY: &str = "clip_edge.model";

/// File names looked for beside the model, in this order.
pub const CONFIG_FILES: [&str; 3] = [
    "model.json",
    "preprocessor_config.json",
    "open_clip_config.json",
];

/// What goes wrong describing a model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DescribeError {
    /// A config file could not be read or is not JSON.
    #[error("{}: {message}", path.display())]
    Read {
        /// The config file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A config file asks for preprocessing the runtime does not do.
    #[error("{}: {message}", path.display())]
    Unsupported {
        /// The config file.
        path: PathBuf,
        /// What is not supported.
        message: String,
    },
    /// The model and its description disagree, or nothing describes the model.
    #[error("{}: {message}", model.display())]
    Model {
        /// The model file.
        model: PathBuf,
        /// What is missing or wrong, and the flag that supplies it.
        message: String,
    },
}

/// A model family's preset (`--family`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Preset {
    /// OpenAI CLIP through Hugging Face: shortest side to 224, centre crop, CLIP's
    /// mean and std, softmax.
    Clip,
    /// OpenCLIP's CLIP models: as `clip`, with torchvision's crop rounding.
    Openclip,
    /// SigLIP: squash to 224, mean and std 0.5, sigmoid (needs the learned
    /// --logit-scale and --logit-bias).
    Siglip,
    /// BLIP's contrastive heads: squash to 384, CLIP's mean and std, softmax.
    Blip,
    /// MobileCLIP: shortest side to 256 (bilinear), centre crop, mean 0, std 1, softmax.
    Mobileclip,
}

/// What is known of how a model wants its images and scores.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelDescription {
    /// The family.
    pub family: ModelFamily,
    /// How frames become its input.
    pub preprocess: PreprocessConfig,
    /// Softmax or sigmoid, when known.
    pub rule: Option<ScoringRule>,
    /// The learned logit scale (already exponentiated), when known.
    pub logit_scale: Option<f32>,
    /// The learned logit bias (sigmoid models), when known.
    pub logit_bias: Option<f32>,
    /// Where the description came from, for messages.
    pub origin: String,
}

/// Where a [`ModelDescription`] may come from, as the command line gives it.
#[derive(Debug, Clone, Default)]
pub struct DescribeRequest<'a> {
    /// `--model-config`.
    pub config: Option<&'a Path>,
    /// `--family`.
    pub preset: Option<Preset>,
    /// `--image-size`.
    pub image_size: Option<u32>,
    /// The model file's [`METADATA_KEY`] entry, if it has one.
    pub embedded: Option<&'a str>,
}

impl ModelDescription {
    /// The description in our `model.json` format, as `quantize` records it in the
    /// files it writes ([`METADATA_KEY`]); [`read_config`] reads it back.
    pub fn to_json(&self) -> String {
        let p = &self.preprocess;
        // The enums serialise as the manifest writes them, which model.json reads.
        serde_json::json!({
            "format": "clip-edge-model/1",
            "family": self.family,
            "scoring": self.rule,
            "logit_scale": self.logit_scale,
            "logit_bias": self.logit_bias,
            "preprocess": {
                "size": p.crop_size,
                "resize_shortest_edge": p.resize_shortest_edge,
                "resize": p.resize,
                "interpolation": p.interpolation,
                "crop_offset": p.crop_offset,
                "mean": p.mean,
                "std": p.std,
            },
        })
        .to_string()
    }
}

impl Preset {
    /// The preset's description at its usual input size.
    pub fn description(self) -> ModelDescription {
        let clip = PreprocessConfig::default();
        let (family, preprocess, rule) = match self {
            Preset::Clip => (ModelFamily::Clip, clip, ScoringRule::Softmax),
            Preset::Openclip => (
                ModelFamily::Clip,
                PreprocessConfig {
                    crop_offset: CropOffset::Round,
                    ..clip
                },
                ScoringRule::Softmax,
            ),
            Preset::Siglip => (
                ModelFamily::Siglip,
                squash(224, [0.5; 3], [0.5; 3]),
                ScoringRule::Sigmoid,
            ),
            Preset::Blip => (
                ModelFamily::Blip,
                squash(384, CLIP_MEAN, CLIP_STD),
                ScoringRule::Softmax,
            ),
            Preset::Mobileclip => (
                ModelFamily::Mobileclip,
                PreprocessConfig {
                    resize_shortest_edge: 256,
                    crop_size: 256,
                    interpolation: Interpolation::Bilinear,
                    crop_offset: CropOffset::Round,
                    mean: [0.0; 3],
                    std: [1.0; 3],
                    ..clip
                },
                ScoringRule::Softmax,
            ),
        };
        ModelDescription {
            family,
            preprocess,
            rule: Some(rule),
            logit_scale: None,
            logit_bias: None,
            origin: format!("--family {}", self.name()),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Preset::Clip => "clip",
            Preset::Openclip => "openclip",
            Preset::Siglip => "siglip",
            Preset::Blip => "blip",
            Preset::Mobileclip => "mobileclip",
        }
    }
}

fn squash(size: u32, mean: [f32; 3], std: [f32; 3]) -> PreprocessConfig {
    PreprocessConfig {
        resize: ResizeMode::Squash,
        resize_shortest_edge: size,
        crop_size: size,
        mean,
        std,
        ..PreprocessConfig::default()
    }
}

/// Sets the input side to `size`, keeping the resize-to-crop ratio of a shortest-edge
/// resize (CLIP at 224 resizes to 224; a config resizing 256 for a 224 crop keeps
/// its margin).
fn resize_to(p: &mut PreprocessConfig, size: u32) {
    if p.resize == ResizeMode::ShortestEdge && p.resize_shortest_edge != p.crop_size {
        let ratio = f64::from(p.resize_shortest_edge) / f64::from(p.crop_size);
        p.resize_shortest_edge = (f64::from(size) * ratio).round() as u32;
    } else {
        p.resize_shortest_edge = size;
    }
    p.crop_size = size;
}

/// The description of the image encoder at `model`, whose input is fixed at
/// `fixed_size` (or symbolic: `None`), from what `request` names or what lies beside
/// the model (see the module doc).
pub fn describe(
    model: &Path,
    fixed_size: Option<u32>,
    request: &DescribeRequest<'_>,
) -> Result<ModelDescription, DescribeError> {
    let model_error = |message: String| DescribeError::Model {
        model: model.to_path_buf(),
        message,
    };
    let flags = "pass --model-config FILE (the export's model.json, Hugging Face's preprocessor_config.json or OpenCLIP's open_clip_config.json) or --family clip|openclip|siglip|blip|mobileclip";
    let mut stated_size = true;
    let mut description = if let Some(preset) = request.preset {
        let mut d = preset.description();
        if let Some(size) = fixed_size.filter(|_| request.image_size.is_none()) {
            resize_to(&mut d.preprocess, size);
        }
        stated_size = false;
        d
    } else if let Some(path) = request.config {
        read_config(path)?
    } else if let Some(text) = request.embedded {
        let mut d = parse_config(text, model)?;
        d.origin = format!("{} (its {METADATA_KEY} metadata)", model.display());
        log::info!("{}: described by its own metadata", model.display());
        d
    } else if let Some(path) = find_config(model) {
        let d = read_config(&path)?;
        log::info!("{}: described by {}", model.display(), path.display());
        d
    } else {
        // CLIP's preprocessing is only known right at 224: any other size, from
        // the file or from --image-size, needs a description.
        match (fixed_size, request.image_size) {
            (Some(size), _) if size != 224 => {
                return Err(model_error(format!(
                    "takes {size}x{size} images, and nothing says how to preprocess them (no model.json, preprocessor_config.json or open_clip_config.json beside it; CLIP's preprocessing is for 224x224): {flags}"
                )))
            }
            (_, Some(size)) if size != 224 => {
                return Err(model_error(format!(
                    "--image-size {size} without a preprocessing: {flags}"
                )))
            }
            _ => {}
        }
        log::info!(
            "{}: no model config beside it; CLIP's preprocessing at 224",
            model.display()
        );
        let mut d = Preset::Clip.description();
        d.origin = "CLIP's defaults".into();
        d.rule = None;
        d
    };
    if let Some(size) = request.image_size {
        resize_to(&mut description.preprocess, size);
        stated_size = true;
    }
    let side = description.preprocess.crop_size;
    match fixed_size {
        Some(size) if size != side && stated_size => Err(model_error(format!(
            "takes {size}x{size} images, but {} says {side}x{side} (--image-size {size} overrides it)",
            description.origin
        ))),
        _ => {
            description.preprocess.validate().map_err(|e| {
                model_error(format!("{} gives an unusable preprocessing: {e}", description.origin))
            })?;
            Ok(description)
        }
    }
}

mod config_files;
use config_files::parse_config;
pub use config_files::{find_config, read_config};

#[cfg(test)]
mod tests;
