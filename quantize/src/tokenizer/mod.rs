//! Tokenizers for text towers, each giving [`TokenRow`]s through [`PromptTokenizer`]: a
//! model's own `tokenizer.json` ([`hub`]: BLIP, SigLIP), and CLIP's, below.
//!
//! The CLIP text tokenizer is bit-exact with OpenAI's `clip.tokenize(texts, context_length=77, truncate=True)`.
//!
//! The reference pipeline (`clip/simple_tokenizer.py`) is, for every text:
//!
//! 1. `basic_clean`: `ftfy.fix_text` (default configuration), then `html.unescape` twice, then
//!    `str.strip()`;
//! 2. `whitespace_clean`: every run of `\s` collapsed to one space, then `strip()`;
//! 3. lower case;
//! 4. split with the regex
//!    `<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+`
//!    (IGNORECASE);
//! 5. byte-level BPE of every piece with `bpe_simple_vocab_16e6` (49,408 tokens);
//! 6. `[SOT] + ids + [EOT]`, truncated to 77 with the last id forced to EOT, zero padded.
//!
//! Steps 4–5 use the [`instant_clip_tokenizer`] crate, which bundles the CLIP vocabulary and
//! implements the same byte-level BPE (merge of the lowest-ranked pair, all occurrences, left to
//! right). Its own word-splitting regex differs from the reference (it knows `<start_of_text>`
//! instead of `<|startoftext|>` and is case sensitive), so the text is split here with the
//! reference regex and every piece is passed to the crate on its own.
//!
//!
//! Step 1, `ftfy.fix_text`, is the `ftfy` submodule (`tokenizer/ftfy.rs`).
//!
//! Known departures from the Python reference (none occurs in the test fixture; the `ftfy`
//! submodule lists its own):
//!
//! * Unicode versions: the reference itself mixes them. Python 3.11's `str.lower`, `str.isspace`
//!   and `unicodedata` (NFC, NFKC) are Unicode 14, the `regex` module's `\p{L}`/`\p{N}` follow the
//!   installed `regex` release (Unicode 17 for 2026.x), while Rust's `to_lowercase` and the
//!   `regex` crate are Unicode 16. Only characters assigned after Unicode 14 are affected (e.g.
//!   Garay U+10D51 is lower-cased here but not in Python; CJK Extension J letters are letters to
//!   the Python regex but not to the Rust one). A fuzz run of 11,000 random strings agreed on
//!   every string except 14 such ones.
//! * The reference regex is case-insensitive, so `'ſ` (long s, U+017F) is one piece in Python;
//!   `instant_clip_tokenizer` would split it again with its own case-sensitive regex, so that one
//!   piece is special-cased with its reference ids.

use instant_clip_tokenizer::Tokenizer as BpeTokenizer;
use regex::bytes::Regex as BytesRegex;
use regex::Regex;

/// Id of the start-of-text token `<|startoftext|>`.
pub const SOT: i64 = 49406;
/// Id of the end-of-text token `<|endoftext|>`.
pub const EOT: i64 = 49407;
/// Number of token ids per text row, as used by every CLIP model.
pub const CONTEXT_LENGTH: usize = 77;

/// The reference word-splitting regex of `clip/simple_tokenizer.py` (compiled IGNORECASE).
const WORD_SPLIT_PATTERN: &str = r"(?i)<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+";
/// Python's `\s+` as used by `whitespace_clean` (the `regex` module: Unicode `White_Space`).
const WHITESPACE_PATTERN: &str = r"\s+";

/// Reference ids of the piece `'ſ`: `'`, then the two bytes of U+017F, the last end-of-word.
const LONG_S_CONTRACTION: [u32; 3] = [6, 129, 379];

