//! How a text tower wants its prompts: CLIP's own tokenizer (CLIP, OpenCLIP,
//! MobileCLIP: 77 positions, exact), or the model's `tokenizer.json` with its
//! family's length, padding and text rewriting (BLIP: 35 positions padded with
//! `[PAD]`, attention mask; SigLIP: 64 positions padded with `</s>`, text
//! canonicalized). Read from `--family` and `--tokenizer`, our export's
//! `model.json` (`family` and its `text` section), and a `tokenizer.json` beside
//! the text model or one folder up.

use std::path::{Path, PathBuf};

use clip_edge_bundle::ModelFamily;
use serde_json::Value;

use crate::model_description::DescribeError;
use crate::tokenizer::{Canonicalize, HubTokenizerSpec, CONTEXT_LENGTH};

/// Vocabulary size of CLIP's BPE: a `tokenizer.json` of another size beside a text
/// tower is not CLIP's.
pub const CLIP_VOCAB_SIZE: usize = 49408;

/// The tokenizer a text tower takes its prompts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenizerChoice {
    /// CLIP's BPE, id for id with OpenAI's `clip.tokenize` (77 positions).
    Clip,
    /// The model's own `tokenizer.json`, with its family's padding.
    Hub {
        /// The `tokenizer.json`.
        file: PathBuf,
        /// Length, pad id and text rewriting.
        spec: HubTokenizerSpec,
    },
}

impl TokenizerChoice {
    /// Positions of every tokenized prompt.
    pub fn context_length(&self) -> usize {
        match self {
            TokenizerChoice::Clip => CONTEXT_LENGTH,
            TokenizerChoice::Hub { spec, .. } => spec.context_length,
        }
    }
}

/// What is known of how a text tower wants its prompts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextDescription {
    /// The family.
    pub family: ModelFamily,
    /// Its tokenizer.
    pub tokenizer: TokenizerChoice,
    /// Where the description came from, for messages.
    pub origin: String,
}

/// What the command line says about the text tower (`clip-quantize labels`).
#[derive(Debug, Clone, Default)]
pub struct TextRequest<'a> {
    /// `--family`.
    pub family: Option<ModelFamily>,
    /// `--tokenizer`.
    pub tokenizer: Option<&'a Path>,
    /// `--context-length`.
    pub context_length: Option<usize>,
    /// `--pad-id`.
    pub pad_id: Option<u32>,
}

/// The tokenizer spec of a family whose prompts go through their own
/// `tokenizer.json`; `None` for the families on CLIP's tokenizer.
pub fn family_spec(family: ModelFamily) -> Option<HubTokenizerSpec> {
    match family {
        ModelFamily::Clip | ModelFamily::Mobileclip => None,
        ModelFamily::Blip => Some(HubTokenizerSpec {
            context_length: 35,
            pad_id: 0,
            canonicalize: Canonicalize::None,
        }),
        ModelFamily::Siglip => Some(HubTokenizerSpec {
            context_length: 64,
            pad_id: 1,
            canonicalize: Canonicalize::SigLip,
        }),
    }
}

