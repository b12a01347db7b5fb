//! The config files a model's description is read from: our export's
//! `model.json`, Hugging Face's `preprocessor_config.json`, OpenCLIP's
//! `open_clip_config.json` (told apart by content), found beside the model.

use std::path::{Path, PathBuf};

use clip_edge_bundle::{
    CropOffset, Interpolation, ModelFamily, PreprocessConfig, ResizeMode, ScoringRule, CLIP_MEAN,
    CLIP_STD,
};
use serde_json::Value;

use super::{DescribeError, ModelDescription, CONFIG_FILES};

/// The first of [`CONFIG_FILES`] in the model's folder or the one above it. Our
/// export's `model.json` counts only when it is in our format.
pub fn find_config(model: &Path) -> Option<PathBuf> {
    let dir = model.parent()?;
    let dirs = [Some(dir), dir.parent()];
    for dir in dirs.into_iter().flatten() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        for name in CONFIG_FILES {
            let path = dir.join(name);
            if !path.is_file() {
                continue;
            }
            if name == "model.json" && !is_our_model_json(&path) {
                continue;
            }
            return Some(path);
        }
    }
    None
}

fn is_our_model_json(path: &Path) -> bool {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .and_then(|v| {
            v.get("format")?
                .as_str()
                .map(|f| f.starts_with("clip-edge-model/"))
        })
        .unwrap_or(false)
}

/// Reads a description from our `model.json`, HF's `preprocessor_config.json` or
/// OpenCLIP's `open_clip_config.json` (told apart by content).
pub fn read_config(path: &Path) -> Result<ModelDescription, DescribeError> {
    let text = std::fs::read_to_string(path).map_err(|e| DescribeError::Read {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    parse_config(&text, path)
}

/// [`read_config`] on text read from `path`.
pub(super) fn parse_config(text: &str, path: &Path) -> Result<ModelDescription, DescribeError> {
    let json: Value = serde_json::from_str(text).map_err(|e| DescribeError::Read {
        path: path.to_path_buf(),
        message: format!("not JSON: {e}"),
    })?;
    let unsupported = |message: String| DescribeError::Unsupported {
        path: path.to_path_buf(),
        message,
    };
    let mut description = if json.get("format").and_then(Value::as_str).is_some_and(|f| f.starts_with("clip-edge-model/")) {
        from_our_model_json(&json)
    } else if json.get("preprocess_cfg").is_some() || json.get("model_cfg").is_some() {
        from_open_clip_config(&json)
    } else if json.get("image_mean").is_some() || json.get("image_processor_type").is_some() {
        from_hf_preprocessor_config(&json)
    } else {
        Err("neither our export's model.json, Hugging Face's preprocessor_config.json nor OpenCLIP's open_clip_config.json".to_string())
    }
    .map_err(unsupported)?;
    description.origin = path.display().to_string();
    Ok(description)
}

fn number(v: &Value, key: &str) -> Result<Option<f64>, String> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(x) => x
            .as_f64()
            .map(Some)
            .ok_or_else(|| format!("{key} is not a number: {x}")),
    }
}

fn triple(v: &Value, key: &str) -> Result<Option<[f32; 3]>, String> {
    let Some(x) = v.get(key).filter(|x| !x.is_null()) else {
        return Ok(None);
    };
    if let Some(one) = x.as_f64() {
        return Ok(Some([one as f32; 3]));
    }
    let values: Option<Vec<f32>> = x
        .as_array()
        .map(|a| a.iter().map(|e| e.as_f64().map(|f| f as f32)).collect())
        .unwrap_or(None);
    match values.as_deref() {
        Some(&[a, b, c]) => Ok(Some([a, b, c])),
        _ => Err(format!("{key} must be three numbers (R, G, B), got {x}")),
    }
}

fn side(v: &Value, key: &str) -> Result<Option<u32>, String> {
    let Some(x) = v.get(key).filter(|x| !x.is_null()) else {
        return Ok(None);
    };
    let as_side = |n: &Value| n.as_u64().and_then(|n| u32::try_from(n).ok());
    if let Some(n) = as_side(x) {
        return Ok(Some(n));
    }
    if let Some([h, w]) = x.as_array().map(|a| a.as_slice()) {
        if let (Some(h), Some(w)) = (as_side(h), as_side(w)) {
            return if h == w {
                Ok(Some(h))
            } else {
                Err(format!(
                    "{key} is {h}x{w}: only square inputs are supported"
                ))
            };
        }
    }
    Err(format!("{key} is not an image side: {x}"))
}

