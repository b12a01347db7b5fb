//! The `[preprocess]` section of a bundle: how a frame becomes the model's input
//! (shortest-side resize and centre crop, or a squash resize; the interpolation; the
//! crop offset's rounding; mean and std). The resampling itself is clip-edge-core's
//! `Preprocessor`.
//!
//! Each family's reference processor is one setting of these fields:
//!
//! | reference | `resize` | `interpolation` | `crop_offset` |
//! | --- | --- | --- | --- |
//! | HF `CLIPImageProcessor` | `shortest_edge` | `bicubic` | `floor` |
//! | OpenCLIP transforms (torchvision) | `shortest_edge` | `bicubic` or `bilinear` | `round` |
//! | HF `SiglipImageProcessor`, `BlipImageProcessor` | `squash` | `bicubic` | (no crop) |
//!
//! Fields a bundle leaves out take CLIP's values, so bundles written before these
//! fields existed read as they always did.

use serde::{Deserialize, Serialize};

/// Largest accepted `resize_shortest_edge` / `crop_size` (sanity bound).
const MAX_TARGET_SIDE: u32 = 8192;
/// A [`PreprocessConfig`] that cannot be used, and why.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
#[error("invalid preprocessing config: {0}")]
pub struct InvalidPreprocessConfig(pub String);

/// How a frame is resized to the model's square input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResizeMode {
    /// The shortest side to `resize_shortest_edge` (aspect ratio kept), then a
    /// centre crop of `crop_size` (CLIP, OpenCLIP, MobileCLIP).
    #[default]
    ShortestEdge,
    /// Both sides straight to `crop_size` (aspect ratio not kept, nothing cut off:
    /// SigLIP, BLIP).
    Squash,
}

/// The resampling filter (Pillow's, bit-exact).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Interpolation {
    /// Pillow `BICUBIC` (`a = -0.5`).
    #[default]
    Bicubic,
    /// Pillow `BILINEAR` (a triangle filter).
    Bilinear,
}

/// How the centre crop's offset `(resized - crop) / 2` is rounded when it is not whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CropOffset {
    /// Down (HF processors: `(resized - crop) // 2`).
    #[default]
    Floor,
    /// To the nearest, halves to even (torchvision's `CenterCrop`, used by OpenCLIP:
    /// `int(round((resized - crop) / 2.0))`).
    Round,
}

/// Preprocessing parameters (CLIP defaults via [`Default`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PreprocessConfig {
    /// Shortest-edge resize then centre crop, or a squash resize.
    #[serde(skip_serializing_if = "is_default")]
    pub resize: ResizeMode,
    /// Target length of the shortest image side after resizing (CLIP: 224); with
    /// [`ResizeMode::Squash`] it must equal `crop_size`.
    pub resize_shortest_edge: u32,
    /// Side of the model's square input: the centre crop's side, or with
    /// [`ResizeMode::Squash`] the side both dimensions are resized to (CLIP: 224).
    pub crop_size: u32,
    /// The resampling filter.
    #[serde(skip_serializing_if = "is_default")]
    pub interpolation: Interpolation,
    /// Rounding of the centre crop's offset.
    #[serde(skip_serializing_if = "is_default")]
    pub crop_offset: CropOffset,
    /// Per-channel (R, G, B) mean subtracted after rescaling to `[0, 1]`.
    pub mean: [f32; 3],
    /// Per-channel (R, G, B) standard deviation divided by after subtracting the mean.
    pub std: [f32; 3],
}

/// OpenAI CLIP normalisation mean (R, G, B).
pub const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
/// OpenAI CLIP normalisation standard deviation (R, G, B).
#[allow(clippy::excessive_precision)] // the published constants, verbatim
pub const CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_58, 0.275_777_11];

/// Whether a field holds its default (such fields are left out of the manifest, so
/// a CLIP bundle's `[preprocess]` reads the same as before they existed).
fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

