//! A model's own `tokenizer.json` (Hugging Face's format: BLIP's WordPiece,
//! SigLIP's SentencePiece, ...), run by Hugging Face's `tokenizers` crate with the
//! family's fixed length: truncated to it (special tokens kept), padded to it on
//! the right with the pad id, as `tokenizer(texts, padding="max_length",
//! max_length=N, truncation=True)` does in Python. SigLIP's Python tokenizer also
//! rewrites the text before its SentencePiece model sees it, which no
//! `tokenizer.json` records: [`Canonicalize::SigLip`].

use std::path::{Path, PathBuf};

use tokenizers::{
    PaddingDirection, PaddingParams, PaddingStrategy, Tokenizer, TruncationDirection,
    TruncationParams, TruncationStrategy,
};

use super::{PromptTokenizer, TokenRow, TokenizerError};

/// How a family pads and truncates its prompts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubTokenizerSpec {
    /// Positions per row: BLIP 35, SigLIP 64.
    pub context_length: usize,
    /// The id padding is filled with (BERT's `[PAD]` 0, SigLIP's `</s>` 1).
    pub pad_id: u32,
    /// What happens to the text before `tokenizer.json` sees it.
    pub canonicalize: Canonicalize,
}

/// Text rewriting a family's Python tokenizer does outside its `tokenizer.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Canonicalize {
    /// None: the file is the whole tokenizer (BERT/BLIP).
    #[default]
    None,
    /// `SiglipTokenizer.canonicalize_text` (big_vision's): lower case, the 32 ASCII
    /// punctuation characters removed, runs of white space made one space,
    /// stripped.
    SigLip,
}

impl Canonicalize {
    /// `text` as the family's tokenizer model receives it.
    pub fn apply(self, text: &str) -> std::borrow::Cow<'_, str> {
        match self {
            Canonicalize::None => text.into(),
            Canonicalize::SigLip => {
                let lower = text.to_lowercase();
                let mut out = String::with_capacity(lower.len());
                let mut space = false;
                for c in lower.chars().filter(|c| !c.is_ascii_punctuation()) {
                    if super::py_isspace(c) {
                        space = true;
                        continue;
                    }
                    if space && !out.is_empty() {
                        out.push(' ');
                    }
                    space = false;
                    out.push(c);
                }
                out.into()
            }
        }
    }
}

/// A `tokenizer.json` with a family's padding and truncation.
pub struct HubTokenizer {
    inner: Tokenizer,
    spec: HubTokenizerSpec,
    path: PathBuf,
}

impl HubTokenizer {
    /// Loads `path` and sets its truncation and padding from `spec`, replacing any
    /// the file carries.
    pub fn load(path: &Path, spec: HubTokenizerSpec) -> Result<Self, TokenizerError> {
        let invalid = |problem: String| TokenizerError::File {
            path: path.to_path_buf(),
            problem,
            source: None,
        };
        let mut inner = Tokenizer::from_file(path).map_err(|source| TokenizerError::File {
            path: path.to_path_buf(),
            problem: "is not a tokenizer.json that Hugging Face's tokenizers reads".into(),
            source: Some(source),
        })?;
        if spec.context_length < 2 {
            return Err(invalid(format!(
                "a context of {} positions leaves no room for a prompt",
                spec.context_length
            )));
        }
        let vocab = inner.get_vocab_size(true);
        let Some(pad_token) = inner.id_to_token(spec.pad_id) else {
            return Err(invalid(format!(
                "has no token with the pad id {} (vocabulary of {vocab})",
                spec.pad_id
            )));
        };
        inner
            .with_truncation(Some(TruncationParams {
                direction: TruncationDirection::Right,
                max_length: spec.context_length,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
            }))
            .map_err(|source| TokenizerError::File {
                path: path.to_path_buf(),
                problem: format!("cannot truncate to {} positions", spec.context_length),
                source: Some(source),
            })?;
        inner.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::Fixed(spec.context_length),
            direction: PaddingDirection::Right,
            pad_to_multiple_of: None,
            pad_id: spec.pad_id,
            pad_type_id: 0,
            pad_token,
        }));
        log::info!(
            "{}: vocabulary of {vocab}, rows of {} padded with id {}",
            path.display(),
            spec.context_length,
            spec.pad_id
        );
        Ok(HubTokenizer {
            inner,
            spec,
            path: path.to_path_buf(),
        })
    }

    /// Tokens in the vocabulary, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The ids and attention mask of `text`, as Python's tokenizer gives them.
    pub fn encode(&self, text: &str) -> Result<(Vec<u32>, Vec<u32>), TokenizerError> {
        let encoding = self
            .inner
            .encode(self.spec.canonicalize.apply(text).as_ref(), true)
            .map_err(|source| TokenizerError::Encode {
                path: self.path.clone(),
                text: text.chars().take(80).collect(),
                source,
            })?;
        Ok((
            encoding.get_ids().to_vec(),
            encoding.get_attention_mask().to_vec(),
        ))
    }
}

impl PromptTokenizer for HubTokenizer {
    fn context_length(&self) -> usize {
        self.spec.context_length
    }

    fn tokenize_row(&self, text: &str) -> Result<TokenRow, TokenizerError> {
        let (ids, mask) = self.encode(text)?;
        let len = mask.iter().take_while(|&&m| m == 1).count();
        if ids.len() != self.spec.context_length || mask[len..].iter().any(|&m| m != 0) {
            return Err(TokenizerError::File {
                path: self.path.clone(),
                problem: format!(
                    "gave {} ids with mask {mask:?} for {text:?}, expected {} with the \
                     padding last",
                    ids.len(),
                    self.spec.context_length
                ),
                source: None,
            });
        }
        Ok(TokenRow::new(ids.into_iter().map(i64::from).collect(), len))
    }
}

impl std::fmt::Debug for HubTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubTokenizer")
            .field("path", &self.path)
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}