fn family_named(name: &str) -> Result<ModelFamily, String> {
    match name {
        "clip" => Ok(ModelFamily::Clip),
        "blip" => Ok(ModelFamily::Blip),
        "siglip" => Ok(ModelFamily::Siglip),
        "mobileclip" => Ok(ModelFamily::Mobileclip),
        other => Err(format!(
            "family {other:?} is not one of clip, blip, siglip, mobileclip"
        )),
    }
}

fn rule_named(name: &str) -> Result<ScoringRule, String> {
    match name {
        "softmax" => Ok(ScoringRule::Softmax),
        "sigmoid" => Ok(ScoringRule::Sigmoid),
        other => Err(format!("scoring {other:?} is not softmax or sigmoid")),
    }
}

/// The resize mode `section[key]` names (`shortest`, the default, or `squash`);
/// `what` names the key in errors.
fn resize_named(section: &Value, key: &str, what: &str) -> Result<ResizeMode, String> {
    match section
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or("shortest")
    {
        "shortest" | "shortest_edge" => Ok(ResizeMode::ShortestEdge),
        "squash" => Ok(ResizeMode::Squash),
        other => Err(format!(
            "{what} {other:?} is not supported (shortest or squash)"
        )),
    }
}

fn interpolation_named(name: &str) -> Result<Interpolation, String> {
    match name {
        "bicubic" => Ok(Interpolation::Bicubic),
        "bilinear" => Ok(Interpolation::Bilinear),
        other => Err(format!(
            "interpolation {other:?} is not supported (bicubic or bilinear)"
        )),
    }
}

/// Our export's `model.json` (`models/export/`).
fn from_our_model_json(json: &Value) -> Result<ModelDescription, String> {
    let pre = json
        .get("preprocess")
        .ok_or("has no \"preprocess\" section")?;
    let source = json.get("source").and_then(Value::as_str).unwrap_or("hf");
    let size = side(pre, "size")?
        .or(side(json, "image_size")?)
        .ok_or("gives no preprocess.size")?;
    let mut p = PreprocessConfig {
        resize_shortest_edge: side(pre, "resize_shortest_edge")?.unwrap_or(size),
        crop_size: size,
        ..PreprocessConfig::default()
    };
    p.resize = resize_named(pre, "resize", "preprocess.resize")?;
    if let Some(name) = pre.get("interpolation").and_then(Value::as_str) {
        p.interpolation = interpolation_named(name)?;
    }
    p.crop_offset = match pre.get("crop_offset").and_then(Value::as_str) {
        Some("floor") => CropOffset::Floor,
        Some("round") => CropOffset::Round,
        Some(other) => {
            return Err(format!(
                "preprocess.crop_offset {other:?} is not floor or round"
            ))
        }
        // OpenCLIP's transforms are torchvision's.
        None if source == "openclip" => CropOffset::Round,
        None => CropOffset::Floor,
    };
    p.mean = triple(pre, "mean")?.unwrap_or(CLIP_MEAN);
    p.std = triple(pre, "std")?.unwrap_or(CLIP_STD);
    let logit_bias = number(json, "logit_bias")?.map(|b| b as f32);
    let rule = match json.get("scoring").and_then(Value::as_str) {
        Some(name) => rule_named(name)?,
        None if logit_bias.is_some() => ScoringRule::Sigmoid,
        None => ScoringRule::Softmax,
    };
    Ok(ModelDescription {
        family: family_named(json.get("family").and_then(Value::as_str).unwrap_or("clip"))?,
        preprocess: p,
        rule: Some(rule),
        logit_scale: number(json, "logit_scale")?.map(|s| s as f32),
        logit_bias,
        origin: String::new(),
    })
}