impl Default for PreprocessConfig {
    fn default() -> Self {
        Self {
            resize: ResizeMode::ShortestEdge,
            resize_shortest_edge: 224,
            crop_size: 224,
            interpolation: Interpolation::Bicubic,
            crop_offset: CropOffset::Floor,
            mean: CLIP_MEAN,
            std: CLIP_STD,
        }
    }
}

impl PreprocessConfig {
    /// Checks that sizes are non-zero and bounded and that mean/std are finite
    /// (std also non-zero).
    pub fn validate(&self) -> Result<(), InvalidPreprocessConfig> {
        let bad = |msg: String| Err(InvalidPreprocessConfig(msg));
        if self.resize_shortest_edge == 0 || self.resize_shortest_edge > MAX_TARGET_SIDE {
            return bad(format!(
                "resize_shortest_edge must be in 1..={MAX_TARGET_SIDE}, got {}",
                self.resize_shortest_edge
            ));
        }
        if self.crop_size == 0 || self.crop_size > MAX_TARGET_SIDE {
            return bad(format!(
                "crop_size must be in 1..={MAX_TARGET_SIDE}, got {}",
                self.crop_size
            ));
        }
        if self.resize == ResizeMode::Squash && self.resize_shortest_edge != self.crop_size {
            return bad(format!(
                "resize = \"squash\" resizes both sides to crop_size ({}); resize_shortest_edge must be the same, got {}",
                self.crop_size, self.resize_shortest_edge
            ));
        }
        if self.resize == ResizeMode::ShortestEdge
            && self.crop_offset == CropOffset::Round
            && self.resize_shortest_edge < self.crop_size
        {
            return bad(format!(
                "crop_offset = \"round\" needs resize_shortest_edge ({}) >= crop_size ({}): torchvision pads such crops differently from HF",
                self.resize_shortest_edge, self.crop_size
            ));
        }
        for c in 0..3 {
            if !self.mean[c].is_finite() {
                return bad(format!("mean[{c}] is not finite: {}", self.mean[c]));
            }
            if !self.std[c].is_finite() || self.std[c] == 0.0 {
                return bad(format!(
                    "std[{c}] must be finite and non-zero, got {}",
                    self.std[c]
                ));
            }
        }
        Ok(())
    }

    /// Size `(width, height)` after the resize: `crop_size` square for
    /// [`ResizeMode::Squash`], else the shortest-edge rule of HF and torchvision
    /// (`new_long = int(shortest_edge * long / short)`, computed in `f64` like Python).
    ///
    /// `width` and `height` must be non-zero.
    pub fn resized_size(&self, width: u32, height: u32) -> (u32, u32) {
        if self.resize == ResizeMode::Squash {
            return (self.crop_size, self.crop_size);
        }
        let s = self.resize_shortest_edge;
        let (short, long) = if width <= height {
            (width, height)
        } else {
            (height, width)
        };
        let short = short.max(1);
        // Python: int(requested_new_short * long / short): exact ints, correctly
        // rounded true division, truncation toward zero.
        let new_long = ((u64::from(s) * u64::from(long)) as f64 / f64::from(short)) as u32;
        if width <= height {
            (s, new_long)
        } else {
            (new_long, s)
        }
    }

    /// Number of `f32` values of the model input: `3 * crop * crop`.
    pub fn output_len(&self) -> usize {
        3 * self.crop_size as usize * self.crop_size as usize
    }

