//! What every tokenizer gives a text tower: one [`TokenRow`] per prompt, through
//! the [`PromptTokenizer`] trait.

use super::TokenizerError;

/// One prompt as a text tower reads it: token ids over the tower's whole context
/// (padding included), and how many leading positions are the prompt's own (its
/// attention mask's ones; CLIP: up to and including the EOT).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRow {
    ids: Vec<i64>,
    len: usize,
}

impl TokenRow {
    /// A row of `ids` whose first `len` positions are the prompt's; `len` is
    /// clamped to the row (a prompt fills at least one position).
    pub fn new(ids: Vec<i64>, len: usize) -> Self {
        let len = len.clamp(1.min(ids.len()), ids.len());
        TokenRow { ids, len }
    }

    /// The ids at every position.
    pub fn ids(&self) -> &[i64] {
        &self.ids
    }

    /// Positions that are the prompt's own; the rest is padding.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the row has no positions at all.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The prompt's own ids, without the padding.
    pub fn tokens(&self) -> &[i64] {
        &self.ids[..self.len]
    }
}

/// A tokenizer that turns prompts into the rows a text tower reads.
pub trait PromptTokenizer: Sync {
    /// Positions of every row.
    fn context_length(&self) -> usize;

    /// The row of one prompt, [`context_length`](Self::context_length) long.
    fn tokenize_row(&self, text: &str) -> Result<TokenRow, TokenizerError>;
}
