//! The `[preprocess]` section of a bundle: how a frame becomes the model's input
//! (shortest-side resize, centre crop, mean and std). The resampling itself is
//! clip-edge-core's `Preprocessor`.

use serde::{Deserialize, Serialize};

/// Largest accepted `resize_shortest_edge` / `crop_size` (sanity bound).
const MAX_TARGET_SIDE: u32 = 8192;
/// A [`PreprocessConfig`] that cannot be used, and why.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
#[error("invalid preprocessing config: {0}")]
pub struct InvalidPreprocessConfig(pub String);

/// Preprocessing parameters (CLIP defaults via [`Default`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PreprocessConfig {
    /// Target length of the shortest image side after resizing (CLIP: 224).
    pub resize_shortest_edge: u32,
    /// Side of the square centre crop (CLIP: 224).
    pub crop_size: u32,
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

impl Default for PreprocessConfig {
    fn default() -> Self {
        Self {
            resize_shortest_edge: 224,
            crop_size: 224,
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

    /// Size `(width, height)` after the shortest-edge resize, using HF's rule
    /// (`new_long = int(shortest_edge * long / short)`, computed in `f64` like Python).
    ///
    /// `width` and `height` must be non-zero.
    pub fn resized_size(&self, width: u32, height: u32) -> (u32, u32) {
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
    fn resized_size_matches_hf_rule() {
        let c = PreprocessConfig::default();
        assert_eq!(c.resized_size(640, 480), (298, 224)); // int(224*640/480)=298
        assert_eq!(c.resized_size(480, 640), (224, 298));
        assert_eq!(c.resized_size(500, 500), (224, 224));
        assert_eq!(c.resized_size(7, 5), (313, 224)); // 224*7/5 = 313.6
        assert_eq!(c.resized_size(100, 3000), (224, 6720));
    }
}