/// Errors raised while building a [`ClipTokenizer`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenizerError {
    /// One of the built-in regular expressions failed to compile.
    #[error("built-in regular expression `{name}` does not compile: {source}")]
    Regex {
        /// Which pattern failed.
        name: &'static str,
        /// The underlying error.
        #[source]
        source: Box<regex::Error>,
    },
    /// The bundled vocabulary does not give the special-token ids CLIP uses.
    #[error("bundled vocabulary gives start/end ids {sot}/{eot}, expected {SOT}/{EOT}")]
    Vocabulary {
        /// Start-of-text id found.
        sot: u16,
        /// End-of-text id found.
        eot: u16,
    },
    /// A code-page table could not be built.
    #[error("code page `{0}` table is incomplete")]
    CodePage(&'static str),
    /// A `tokenizer.json` cannot be read or used as asked.
    #[error("{}: {problem}", path.display())]
    File {
        /// The tokenizer file.
        path: std::path::PathBuf,
        /// What is wrong.
        problem: String,
        /// The `tokenizers` crate's error, where there is one.
        #[source]
        source: Option<tokenizers::Error>,
    },
    /// A `tokenizer.json` failed on a text.
    #[error("{}: cannot tokenize {text:?}", path.display())]
    Encode {
        /// The tokenizer file.
        path: std::path::PathBuf,
        /// The text (its first 80 characters).
        text: String,
        /// The `tokenizers` crate's error.
        #[source]
        source: tokenizers::Error,
    },
}

/// Compiles one built-in pattern.
fn compile(name: &'static str, pattern: &str) -> Result<Regex, TokenizerError> {
    Regex::new(pattern).map_err(|e| TokenizerError::Regex {
        name,
        source: Box::new(e),
    })
}

/// Compiles one built-in bytes pattern.
fn compile_bytes(name: &'static str, pattern: &str) -> Result<BytesRegex, TokenizerError> {
    BytesRegex::new(pattern).map_err(|e| TokenizerError::Regex {
        name,
        source: Box::new(e),
    })
}

/// Python's `str.isspace` (Unicode `White_Space` plus the separators U+001C..U+001F).
fn py_isspace(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `str.strip()` with no argument.
fn py_strip(s: &str) -> &str {
    s.trim_matches(py_isspace)
}

mod ftfy;
pub mod hub;
mod row;
use ftfy::Ftfy;
pub use hub::{Canonicalize, HubTokenizer, HubTokenizerSpec};
pub use row::{PromptTokenizer, TokenRow};
/// A CLIP tokenizer producing the ids of OpenAI's `clip.tokenize(..., truncate=True)`.
///
/// Building one compiles a few regexes and the BPE tables, so build it once and reuse it.
pub struct ClipTokenizer {
    bpe: BpeTokenizer,
    word_split: Regex,
    whitespace: Regex,
    ftfy: Ftfy,
}

impl ClipTokenizer {
    /// Builds the tokenizer with the bundled `bpe_simple_vocab_16e6` vocabulary.
    ///
    /// # Errors
    ///
    /// [`TokenizerError`] if a built-in table or pattern is inconsistent (a programming error,
    /// not an input problem).
    pub fn new() -> Result<Self, TokenizerError> {
        let bpe = BpeTokenizer::new();
        let (sot, eot) = (bpe.start_of_text().to_u16(), bpe.end_of_text().to_u16());
        if i64::from(sot) != SOT || i64::from(eot) != EOT {
            return Err(TokenizerError::Vocabulary { sot, eot });
        }
        Ok(Self {
            bpe,
            word_split: compile("clip word split", WORD_SPLIT_PATTERN)?,
            whitespace: compile("whitespace", WHITESPACE_PATTERN)?,
            ftfy: Ftfy::new()?,
        })
    }

    /// The cleaned, lower-cased text the reference splits into words
    /// (`whitespace_clean(basic_clean(text)).lower()`).
    pub fn clean(&self, text: &str) -> String {
        let fixed = self.ftfy.fix_text(text);
        let unescaped = self.ftfy.html.unescape(&self.ftfy.html.unescape(&fixed));
        let stripped = py_strip(&unescaped);
        let collapsed = self.whitespace.replace_all(stripped, " ");
        py_strip(&collapsed).to_lowercase()
    }

    /// BPE ids of `text` (the reference `SimpleTokenizer.encode`), without SOT/EOT.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let cleaned = self.clean(text);
        let mut ids = Vec::new();
        let mut tokens = Vec::new();
        for piece in self.word_split.find_iter(&cleaned).map(|m| m.as_str()) {
            match piece {
                "<|startoftext|>" => ids.push(SOT as u32),
                "<|endoftext|>" => ids.push(EOT as u32),
                // `'s` matches `'ſ` under IGNORECASE, so the reference BPEs it as one word (bytes
                // 27 C5 BF, no merge applies); `instant_clip_tokenizer` would split it in two.
                "'\u{17f}" => ids.extend(LONG_S_CONTRACTION),
                _ => {
                    tokens.clear();
                    self.bpe.encode(piece, &mut tokens);
                    ids.extend(tokens.iter().map(|t| u32::from(t.to_u16())));
                }
            }
        }
        ids
    }

    /// One row of `clip.tokenize(text, context_length=77, truncate=True)`: SOT, the BPE ids,
    /// EOT, zero padding; over-long input is cut to 77 ids with the last one forced to EOT.
    pub fn tokenize(&self, text: &str) -> [i64; CONTEXT_LENGTH] {
        let mut row = [0i64; CONTEXT_LENGTH];
        row[0] = SOT;
        let ids = self.encode(text);
        let n = ids.len().min(CONTEXT_LENGTH - 1);
        for (slot, id) in row[1..].iter_mut().zip(ids.iter()) {
            *slot = i64::from(*id);
        }
        if n + 1 < CONTEXT_LENGTH {
            row[n + 1] = EOT;
        } else {
            row[CONTEXT_LENGTH - 1] = EOT;
        }
        row
    }

    /// [`ClipTokenizer::tokenize`] as a [`TokenRow`]: its prompt runs up to and
    /// including the EOT.
    pub fn tokenize_row(&self, text: &str) -> TokenRow {
        let row = self.tokenize(text);
        let len = row
            .iter()
            .position(|&t| t == EOT)
            .map_or(CONTEXT_LENGTH, |at| at + 1);
        TokenRow::new(row.to_vec(), len)
    }

    /// [`ClipTokenizer::tokenize`] for each text, in order.
    pub fn tokenize_batch(&self, texts: &[&str]) -> Vec<[i64; CONTEXT_LENGTH]> {
        texts.iter().map(|t| self.tokenize(t)).collect()
    }
}