/// OpenCLIP's `open_clip_config.json` (a hub checkpoint's): `model_cfg` and
/// `preprocess_cfg` (OpenCLIP's defaults where a key is missing).
fn from_open_clip_config(json: &Value) -> Result<ModelDescription, String> {
    let model_cfg = json.get("model_cfg").unwrap_or(&Value::Null);
    let vision = model_cfg.get("vision_cfg").unwrap_or(&Value::Null);
    let pre = json.get("preprocess_cfg").unwrap_or(&Value::Null);
    let size = side(pre, "size")?
        .or(side(vision, "image_size")?)
        .unwrap_or(224);
    let mut p = PreprocessConfig {
        resize_shortest_edge: size,
        crop_size: size,
        crop_offset: CropOffset::Round,
        ..PreprocessConfig::default()
    };
    p.resize = resize_named(pre, "resize_mode", "preprocess_cfg.resize_mode")?;
    if let Some(name) = pre.get("interpolation").and_then(Value::as_str) {
        p.interpolation = interpolation_named(name)?;
    }
    p.mean = triple(pre, "mean")?.unwrap_or(CLIP_MEAN);
    p.std = triple(pre, "std")?.unwrap_or(CLIP_STD);
    let timm = vision
        .get("timm_model_name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let sigmoid = model_cfg
        .get("init_logit_bias")
        .is_some_and(|b| !b.is_null());
    let family = if sigmoid {
        ModelFamily::Siglip
    } else if timm.contains("fastvit") || timm.contains("mci") {
        ModelFamily::Mobileclip
    } else {
        ModelFamily::Clip
    };
    Ok(ModelDescription {
        family,
        preprocess: p,
        rule: Some(if sigmoid {
            ScoringRule::Sigmoid
        } else {
            ScoringRule::Softmax
        }),
        // The learned values live in the checkpoint, not the config.
        logit_scale: None,
        logit_bias: None,
        origin: String::new(),
    })
}

/// Hugging Face's `preprocessor_config.json` (an image processor's `save_pretrained`).
fn from_hf_preprocessor_config(json: &Value) -> Result<ModelDescription, String> {
    let flag = |key: &str, default: bool| json.get(key).and_then(Value::as_bool).unwrap_or(default);
    let processor = json
        .get("image_processor_type")
        .and_then(Value::as_str)
        .unwrap_or("");
    let family = if processor.starts_with("Siglip") {
        ModelFamily::Siglip
    } else if processor.starts_with("Blip") {
        ModelFamily::Blip
    } else {
        ModelFamily::Clip
    };
    if !flag("do_resize", true) {
        return Err("do_resize is false: frames of any size need a resize".into());
    }
    let size = json.get("size").unwrap_or(&Value::Null);
    let mut p = PreprocessConfig::default();
    let shortest = side(size, "shortest_edge")?;
    let (height, width) = (side(size, "height")?, side(size, "width")?);
    let whole = size.as_u64().and_then(|n| u32::try_from(n).ok());
    match (shortest, height, width, whole) {
        (Some(s), None, None, None) => p.resize_shortest_edge = s,
        (None, Some(h), Some(w), None) if h == w => {
            p.resize = ResizeMode::Squash;
            p.resize_shortest_edge = h;
        }
        (None, None, None, Some(s)) => p.resize_shortest_edge = s,
        _ => {
            return Err(format!(
                "size {size} is not supported (shortest_edge, or equal height and width)"
            ))
        }
    }
    p.crop_size = p.resize_shortest_edge;
    if flag("do_center_crop", false) {
        let crop = json.get("crop_size").unwrap_or(&Value::Null);
        let crop_side = match (side(crop, "height")?, side(crop, "width")?, crop.as_u64()) {
            (Some(h), Some(w), _) if h == w => h,
            (None, None, Some(s)) => {
                u32::try_from(s).map_err(|_| format!("crop_size {s} too large"))?
            }
            _ => return Err(format!("crop_size {crop} is not a square")),
        };
        if p.resize == ResizeMode::Squash && crop_side != p.resize_shortest_edge {
            return Err(format!(
                "a squash resize to {} followed by a {crop_side} crop is not supported",
                p.resize_shortest_edge
            ));
        }
        p.crop_size = crop_side;
    }
    p.interpolation = match json.get("resample").and_then(Value::as_u64).unwrap_or(3) {
        2 => Interpolation::Bilinear,
        3 => Interpolation::Bicubic,
        other => {
            return Err(format!(
                "resample {other} is not supported (2 bilinear, 3 bicubic)"
            ))
        }
    };
    if !flag("do_rescale", true) {
        return Err("do_rescale is false: the runtime always scales pixels by 1/255".into());
    }
    if let Some(factor) = number(json, "rescale_factor")? {
        if (factor - 1.0 / 255.0).abs() > 1e-12 {
            return Err(format!("rescale_factor {factor} is not 1/255"));
        }
    }
    if flag("do_normalize", true) {
        p.mean = triple(json, "image_mean")?.unwrap_or(CLIP_MEAN);
        p.std = triple(json, "image_std")?.unwrap_or(CLIP_STD);
    } else {
        p.mean = [0.0; 3];
        p.std = [1.0; 3];
    }
    Ok(ModelDescription {
        family,
        preprocess: p,
        rule: Some(if family == ModelFamily::Siglip {
            ScoringRule::Sigmoid
        } else {
            ScoringRule::Softmax
        }),
        logit_scale: None,
        logit_bias: None,
        origin: String::new(),
    })
}