    /// Offset of the centre crop in a resized side of length `resized` (negative
    /// when the crop is larger: the crop is padded with zeros, as in HF).
    pub fn crop_offset(&self, resized: u32) -> i64 {
        let d = i64::from(resized) - i64::from(self.crop_size);
        match self.crop_offset {
            CropOffset::Floor => d.div_euclid(2),
            // Python's round(d / 2.0): halves go to the even neighbour.
            CropOffset::Round => {
                let half = d.div_euclid(2);
                if d.rem_euclid(2) == 1 && half.rem_euclid(2) == 1 {
                    half + 1
                } else {
                    half
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_clip_and_valid() {
        let c = PreprocessConfig::default();
        assert_eq!(c.resize_shortest_edge, 224);
        assert_eq!(c.crop_size, 224);
        c.validate().unwrap();
        assert_eq!(c.output_len(), 3 * 224 * 224);
    }

    #[test]
    fn validate_rejects_bad_values() {
        let mut c = PreprocessConfig::default();
        c.std[1] = 0.0;
        assert!(c.validate().is_err());
        let c = PreprocessConfig {
            crop_size: 0,
            ..Default::default()
        };
        assert!(c.validate().is_err());
        let mut c = PreprocessConfig::default();
        c.mean[0] = f32::NAN;
        assert!(c.validate().is_err());
    }

    #[test]
    fn config_serde_roundtrip() {
        let c = PreprocessConfig::default();
        let s = serde_json::to_string(&c).unwrap();
        let back: PreprocessConfig = serde_json::from_str(&s).unwrap();
        assert_eq!(c, back);
        let partial: PreprocessConfig = serde_json::from_str(r#"{"crop_size": 256}"#).unwrap();
        assert_eq!(partial.crop_size, 256);
        assert_eq!(partial.resize_shortest_edge, 224);
    }

    #[test]
    fn old_manifests_read_as_clip_and_clip_writes_no_new_fields() {
        let old: PreprocessConfig = toml::from_str(
            "resize_shortest_edge = 224\ncrop_size = 224\nmean = [0.5, 0.5, 0.5]\nstd = [0.5, 0.5, 0.5]\n",
        )
        .unwrap();
        assert_eq!(old.resize, ResizeMode::ShortestEdge);
        assert_eq!(old.interpolation, Interpolation::Bicubic);
        assert_eq!(old.crop_offset, CropOffset::Floor);
        let written = toml::to_string(&PreprocessConfig::default()).unwrap();
        assert!(!written.contains("resize ="), "{written}");
        assert!(!written.contains("interpolation"), "{written}");
        assert!(!written.contains("crop_offset"), "{written}");
        let squash = PreprocessConfig {
            resize: ResizeMode::Squash,
            resize_shortest_edge: 384,
            crop_size: 384,
            ..Default::default()
        };
        let text = toml::to_string(&squash).unwrap();
        assert!(text.contains("resize = \"squash\""), "{text}");
        assert_eq!(toml::from_str::<PreprocessConfig>(&text).unwrap(), squash);
    }

    #[test]
    fn squash_resizes_to_the_input_side_and_must_say_so_consistently() {
        let mut c = PreprocessConfig {
            resize: ResizeMode::Squash,
            resize_shortest_edge: 384,
            crop_size: 384,
            ..Default::default()
        };
        c.validate().unwrap();
        assert_eq!(c.resized_size(640, 480), (384, 384));
        c.resize_shortest_edge = 224;
        let e = c.validate().unwrap_err();
        assert!(e.0.contains("squash"), "{e}");
    }

    #[test]
    fn crop_offset_rounds_like_hf_or_torchvision() {
        let floor = PreprocessConfig::default();
        let round = PreprocessConfig {
            crop_offset: CropOffset::Round,
            ..Default::default()
        };
        // (resized - 224) / 2: 0, 0.5, 1, 1.5, 2.5, 3.5, -0.5
        for (resized, hf, tv) in [
            (224, 0, 0),
            (225, 0, 0),
            (226, 1, 1),
            (227, 1, 2),
            (229, 2, 2),
            (231, 3, 4),
            (223, -1, 0),
        ] {
            assert_eq!(floor.crop_offset(resized), hf, "floor {resized}");
            assert_eq!(round.crop_offset(resized), tv, "round {resized}");
        }
    }

    #[test]
    fn resized_size_matches_hf_rule() {
        let c = PreprocessConfig::default();
        assert_eq!(c.resized_size(640, 480), (298, 224)); // int(224*640/480)=298
        assert_eq!(c.resized_size(480, 640), (224, 298));
        assert_eq!(c.resized_size(500, 500), (224, 224));
        assert_eq!(c.resized_size(7, 5), (313, 224)); // 224*7/5 = 313.6
        assert_eq!(c.resized_size(100, 3000), (224, 6720));
    }
}