impl PromptTokenizer for ClipTokenizer {
    fn context_length(&self) -> usize {
        CONTEXT_LENGTH
    }

    fn tokenize_row(&self, text: &str) -> Result<TokenRow, TokenizerError> {
        Ok(ClipTokenizer::tokenize_row(self, text))
    }
}

impl std::fmt::Debug for ClipTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClipTokenizer").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tok() -> ClipTokenizer {
        ClipTokenizer::new().expect("tokenizer builds")
    }

    #[test]
    fn sot_eot_padding() {
        let row = tok().tokenize("a photo of a cat");
        assert_eq!(row[0], SOT);
        assert_eq!(&row[1..6], &[320, 1125, 539, 320, 2368]);
        assert_eq!(row[6], EOT);
        assert!(row[7..].iter().all(|&x| x == 0));
    }

    #[test]
    fn empty_text() {
        let row = tok().tokenize("");
        assert_eq!(&row[..3], &[SOT, EOT, 0]);
        assert_eq!(tok().tokenize("  \t\n "), row);
    }

    #[test]
    fn truncation() {
        let text = "cat ".repeat(200);
        let row = tok().tokenize(&text);
        assert_eq!(row[0], SOT);
        assert_eq!(row[CONTEXT_LENGTH - 1], EOT);
        assert!(row[1..CONTEXT_LENGTH - 1].iter().all(|&x| x == 2368));
        // Exactly 75 words fit without truncation.
        let text = "cat ".repeat(75);
        let row = tok().tokenize(&text);
        assert_eq!(row[75], 2368);
        assert_eq!(row[76], EOT);
    }

    #[test]
    fn special_tokens_and_batch() {
        let t = tok();
        assert_eq!(
            t.encode("<|startoftext|>hi<|endoftext|>"),
            vec![49406, 1883, 49407]
        );
        let rows = t.tokenize_batch(&["a", "b"]);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0], t.tokenize("a"));
    }

    #[test]
    fn ftfy_cleanup() {
        let t = tok();
        assert_eq!(t.clean("caf\u{c3}\u{a9}"), "café");
        assert_eq!(t.clean("don\u{e2}\u{20ac}\u{2122}t"), "don't");
        assert_eq!(t.clean("\u{fb01}sh &amp;amp; \u{ff21}"), "fish & a");
        assert_eq!(t.clean("&EACUTE;t&eacute"), "\u{e9}t\u{e9}");
    }
}