/// How the text tower at `text_model` wants its prompts: `request` first, then our
/// `model.json` beside it (or one folder up), then CLIP's tokenizer, unless a
/// `tokenizer.json` that is not CLIP's sits beside the model (then the family
/// must be said).
pub fn describe_text(
    text_model: &Path,
    request: &TextRequest,
) -> Result<TextDescription, DescribeError> {
    let model_err = |message: String| DescribeError::Model {
        model: text_model.to_path_buf(),
        message,
    };
    let config = find_model_json(text_model)
        .map(|path| read_model_json(&path).map(|json| (path, json)))
        .transpose()?;
    let config_family = match &config {
        Some((path, json)) => json
            .get("family")
            .and_then(Value::as_str)
            .map(|name| family_named(name, path))
            .transpose()?,
        None => None,
    };
    let (family, mut origin) = match (request.family, config_family, &config) {
        (Some(family), ..) => (family, "--family".to_string()),
        (None, Some(family), Some((path, _))) => (family, path.display().to_string()),
        _ => (
            ModelFamily::Clip,
            "CLIP's tokenizer (nothing else said)".to_string(),
        ),
    };
    let Some(mut spec) = family_spec(family) else {
        if request.tokenizer.is_some()
            || request.context_length.is_some()
            || request.pad_id.is_some()
        {
            return Err(model_err(format!(
                "{} models take CLIP's own tokenizer (77 positions, exact with OpenAI's); \
                 --tokenizer, --context-length and --pad-id are for --family blip or siglip",
                family.name()
            )));
        }
        if request.family.is_none() && config_family.is_none() {
            if let Some(file) = find_tokenizer_json(text_model) {
                let vocab = vocab_size(&file)?;
                if vocab != CLIP_VOCAB_SIZE {
                    return Err(model_err(format!(
                        "{} (a vocabulary of {vocab}, not CLIP's {CLIP_VOCAB_SIZE}) sits \
                         beside it: say which family the model is, --family blip or siglip \
                         (or clip to use CLIP's tokenizer anyway)",
                        file.display()
                    )));
                }
            }
        }
        return Ok(TextDescription {
            family,
            tokenizer: TokenizerChoice::Clip,
            origin,
        });
    };
    let text = config
        .as_ref()
        .and_then(|(path, json)| json.get("text").map(|text| (path, text)));
    let mut file = None;
    if let Some((path, text)) = text {
        let field = |key: &str| -> Result<Option<u64>, DescribeError> {
            match text.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => v.as_u64().map(Some).ok_or_else(|| DescribeError::Read {
                    path: path.clone(),
                    message: format!("text.{key} is {v}, expected a whole number"),
                }),
            }
        };
        if let Some(length) = field("context_length")? {
            spec.context_length = usize::try_from(length).unwrap_or(usize::MAX);
        }
        if let Some(pad) = field("pad_token_id")? {
            spec.pad_id = u32::try_from(pad).map_err(|_| DescribeError::Read {
                path: path.clone(),
                message: format!("text.pad_token_id {pad} is not a token id"),
            })?;
        }
        if let Some(name) = text.get("tokenizer_file").and_then(Value::as_str) {
            let dir = path.parent().unwrap_or(Path::new("."));
            file = Some(dir.join(name));
        }
    }
    if let Some(length) = request.context_length {
        spec.context_length = length;
        origin.push_str(", --context-length");
    }
    if let Some(pad) = request.pad_id {
        spec.pad_id = pad;
        origin.push_str(", --pad-id");
    }
    let file = match request.tokenizer {
        Some(path) => path.to_path_buf(),
        None => match file.or_else(|| find_tokenizer_json(text_model)) {
            Some(file) => file,
            None => {
                return Err(model_err(format!(
                    "a {} text tower takes its prompts through the model's own \
                     tokenizer.json, and none is beside it (or one folder up): pass \
                     --tokenizer FILE",
                    family.name()
                )))
            }
        },
    };
    Ok(TextDescription {
        family,
        tokenizer: TokenizerChoice::Hub { file, spec },
        origin,
    })
}

/// Our export's `model.json` in the model's folder or the one above it.
fn find_model_json(model: &Path) -> Option<PathBuf> {
    crate::model_description::find_config(model).filter(|p| p.ends_with("model.json"))
}

/// A `tokenizer.json` in the model's folder or the one above it.
fn find_tokenizer_json(model: &Path) -> Option<PathBuf> {
    let dir = model.parent()?;
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    [Some(dir), dir.parent()]
        .into_iter()
        .flatten()
        .map(|d| d.join("tokenizer.json"))
        .find(|p| p.is_file())
}

fn read_model_json(path: &Path) -> Result<Value, DescribeError> {
    let err = |message: String| DescribeError::Read {
        path: path.to_path_buf(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    serde_json::from_str(&text).map_err(|e| err(format!("not JSON: {e}")))
}

fn family_named(name: &str, path: &Path) -> Result<ModelFamily, DescribeError> {
    serde_json::from_value(Value::String(name.to_string())).map_err(|_| DescribeError::Read {
        path: path.to_path_buf(),
        message: format!("family {name:?} is not one of clip, blip, siglip, mobileclip"),
    })
}

/// The vocabulary size of a `tokenizer.json`, added tokens included.
fn vocab_size(file: &Path) -> Result<usize, DescribeError> {
    tokenizers::Tokenizer::from_file(file)
        .map(|t| t.get_vocab_size(true))
        .map_err(|e| DescribeError::Read {
            path: file.to_path_buf(),
            message: format!("is not a tokenizer.json that Hugging Face's tokenizers reads: {e}"),
        })
}
