//! A port of `ftfy.fix_text` 6.3.1 (the version `openai-clip` pulls in), the first step of
//! the CLIP tokenizer's `basic_clean`, with ftfy's default
//! [`TextFixerConfig`](https://ftfy.readthedocs.io/en/latest/config.html): per-line
//! segments (with ftfy's sticky "a `<` was seen, stop unescaping HTML" behaviour), ftfy's own
//! HTML entity unescaping (including upper-case entities such as `&EACUTE;`), mojibake repair
//! (ftfy's `badness` heuristic, then UTF-8 that was decoded as Latin-1, sloppy Windows-1250/
//! 1251/1252/1253/1254/1257, ISO-8859-2, MacRoman or CP437, with `restore_byte_a0`,
//! `replace_lossy_sequences`, the `utf-8-variants` decoder (CESU-8 and Java's `C0 80`),
//! `decode_inconsistent_utf8` and `fix_c1_controls`), Latin ligatures, full-width to half-width,
//! uncurled quotes, line-break fixing, terminal-escape and control-character removal and NFC,
//! repeated until nothing changes. ftfy's regexes are transcribed below; the code pages come from
//! `encoding_rs` (WHATWG tables, with ftfy's "sloppy" rule of mapping undefined bytes to Latin-1
//! and byte 0x1A to U+FFFD) and `oem_cp` (CP437); NFC/NFKC from `unicode-normalization`; the HTML
//! entity table from `htmlize`, driven by a port of Python's `html.unescape` (numeric references
//! with or without `;`, the replacement table for C1 and invalid code points, named entities
//! without `;` by longest prefix).
//!
//! Departures from ftfy (the tokenizer's module doc lists those of the whole pipeline):
//!
//! * Unpaired UTF-16 surrogates cannot exist in a Rust `&str`, so ftfy's `fix_surrogates` is a
//!   no-op and a mojibake candidate that would decode to a lone surrogate (CESU-8 half) is
//!   rejected, where the Python `utf-8-variants` codec might keep it.
//! * Python's `\w` (used in one `badness` rule) is approximated by `[\p{L}\p{N}_]`.
//!
//! Over 600 lines in one file on purpose: most of it is ftfy's tables and regexes,
//! transcribed in ftfy's order so they can be checked against ftfy line by line.

use std::collections::HashMap;

use regex::bytes::Regex as BytesRegex;
use regex::Regex;
use unicode_normalization::UnicodeNormalization;

use super::{compile, compile_bytes, TokenizerError};

/// Python's `html._charref`.
const HTML_CHARREF_PATTERN: &str = r"&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\x0C <&#;]{1,32};?)";
/// ftfy's `HTML_ENTITY_RE`.
const FTFY_ENTITY_PATTERN: &str = r"&#?[0-9A-Za-z]{1,24};";
/// ftfy's `ANSI_RE` (terminal escapes).
const ANSI_PATTERN: &str = r"\x1b\[((?:\d|;)*)([a-zA-Z])";
/// ftfy's `ALTERED_UTF8_RE` (bytes).
const ALTERED_UTF8_PATTERN: &str = r"(?-u)[\xc2\xc3\xc5\xce\xd0\xd9][ ]|[\xe2\xe3][ ][\x80-\x84\x86-\x9f\xa1-\xbf]|[\xe0-\xe3][\x80-\x84\x86-\x9f\xa1-\xbf][ ]|[\xf0][ ][\x80-\xbf][\x80-\xbf]|[\xf0][\x80-\xbf][ ][\x80-\xbf]|[\xf0][\x80-\xbf][\x80-\xbf][ ]";
/// ftfy's `LOSSY_UTF8_RE` (bytes).
const LOSSY_UTF8_PATTERN: &str = r"(?-u)[\xc2-\xdf][\x1a]|[\xc2-\xc3][?]|\xed[\xa0-\xaf][\x1a?]\xed[\xb0-\xbf][\x1a?\x80-\xbf]|\xed[\xa0-\xaf][\x1a?\x80-\xbf]\xed[\xb0-\xbf][\x1a?]|[\xe0-\xef][\x1a?][\x1a\x80-\xbf]|[\xe0-\xef][\x1a\x80-\xbf][\x1a?]|[\xf0-\xf4][\x1a?][\x1a\x80-\xbf][\x1a\x80-\xbf]|[\xf0-\xf4][\x1a\x80-\xbf][\x1a?][\x1a\x80-\xbf]|[\xf0-\xf4][\x1a\x80-\xbf][\x1a\x80-\xbf][\x1a?]|\x1a";

/// ftfy's `LIGATURES` table.
const LIGATURES: &[(char, &str)] = &[
    ('\u{132}', "IJ"),
    ('\u{133}', "ij"),
    ('\u{149}', "\u{2bc}n"),
    ('\u{1f1}', "DZ"),
    ('\u{1f2}', "Dz"),
    ('\u{1f3}', "dz"),
    ('\u{1c4}', "D\u{17d}"),
    ('\u{1c5}', "D\u{17e}"),
    ('\u{1c6}', "d\u{17e}"),
    ('\u{1c7}', "LJ"),
    ('\u{1c8}', "Lj"),
    ('\u{1c9}', "lj"),
    ('\u{1ca}', "NJ"),
    ('\u{1cb}', "Nj"),
    ('\u{1cc}', "nj"),
    ('\u{fb00}', "ff"),
    ('\u{fb01}', "fi"),
    ('\u{fb02}', "fl"),
    ('\u{fb03}', "ffi"),
    ('\u{fb04}', "ffl"),
    ('\u{fb05}', "\u{17f}t"),
    ('\u{fb06}', "st"),
];

/// A single-byte code page as ftfy uses it.
struct CodePage {
    /// ftfy's name for it.
    name: &'static str,
    /// Byte -> character.
    decode: [char; 256],
    /// Character -> byte, for the characters ftfy's `possible_encoding` accepts.
    encode: HashMap<char, u8>,
}

impl CodePage {
    /// Builds the table; `decode` must give the character of bytes 0x80..=0xFF and 0x1A.
    fn new(name: &'static str, decode: [char; 256]) -> Self {
        let mut encode = HashMap::new();
        for b in (0u8..=0x7f).filter(|&b| b != 0x1a) {
            encode.insert(char::from(b), b);
        }
        for b in (0x80u8..=0xff).chain([0x1a]) {
            encode.entry(decode[usize::from(b)]).or_insert(b);
        }
        Self {
            name,
            decode,
            encode,
        }
    }

    /// `text.encode(codepage)` when every character is encodable (ftfy's `possible_encoding`).
    fn encode(&self, text: &str) -> Option<Vec<u8>> {
        text.chars().map(|c| self.encode.get(&c).copied()).collect()
    }
}

/// Decodes every byte with an `encoding_rs` single-byte encoding, ftfy-"sloppy" style.
fn sloppy_table(name: &'static str, enc: &'static encoding_rs::Encoding) -> CodePage {
    let mut table = [char::from(0u8); 256];
    for (b, slot) in (0u8..=255).zip(table.iter_mut()) {
        let buf = [b];
        let (decoded, had_errors) = enc.decode_without_bom_handling(&buf);
        let mut chars = decoded.chars();
        *slot = match (had_errors, chars.next(), chars.next()) {
            (false, Some(c), None) => c,
            _ => char::from(b),
        };
    }
    table[0x1a] = '\u{fffd}';
    CodePage::new(name, table)
}

/// The ten code pages of ftfy's `CHARMAP_ENCODINGS`, in its order.
fn code_pages() -> Result<Vec<CodePage>, TokenizerError> {
    let latin1: [char; 256] = std::array::from_fn(|i| char::from(i as u8));
    let mut iso2 = sloppy_table("iso-8859-2", encoding_rs::ISO_8859_2);
    iso2.decode[0x1a] = '\u{1a}';
    let iso2 = CodePage::new("iso-8859-2", iso2.decode);
    let mut mac = sloppy_table("macroman", encoding_rs::MACINTOSH);
    mac.decode[0x1a] = '\u{1a}';
    let mac = CodePage::new("macroman", mac.decode);
    let mut cp437 = latin1;
    for (slot, c) in cp437[0x80..]
        .iter_mut()
        .zip(oem_cp::code_table::DECODING_TABLE_CP437.iter())
    {
        *slot = *c;
    }
    if oem_cp::code_table::DECODING_TABLE_CP437.len() != 128 {
        return Err(TokenizerError::CodePage("cp437"));
    }
    Ok(vec![
        CodePage::new("latin-1", latin1),
        sloppy_table("sloppy-windows-1252", encoding_rs::WINDOWS_1252),
        sloppy_table("sloppy-windows-1251", encoding_rs::WINDOWS_1251),
        sloppy_table("sloppy-windows-1250", encoding_rs::WINDOWS_1250),
        sloppy_table("sloppy-windows-1253", encoding_rs::WINDOWS_1253),
        sloppy_table("sloppy-windows-1254", encoding_rs::WINDOWS_1254),
        sloppy_table("sloppy-windows-1257", encoding_rs::WINDOWS_1257),
        iso2,
        mac,
        CodePage::new("cp437", cp437),
    ])
}

/// Python's `html.unescape`, entity table from `htmlize`.
pub(super) struct HtmlUnescaper {
    /// `_charref`.
    charref: Regex,
    /// Strict-ish cp1252 for `_invalid_charrefs` 0x80..=0x9F.
    c1: [char; 32],
}

impl HtmlUnescaper {
    /// Looks a name (without `&`) up in the HTML5 table.
    fn entity(name: &str) -> Option<&'static str> {
        let key = format!("&{name}");
        htmlize::ENTITIES
            .get(key.as_bytes())
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Python's `html._replace_charref` for the group `s`.
    fn replace(&self, s: &str) -> String {
        if let Some(num) = s.strip_prefix('#') {
            let (digits, radix) = match num.strip_prefix(['x', 'X']) {
                Some(hex) => (hex, 16),
                None => (num, 10),
            };
            let digits = digits.trim_end_matches(';');
            let mut value: u64 = 0;
            for d in digits.chars() {
                let v = u64::from(d.to_digit(radix).unwrap_or(0));
                value = value.saturating_mul(radix.into()).saturating_add(v);
            }
            if value == 0 {
                return "\u{fffd}".to_owned();
            }
            if value == 0x0d {
                return "\r".to_owned();
            }
            if (0x80..=0x9f).contains(&value) {
                return self.c1[(value - 0x80) as usize].to_string();
            }
            if (0xd800..=0xdfff).contains(&value) || value > 0x10ffff {
                return "\u{fffd}".to_owned();
            }
            let invalid = (0x1..=0x8).contains(&value)
                || value == 0xb
                || (0xe..=0x1f).contains(&value)
                || (0x7f..=0x9f).contains(&value)
                || (0xfdd0..=0xfdef).contains(&value)
                || (value & 0xfffe) == 0xfffe;
            if invalid {
                return String::new();
            }
            return char::from_u32(value as u32)
                .map(String::from)
                .unwrap_or_else(|| "\u{fffd}".to_owned());
        }
        if let Some(v) = Self::entity(s) {
            return v.to_owned();
        }
        let boundaries: Vec<usize> = s.char_indices().map(|(i, _)| i).collect();
        for &end in boundaries.iter().skip(2).rev() {
            if let Some(v) = Self::entity(&s[..end]) {
                return format!("{v}{}", &s[end..]);
            }
        }
        format!("&{s}")
    }

    /// Python's `html.unescape(s)`.
    pub(super) fn unescape(&self, s: &str) -> String {
        if !s.contains('&') {
            return s.to_owned();
        }
        self.charref
            .replace_all(s, |caps: &regex::Captures<'_>| {
                self.replace(caps.get(1).map_or("", |m| m.as_str()))
            })
            .into_owned()
    }
}

/// A port of `ftfy.fix_text` (6.3.1, default configuration).
pub(super) struct Ftfy {
    pub(super) html: HtmlUnescaper,
    /// ftfy's `HTML_ENTITIES`: `&name;` and upper-case variants.
    entities: HashMap<String, String>,
    entity_re: Regex,
    ansi: Regex,
    badness: Regex,
    utf8_detector: Regex,
    continuation_strict: Regex,
    altered_utf8: BytesRegex,
    lossy_utf8: BytesRegex,
    pages: Vec<CodePage>,
    width: HashMap<char, String>,
    ligatures: HashMap<char, &'static str>,
}

/// Transcribed from ftfy 6.3.1 (`BADNESS_PATTERN`), non-ASCII characters written as escapes.
const BADNESS_PATTERN: &str = r"[\x{80}-\x{9f}]|[\x{a6}\x{a4}\x{a8}\x{ac}\x{af}\x{b8}\x{192}\x{2c6}\x{2c7}\x{2d8}\x{2db}\x{2dc}\x{2020}\x{2021}\x{2030}\x{2310}\x{25ca}\x{fffd}\x{aa}\x{ba}\x{df}\x{e0}-\x{f1}\x{103}\x{105}\x{101}\x{107}\x{10d}\x{10f}\x{111}\x{119}\x{11b}\x{113}\x{117}\x{11f}\x{123}\x{12f}\x{12b}\x{137}\x{13a}\x{13e}\x{142}\x{13c}\x{153}\x{155}\x{15b}\x{15f}\x{161}\x{165}\x{fc}\x{17a}\x{17c}\x{17e}\x{491}\x{fb01}\x{fb02}\x{c0}-\x{d1}\x{d8}\x{dc}\x{dd}\x{102}\x{100}\x{104}\x{106}\x{10c}\x{10e}\x{110}\x{118}\x{11a}\x{112}\x{116}\x{11e}\x{122}\x{130}\x{12a}\x{136}\x{139}\x{13d}\x{141}\x{13b}\x{143}\x{147}\x{145}\x{152}\x{158}\x{15a}\x{15e}\x{160}\x{162}\x{164}\x{16e}\x{170}\x{178}\x{179}\x{17b}\x{17d}\x{490}\x{2502}\x{250c}\x{2510}\x{2518}\x{251c}\x{2524}\x{252c}\x{253c}\x{2550}-\x{256c}\x{2580}\x{2584}\x{2588}\x{258c}\x{2590}\x{2591}\x{2592}\x{2593}\x{a1}\x{ab}\x{bf}\x{a9}\x{384}\x{385}\x{2018}\x{201a}\x{201c}\x{201e}\x{2022}\x{2039}\x{f8ff}\x{ae}\x{bb}\x{2dd}\x{201d}\x{203a}\x{2122}\x{a2}\x{a3}\x{a5}\x{20a7}\x{20ac}\x{b2}\x{b3}\x{b9}\x{b1}\x{bc}\x{bd}\x{be}\x{d7}\x{b5}\x{f7}\x{2044}\x{2202}\x{2206}\x{220f}\x{2211}\x{221a}\x{221e}\x{2229}\x{222b}\x{2248}\x{2260}\x{2261}\x{2264}\x{2265}\x{2116}\x{b6}\x{a7}][\x{a6}\x{a4}\x{a8}\x{ac}\x{af}\x{b8}\x{192}\x{2c6}\x{2c7}\x{2d8}\x{2db}\x{2dc}\x{2020}\x{2021}\x{2030}\x{2310}\x{25ca}\x{fffd}\x{aa}\x{ba}]|[a-zA-Z][\x{3b1}-\x{3c9}\x{3ac}\x{3ad}\x{3ae}\x{3af}\x{3b0}\x{430}-\x{45f}\x{de}\x{391}-\x{3a9}\x{386}\x{388}\x{389}\x{38a}\x{38c}\x{38e}\x{38f}\x{3aa}\x{3ab}\x{401}-\x{42f}][\x{a6}\x{a4}\x{a8}\x{ac}\x{af}\x{b8}\x{192}\x{2c6}\x{2c7}\x{2d8}\x{2db}\x{2dc}\x{2020}\x{2021}\x{2030}\x{2310}\x{25ca}\x{fffd}\x{aa}\x{ba}]|[\x{a6}\x{a4}\x{a8}\x{ac}\x{af}\x{b8}\x{192}\x{2c6}\x{2c7}\x{2d8}\x{2db}\x{2dc}\x{2020}\x{2021}\x{2030}\x{2310}\x{25ca}\x{fffd}\x{aa}\x{ba}][\x{df}\x{e0}-\x{f1}\x{103}\x{105}\x{101}\x{107}\x{10d}\x{10f}\x{111}\x{119}\x{11b}\x{113}\x{117}\x{11f}\x{123}\x{12f}\x{12b}\x{137}\x{13a}\x{13e}\x{142}\x{13c}\x{153}\x{155}\x{15b}\x{15f}\x{161}\x{165}\x{fc}\x{17a}\x{17c}\x{17e}\x{491}\x{fb01}\x{fb02}\x{c0}-\x{d1}\x{d8}\x{dc}\x{dd}\x{102}\x{100}\x{104}\x{106}\x{10c}\x{10e}\x{110}\x{118}\x{11a}\x{112}\x{116}\x{11e}\x{122}\x{130}\x{12a}\x{136}\x{139}\x{13d}\x{141}\x{13b}\x{143}\x{147}\x{145}\x{152}\x{158}\x{15a}\x{15e}\x{160}\x{162}\x{164}\x{16e}\x{170}\x{178}\x{179}\x{17b}\x{17d}\x{490}\x{2502}\x{250c}\x{2510}\x{2518}\x{251c}\x{2524}\x{252c}\x{253c}\x{2550}-\x{256c}\x{2580}\x{2584}\x{2588}\x{258c}\x{2590}\x{2591}\x{2592}\x{2593}\x{a1}\x{ab}\x{bf}\x{a9}\x{384}\x{385}\x{2018}\x{201a}\x{201c}\x{201e}\x{2022}\x{2039}\x{f8ff}\x{ae}\x{bb}\x{2dd}\x{201d}\x{203a}\x{2122}\x{a2}\x{a3}\x{a5}\x{20a7}\x{20ac}\x{b2}\x{b3}\x{b9}\x{b1}\x{bc}\x{bd}\x{be}\x{d7}\x{b5}\x{f7}\x{2044}\x{2202}\x{2206}\x{220f}\x{2211}\x{221a}\x{221e}\x{2229}\x{222b}\x{2248}\x{2260}\x{2261}\x{2264}\x{2265}\x{2116}\x{b6}\x{a7}]|[\x{df}\x{e0}-\x{f1}\x{103}\x{105}\x{101}\x{107}\x{10d}\x{10f}\x{111}\x{119}\x{11b}\x{113}\x{117}\x{11f}\x{123}\x{12f}\x{12b}\x{137}\x{13a}\x{13e}\x{142}\x{13c}\x{153}\x{155}\x{15b}\x{15f}\x{161}\x{165}\x{fc}\x{17a}\x{17c}\x{17e}\x{491}\x{fb01}\x{fb02}\x{3b1}-\x{3c9}\x{3ac}\x{3ad}\x{3ae}\x{3af}\x{3b0}\x{430}-\x{45f}\x{2502}\x{250c}\x{2510}\x{2518}\x{251c}\x{2524}\x{252c}\x{253c}\x{2550}-\x{256c}\x{2580}\x{2584}\x{2588}\x{258c}\x{2590}\x{2591}\x{2592}\x{2593}\x{ae}\x{bb}\x{2dd}\x{201d}\x{203a}\x{2122}\x{a2}\x{a3}\x{a5}\x{20a7}\x{20ac}\x{b2}\x{b3}\x{b9}\x{b1}\x{bc}\x{bd}\x{be}\x{d7}\x{b5}\x{f7}\x{2044}\x{2202}\x{2206}\x{220f}\x{2211}\x{221a}\x{221e}\x{2229}\x{222b}\x{2248}\x{2260}\x{2261}\x{2264}\x{2265}\x{2116}][\x{c0}-\x{d1}\x{d8}\x{dc}\x{dd}\x{102}\x{100}\x{104}\x{106}\x{10c}\x{10e}\x{110}\x{118}\x{11a}\x{112}\x{116}\x{11e}\x{122}\x{130}\x{12a}\x{136}\x{139}\x{13d}\x{141}\x{13b}\x{143}\x{147}\x{145}\x{152}\x{158}\x{15a}\x{15e}\x{160}\x{162}\x{164}\x{16e}\x{170}\x{178}\x{179}\x{17b}\x{17d}\x{490}]|[\x{2502}\x{250c}\x{2510}\x{2518}\x{251c}\x{2524}\x{252c}\x{253c}\x{2550}-\x{256c}\x{2580}\x{2584}\x{2588}\x{258c}\x{2590}\x{2591}\x{2592}\x{2593}\x{ae}\x{bb}\x{2dd}\x{201d}\x{203a}\x{2122}\x{a2}\x{a3}\x{a5}\x{20a7}\x{20ac}\x{b2}\x{b3}\x{b9}\x{b1}\x{bc}\x{bd}\x{be}\x{d7}\x{b5}\x{f7}\x{2044}\x{2202}\x{2206}\x{220f}\x{2211}\x{221a}\x{221e}\x{2229}\x{222b}\x{2248}\x{2260}\x{2261}\x{2264}\x{2265}\x{2116}][\x{df}\x{e0}-\x{f1}\x{103}\x{105}\x{101}\x{107}\x{10d}\x{10f}\x{111}\x{119}\x{11b}\x{113}\x{117}\x{11f}\x{123}\x{12f}\x{12b}\x{137}\x{13a}\x{13e}\x{142}\x{13c}\x{153}\x{155}\x{15b}\x{15f}\x{161}\x{165}\x{fc}\x{17a}\x{17c}\x{17e}\x{491}\x{fb01}\x{fb02}]|[\x{df}\x{e0}-\x{f1}\x{103}\x{105}\x{101}\x{107}\x{10d}\x{10f}\x{111}\x{119}\x{11b}\x{113}\x{117}\x{11f}\x{123}\x{12f}\x{12b}\x{137}\x{13a}\x{13e}\x{142}\x{13c}\x{153}\x{155}\x{15b}\x{15f}\x{161}\x{165}\x{fc}\x{17a}\x{17c}\x{17e}\x{491}\x{fb01}\x{fb02}\x{2502}\x{250c}\x{2510}\x{2518}\x{251c}\x{2524}\x{252c}\x{253c}\x{2550}-\x{256c}\x{2580}\x{2584}\x{2588}\x{258c}\x{2590}\x{2591}\x{2592}\x{2593}\x{ae}\x{bb}\x{2dd}\x{201d}\x{203a}\x{2122}][\x{a2}\x{a3}\x{a5}\x{20a7}\x{20ac}]|[\s\x1c-\x1f][\x{c0}-\x{d1}\x{d8}\x{dc}\x{dd}\x{102}\x{100}\x{104}\x{106}\x{10c}\x{10e}\x{110}\x{118}\x{11a}\x{112}\x{116}\x{11e}\x{122}\x{130}\x{12a}\x{136}\x{139}\x{13d}\x{141}\x{13b}\x{143}\x{147}\x{145}\x{152}\x{158}\x{15a}\x{15e}\x{160}\x{162}\x{164}\x{16e}\x{170}\x{178}\x{179}\x{17b}\x{17d}\x{490}][\x{a2}\x{a3}\x{a5}\x{20a7}\x{20ac}]|[\x{c0}-\x{d1}\x{d8}\x{dc}\x{dd}\x{102}\x{100}\x{104}\x{106}\x{10c}\x{10e}\x{110}\x{118}\x{11a}\x{112}\x{116}\x{11e}\x{122}\x{130}\x{12a}\x{136}\x{139}\x{13d}\x{141}\x{13b}\x{143}\x{147}\x{145}\x{152}\x{158}\x{15a}\x{15e}\x{160}\x{162}\x{164}\x{16e}\x{170}\x{178}\x{179}\x{17b}\x{17d}\x{490}\x{2502}\x{250c}\x{2510}\x{2518}\x{251c}\x{2524}\x{252c}\x{253c}\x{2550}-\x{256c}\x{2580}\x{2584}\x{2588}\x{258c}\x{2590}\x{2591}\x{2592}\x{2593}][\x{b2}\x{b3}\x{b9}\x{b1}\x{bc}\x{bd}\x{be}\x{d7}\x{b5}\x{f7}\x{2044}\x{2202}\x{2206}\x{220f}\x{2211}\x{221a}\x{221e}\x{2229}\x{222b}\x{2248}\x{2260}\x{2261}\x{2264}\x{2265}\x{2116}\x{b6}\x{a7}]|[\x{df}\x{e0}-\x{f1}\x{103}\x{105}\x{101}\x{107}\x{10d}\x{10f}\x{111}\x{119}\x{11b}\x{113}\x{117}\x{11f}\x{123}\x{12f}\x{12b}\x{137}\x{13a}\x{13e}\x{142}\x{13c}\x{153}\x{155}\x{15b}\x{15f}\x{161}\x{165}\x{fc}\x{17a}\x{17c}\x{17e}\x{491}\x{fb01}\x{fb02}\x{c0}-\x{d1}\x{d8}\x{dc}\x{dd}\x{102}\x{100}\x{104}\x{106}\x{10c}\x{10e}\x{110}\x{118}\x{11a}\x{112}\x{116}\x{11e}\x{122}\x{130}\x{12a}\x{136}\x{139}\x{13d}\x{141}\x{13b}\x{143}\x{147}\x{145}\x{152}\x{158}\x{15a}\x{15e}\x{160}\x{162}\x{164}\x{16e}\x{170}\x{178}\x{179}\x{17b}\x{17d}\x{490}\x{2502}\x{250c}\x{2510}\x{2518}\x{251c}\x{2524}\x{252c}\x{253c}\x{2550}-\x{256c}\x{2580}\x{2584}\x{2588}\x{258c}\x{2590}\x{2591}\x{2592}\x{2593}\x{a2}\x{a3}\x{a5}\x{20a7}\x{20ac}\x{ae}\x{bb}\x{2dd}\x{201d}\x{203a}\x{2122}][\x{a1}\x{ab}\x{bf}\x{a9}\x{384}\x{385}\x{2018}\x{201a}\x{201c}\x{201e}\x{2022}\x{2039}\x{f8ff}][\x{b2}\x{b3}\x{b9}\x{b1}\x{bc}\x{bd}\x{be}\x{d7}\x{b5}\x{f7}\x{2044}\x{2202}\x{2206}\x{220f}\x{2211}\x{221a}\x{221e}\x{2229}\x{222b}\x{2248}\x{2260}\x{2261}\x{2264}\x{2265}\x{2116}]|[\x{df}\x{e0}-\x{f1}\x{103}\x{105}\x{101}\x{107}\x{10d}\x{10f}\x{111}\x{119}\x{11b}\x{113}\x{117}\x{11f}\x{123}\x{12f}\x{12b}\x{137}\x{13a}\x{13e}\x{142}\x{13c}\x{153}\x{155}\x{15b}\x{15f}\x{161}\x{165}\x{fc}\x{17a}\x{17c}\x{17e}\x{491}\x{fb01}\x{fb02}\x{c0}-\x{d1}\x{d8}\x{dc}\x{dd}\x{102}\x{100}\x{104}\x{106}\x{10c}\x{10e}\x{110}\x{118}\x{11a}\x{112}\x{116}\x{11e}\x{122}\x{130}\x{12a}\x{136}\x{139}\x{13d}\x{141}\x{13b}\x{143}\x{147}\x{145}\x{152}\x{158}\x{15a}\x{15e}\x{160}\x{162}\x{164}\x{16e}\x{170}\x{178}\x{179}\x{17b}\x{17d}\x{490}\x{a2}\x{a3}\x{a5}\x{20a7}\x{20ac}\x{b2}\x{b3}\x{b9}\x{b1}\x{bc}\x{bd}\x{be}\x{d7}\x{b5}\x{f7}\x{2044}\x{2202}\x{2206}\x{220f}\x{2211}\x{221a}\x{221e}\x{2229}\x{222b}\x{2248}\x{2260}\x{2261}\x{2264}\x{2265}\x{2116}\x{2502}\x{250c}\x{2510}\x{2518}\x{251c}\x{2524}\x{252c}\x{253c}\x{2550}-\x{256c}\x{2580}\x{2584}\x{2588}\x{258c}\x{2590}\x{2591}\x{2592}\x{2593}\x{b6}\x{a7}][\x{ae}\x{bb}\x{2dd}\x{201d}\x{203a}\x{2122}][\x{a1}\x{ab}\x{bf}\x{a9}\x{384}\x{385}\x{2018}\x{201a}\x{201c}\x{201e}\x{2022}\x{2039}\x{f8ff}]|[\x{a2}\x{a3}\x{a5}\x{20a7}\x{20ac}\x{b2}\x{b3}\x{b9}\x{b1}\x{bc}\x{bd}\x{be}\x{d7}\x{b5}\x{f7}\x{2044}\x{2202}\x{2206}\x{220f}\x{2211}\x{221a}\x{221e}\x{2229}\x{222b}\x{2248}\x{2260}\x{2261}\x{2264}\x{2265}\x{2116}\x{2502}\x{250c}\x{2510}\x{2518}\x{251c}\x{2524}\x{252c}\x{253c}\x{2550}-\x{256c}\x{2580}\x{2584}\x{2588}\x{258c}\x{2590}\x{2591}\x{2592}\x{2593}][\x{a1}\x{ab}\x{bf}\x{a9}\x{384}\x{385}\x{2018}\x{201a}\x{201c}\x{201e}\x{2022}\x{2039}\x{f8ff}]|[a-z][\x{c0}-\x{d1}\x{d8}\x{dc}\x{dd}\x{102}\x{100}\x{104}\x{106}\x{10c}\x{10e}\x{110}\x{118}\x{11a}\x{112}\x{116}\x{11e}\x{122}\x{130}\x{12a}\x{136}\x{139}\x{13d}\x{141}\x{13b}\x{143}\x{147}\x{145}\x{152}\x{158}\x{15a}\x{15e}\x{160}\x{162}\x{164}\x{16e}\x{170}\x{178}\x{179}\x{17b}\x{17d}\x{490}][\x{a1}\x{ab}\x{bf}\x{a9}\x{384}\x{385}\x{2018}\x{201a}\x{201c}\x{201e}\x{2022}\x{2039}\x{f8ff}\x{a2}\x{a3}\x{a5}\x{20a7}\x{20ac}]|[\x{2502}\x{250c}\x{2510}\x{2518}\x{251c}\x{2524}\x{252c}\x{253c}\x{2550}-\x{256c}\x{2580}\x{2584}\x{2588}\x{258c}\x{2590}\x{2591}\x{2592}\x{2593}][\x{d2}-\x{d6}\x{d9}-\x{dc}\x{f2}-\x{f6}\x{f8}-\x{fc}\x{150}\x{14c}\x{16a}\x{172}\x{b0}]|[\x{df}\x{e0}-\x{f1}\x{103}\x{105}\x{101}\x{107}\x{10d}\x{10f}\x{111}\x{119}\x{11b}\x{113}\x{117}\x{11f}\x{123}\x{12f}\x{12b}\x{137}\x{13a}\x{13e}\x{142}\x{13c}\x{153}\x{155}\x{15b}\x{15f}\x{161}\x{165}\x{fc}\x{17a}\x{17c}\x{17e}\x{491}\x{fb01}\x{fb02}\x{c0}-\x{d1}\x{d8}\x{dc}\x{dd}\x{102}\x{100}\x{104}\x{106}\x{10c}\x{10e}\x{110}\x{118}\x{11a}\x{112}\x{116}\x{11e}\x{122}\x{130}\x{12a}\x{136}\x{139}\x{13d}\x{141}\x{13b}\x{143}\x{147}\x{145}\x{152}\x{158}\x{15a}\x{15e}\x{160}\x{162}\x{164}\x{16e}\x{170}\x{178}\x{179}\x{17b}\x{17d}\x{490}\x{a2}\x{a3}\x{a5}\x{20a7}\x{20ac}\x{b2}\x{b3}\x{b9}\x{b1}\x{bc}\x{bd}\x{be}\x{d7}\x{b5}\x{f7}\x{2044}\x{2202}\x{2206}\x{220f}\x{2211}\x{221a}\x{221e}\x{2229}\x{222b}\x{2248}\x{2260}\x{2261}\x{2264}\x{2265}\x{2116}\x{a1}\x{ab}\x{bf}\x{a9}\x{384}\x{385}\x{2018}\x{201a}\x{201c}\x{201e}\x{2022}\x{2039}\x{f8ff}\x{ae}\x{bb}\x{2dd}\x{201d}\x{203a}\x{2122}\x{b6}\x{a7}][\x{2502}\x{250c}\x{2510}\x{2518}\x{251c}\x{2524}\x{252c}\x{253c}\x{2550}-\x{256c}\x{2580}\x{2584}\x{2588}\x{258c}\x{2590}\x{2591}\x{2592}\x{2593}]|[\x{2502}\x{250c}\x{2510}\x{2518}\x{251c}\x{2524}\x{252c}\x{253c}\x{2550}-\x{256c}\x{2580}\x{2584}\x{2588}\x{258c}\x{2590}\x{2591}\x{2592}\x{2593}][\x{ae}\x{bb}\x{2dd}\x{201d}\x{203a}\x{2122}]|[\x{df}\x{e0}-\x{f1}\x{103}\x{105}\x{101}\x{107}\x{10d}\x{10f}\x{111}\x{119}\x{11b}\x{113}\x{117}\x{11f}\x{123}\x{12f}\x{12b}\x{137}\x{13a}\x{13e}\x{142}\x{13c}\x{153}\x{155}\x{15b}\x{15f}\x{161}\x{165}\x{fc}\x{17a}\x{17c}\x{17e}\x{491}\x{fb01}\x{fb02}\x{c0}-\x{d1}\x{d8}\x{dc}\x{dd}\x{102}\x{100}\x{104}\x{106}\x{10c}\x{10e}\x{110}\x{118}\x{11a}\x{112}\x{116}\x{11e}\x{122}\x{130}\x{12a}\x{136}\x{139}\x{13d}\x{141}\x{13b}\x{143}\x{147}\x{145}\x{152}\x{158}\x{15a}\x{15e}\x{160}\x{162}\x{164}\x{16e}\x{170}\x{178}\x{179}\x{17b}\x{17d}\x{490}][\x{a1}\x{ab}\x{bf}\x{a9}\x{384}\x{385}\x{2018}\x{201a}\x{201c}\x{201e}\x{2022}\x{2039}\x{f8ff}\x{ae}\x{bb}\x{2dd}\x{201d}\x{203a}\x{2122}][\p{L}\p{N}_]|[\x{152}\x{153}][^A-Za-z]|[\x{c0}-\x{d1}\x{d8}\x{dc}\x{dd}\x{102}\x{100}\x{104}\x{106}\x{10c}\x{10e}\x{110}\x{118}\x{11a}\x{112}\x{116}\x{11e}\x{122}\x{130}\x{12a}\x{136}\x{139}\x{13d}\x{141}\x{13b}\x{143}\x{147}\x{145}\x{152}\x{158}\x{15a}\x{15e}\x{160}\x{162}\x{164}\x{16e}\x{170}\x{178}\x{179}\x{17b}\x{17d}\x{490}]\x{b0}|[\x{c2}\x{c3}\x{ce}\x{d0}][\x{20ac}\x{153}\x{160}\x{161}\x{a2}\x{a3}\x{178}\x{17e}\xa0\xad\x{ae}\x{a9}\x{b0}\x{b7}\x{bb}\x{a1}\x{ab}\x{bf}\x{a9}\x{384}\x{385}\x{2018}\x{201a}\x{201c}\x{201e}\x{2022}\x{2039}\x{f8ff}\x{ae}\x{bb}\x{2dd}\x{201d}\x{203a}\x{2122}\x{2013}\x{2014}\x{b4}]|\x{d7}[\x{b2}\x{b3}]|[\x{d8}\x{d9}][\x{a0}\x{ad}\x{b7}\x{b4}\x{2013}\x{2014}\x{2015}\x{2026}\x{2019}\x{a2}\x{a3}\x{a5}\x{20a7}\x{20ac}\x{a6}\x{a4}\x{a8}\x{ac}\x{af}\x{b8}\x{192}\x{2c6}\x{2c7}\x{2d8}\x{2db}\x{2dc}\x{2020}\x{2021}\x{2030}\x{2310}\x{25ca}\x{fffd}\x{aa}\x{ba}\x{b2}\x{b3}\x{b9}\x{b1}\x{bc}\x{bd}\x{be}\x{d7}\x{b5}\x{f7}\x{2044}\x{2202}\x{2206}\x{220f}\x{2211}\x{221a}\x{221e}\x{2229}\x{222b}\x{2248}\x{2260}\x{2261}\x{2264}\x{2265}\x{2116}\x{a1}\x{ab}\x{bf}\x{a9}\x{384}\x{385}\x{2018}\x{201a}\x{201c}\x{201e}\x{2022}\x{2039}\x{f8ff}\x{178}\x{160}\x{ae}\x{b0}\x{b5}\x{bb}][\x{d8}\x{d9}][\x{a0}\x{ad}\x{b7}\x{b4}\x{2013}\x{2014}\x{2015}\x{2026}\x{2019}\x{a2}\x{a3}\x{a5}\x{20a7}\x{20ac}\x{a6}\x{a4}\x{a8}\x{ac}\x{af}\x{b8}\x{192}\x{2c6}\x{2c7}\x{2d8}\x{2db}\x{2dc}\x{2020}\x{2021}\x{2030}\x{2310}\x{25ca}\x{fffd}\x{aa}\x{ba}\x{b2}\x{b3}\x{b9}\x{b1}\x{bc}\x{bd}\x{be}\x{d7}\x{b5}\x{f7}\x{2044}\x{2202}\x{2206}\x{220f}\x{2211}\x{221a}\x{221e}\x{2229}\x{222b}\x{2248}\x{2260}\x{2261}\x{2264}\x{2265}\x{2116}\x{a1}\x{ab}\x{bf}\x{a9}\x{384}\x{385}\x{2018}\x{201a}\x{201c}\x{201e}\x{2022}\x{2039}\x{f8ff}\x{178}\x{160}\x{ae}\x{b0}\x{b5}\x{bb}]|\x{e0}[\x{b2}\x{b5}\x{b9}\x{bc}\x{bd}\x{be}]|\x{221a}[\x{b1}\x{2202}\x{2020}\x{2260}\x{ae}\x{2122}\x{b4}\x{2264}\x{2265}\x{a5}\x{b5}\x{f8}]|\x{2248}[\x{b0}\x{a2}]|\x{201a}\x{c4}[\x{ec}\x{ee}\x{ef}\x{f2}\x{f4}\x{fa}\x{f9}\x{fb}\x{2020}\x{b0}\x{a2}\x{3c0}]|\x{201a}[\x{e2}\x{f3}][\x{e0}\x{e4}\x{b0}\x{ea}]|\x{432}\x{402}|[\x{412}\x{413}\x{420}\x{421}][\x{80}-\x{9f}\x{a6}\x{a4}\x{a8}\x{ac}\x{af}\x{b8}\x{192}\x{2c6}\x{2c7}\x{2d8}\x{2db}\x{2dc}\x{2020}\x{2021}\x{2030}\x{2310}\x{25ca}\x{fffd}\x{aa}\x{ba}\x{a1}\x{ab}\x{bf}\x{a9}\x{384}\x{385}\x{2018}\x{201a}\x{201c}\x{201e}\x{2022}\x{2039}\x{f8ff}\x{ae}\x{bb}\x{2dd}\x{201d}\x{203a}\x{2122}\x{a2}\x{a3}\x{a5}\x{20a7}\x{20ac}\x{b0}\x{b5}][\x{412}\x{413}\x{420}\x{421}]|\x{413}\x{45e}\x{412}\x{402}\x{412}.[A-Za-z\x{20}]|\x{c3}[\xa0\x{a1}]|[a-z][\s\x1c-\x1f]?[\x{c3}\x{c2}][\x{20}]|^[\x{c3}\x{c2}][\x{20}]|[a-z\x{2e}\x{2c}\x{3f}\x{21}\x{ae}\x{bb}\x{2dd}\x{201d}\x{203a}\x{2122}]\x{c2}[\x{20}\x{a1}\x{ab}\x{bf}\x{a9}\x{384}\x{385}\x{2018}\x{201a}\x{201c}\x{201e}\x{2022}\x{2039}\x{f8ff}\x{ae}\x{bb}\x{2dd}\x{201d}\x{203a}\x{2122}]|\x{3b2}\x{20ac}[\x{2122}\xa0\x{386}\xad\x{ae}\x{b0}]|[\x{392}\x{393}\x{39e}\x{39f}][\x{80}-\x{9f}\x{a6}\x{a4}\x{a8}\x{ac}\x{af}\x{b8}\x{192}\x{2c6}\x{2c7}\x{2d8}\x{2db}\x{2dc}\x{2020}\x{2021}\x{2030}\x{2310}\x{25ca}\x{fffd}\x{aa}\x{ba}\x{a1}\x{ab}\x{bf}\x{a9}\x{384}\x{385}\x{2018}\x{201a}\x{201c}\x{201e}\x{2022}\x{2039}\x{f8ff}\x{ae}\x{bb}\x{2dd}\x{201d}\x{203a}\x{2122}\x{a2}\x{a3}\x{a5}\x{20a7}\x{20ac}\x{b0}][\x{392}\x{393}\x{39e}\x{39f}]|\x{101}\x{20ac}";

/// Transcribed from ftfy 6.3.1 (`UTF8_DETECTOR_PATTERN`), non-ASCII characters written as escapes.
const UTF8_DETECTOR_PATTERN: &str = r"([\x{102}\x{c2}\x{c4}\x{100}\x{c5}\x{c3}\x{c6}\x{106}\x{10c}\x{c7}\x{10e}\x{110}\x{c9}\x{11a}\x{ca}\x{cb}\x{116}\x{c8}\x{112}\x{118}\x{d0}\x{11e}\x{122}\x{cd}\x{ce}\x{cf}\x{130}\x{cc}\x{12a}\x{136}\x{139}\x{13b}\x{141}\x{143}\x{147}\x{145}\x{d1}\x{d3}\x{d4}\x{d6}\x{150}\x{d2}\x{14c}\x{d8}\x{d5}\x{158}\x{15a}\x{160}\x{15e}\x{162}\x{de}\x{da}\x{db}\x{dc}\x{170}\x{d9}\x{16a}\x{172}\x{16e}\x{dd}\x{179}\x{17d}\x{17b}\x{df}\x{d7}\x{392}\x{393}\x{394}\x{395}\x{396}\x{397}\x{398}\x{399}\x{39a}\x{39b}\x{39c}\x{39d}\x{39e}\x{39f}\x{3a0}\x{3a1}\x{3a3}\x{3a4}\x{3a5}\x{3a6}\x{3a7}\x{3a8}\x{3a9}\x{3aa}\x{3ab}\x{3ac}\x{3ad}\x{3ae}\x{3af}\x{412}\x{413}\x{414}\x{415}\x{416}\x{417}\x{418}\x{419}\x{41a}\x{41b}\x{41c}\x{41d}\x{41e}\x{41f}\x{420}\x{421}\x{422}\x{423}\x{424}\x{425}\x{426}\x{427}\x{428}\x{429}\x{42a}\x{42b}\x{42c}\x{42d}\x{42e}\x{42f}][\x{80}-\x{bf}\x{20}\x{104}\x{c6}\x{13d}\x{141}\x{d8}\x{156}\x{15a}\x{160}\x{15e}\x{164}\x{178}\x{179}\x{17d}\x{17b}\x{152}\x{105}\x{e6}\x{192}\x{13e}\x{142}\x{f8}\x{157}\x{15b}\x{161}\x{15f}\x{165}\x{17a}\x{17e}\x{17c}\x{153}\x{2c6}\x{2c7}\x{2d8}\x{2db}\x{2dc}\x{2dd}\x{384}\x{385}\x{386}\x{388}\x{389}\x{38a}\x{38c}\x{38e}\x{38f}\x{401}\x{402}\x{403}\x{404}\x{405}\x{406}\x{407}\x{408}\x{409}\x{40a}\x{40b}\x{40c}\x{40e}\x{40f}\x{451}\x{452}\x{453}\x{454}\x{455}\x{456}\x{457}\x{458}\x{459}\x{45a}\x{45b}\x{45c}\x{45e}\x{45f}\x{490}\x{491}\x{2013}\x{2014}\x{2015}\x{2018}\x{2019}\x{201a}\x{201c}\x{201d}\x{201e}\x{2020}\x{2021}\x{2022}\x{2026}\x{2030}\x{2039}\x{203a}\x{20ac}\x{2116}\x{2122}]|[\x{e1}\x{103}\x{e2}\x{e4}\x{e0}\x{101}\x{105}\x{e5}\x{e3}\x{e6}\x{107}\x{10d}\x{e7}\x{10f}\x{e9}\x{11b}\x{ea}\x{eb}\x{117}\x{e8}\x{113}\x{119}\x{119}\x{123}\x{ed}\x{ee}\x{ef}\x{ec}\x{12b}\x{12f}\x{137}\x{13a}\x{13c}\x{155}\x{17a}\x{3b0}\x{3b1}\x{3b2}\x{3b3}\x{3b4}\x{3b5}\x{3b6}\x{3b7}\x{3b8}\x{3b9}\x{3ba}\x{3bb}\x{3bc}\x{3bd}\x{3be}\x{3bf}\x{430}\x{431}\x{432}\x{433}\x{434}\x{435}\x{436}\x{437}\x{438}\x{439}\x{43a}\x{43b}\x{43c}\x{43d}\x{43e}\x{43f}][\x{80}-\x{bf}\x{20}\x{104}\x{c6}\x{13d}\x{141}\x{d8}\x{156}\x{15a}\x{160}\x{15e}\x{164}\x{178}\x{179}\x{17d}\x{17b}\x{152}\x{105}\x{e6}\x{192}\x{13e}\x{142}\x{f8}\x{157}\x{15b}\x{161}\x{15f}\x{165}\x{17a}\x{17e}\x{17c}\x{153}\x{2c6}\x{2c7}\x{2d8}\x{2db}\x{2dc}\x{2dd}\x{384}\x{385}\x{386}\x{388}\x{389}\x{38a}\x{38c}\x{38e}\x{38f}\x{401}\x{402}\x{403}\x{404}\x{405}\x{406}\x{407}\x{408}\x{409}\x{40a}\x{40b}\x{40c}\x{40e}\x{40f}\x{451}\x{452}\x{453}\x{454}\x{455}\x{456}\x{457}\x{458}\x{459}\x{45a}\x{45b}\x{45c}\x{45e}\x{45f}\x{490}\x{491}\x{2013}\x{2014}\x{2015}\x{2018}\x{2019}\x{201a}\x{201c}\x{201d}\x{201e}\x{2020}\x{2021}\x{2022}\x{2026}\x{2030}\x{2039}\x{203a}\x{20ac}\x{2116}\x{2122}]{2}|[\x{111}\x{f0}\x{11f}\x{f3}\x{161}\x{3c0}\x{3c3}\x{440}\x{443}][\x{80}-\x{bf}\x{20}\x{104}\x{c6}\x{13d}\x{141}\x{d8}\x{156}\x{15a}\x{160}\x{15e}\x{164}\x{178}\x{179}\x{17d}\x{17b}\x{152}\x{105}\x{e6}\x{192}\x{13e}\x{142}\x{f8}\x{157}\x{15b}\x{161}\x{15f}\x{165}\x{17a}\x{17e}\x{17c}\x{153}\x{2c6}\x{2c7}\x{2d8}\x{2db}\x{2dc}\x{2dd}\x{384}\x{385}\x{386}\x{388}\x{389}\x{38a}\x{38c}\x{38e}\x{38f}\x{401}\x{402}\x{403}\x{404}\x{405}\x{406}\x{407}\x{408}\x{409}\x{40a}\x{40b}\x{40c}\x{40e}\x{40f}\x{451}\x{452}\x{453}\x{454}\x{455}\x{456}\x{457}\x{458}\x{459}\x{45a}\x{45b}\x{45c}\x{45e}\x{45f}\x{490}\x{491}\x{2013}\x{2014}\x{2015}\x{2018}\x{2019}\x{201a}\x{201c}\x{201d}\x{201e}\x{2020}\x{2021}\x{2022}\x{2026}\x{2030}\x{2039}\x{203a}\x{20ac}\x{2116}\x{2122}]{3})+";

/// Transcribed from ftfy 6.3.1 (`UTF8_CONTINUATION_STRICT`), non-ASCII characters written as escapes.
const UTF8_CONTINUATION_STRICT: &str = r"[\x{80}-\x{bf}\x{104}\x{c6}\x{13d}\x{141}\x{d8}\x{156}\x{15a}\x{160}\x{15e}\x{164}\x{178}\x{179}\x{17d}\x{17b}\x{152}\x{105}\x{e6}\x{192}\x{13e}\x{142}\x{f8}\x{157}\x{15b}\x{161}\x{15f}\x{165}\x{17a}\x{17e}\x{17c}\x{153}\x{2c6}\x{2c7}\x{2d8}\x{2db}\x{2dc}\x{2dd}\x{384}\x{385}\x{386}\x{388}\x{389}\x{38a}\x{38c}\x{38e}\x{38f}\x{401}\x{402}\x{403}\x{404}\x{405}\x{406}\x{407}\x{408}\x{409}\x{40a}\x{40b}\x{40c}\x{40e}\x{40f}\x{451}\x{452}\x{453}\x{454}\x{455}\x{456}\x{457}\x{458}\x{459}\x{45a}\x{45b}\x{45c}\x{45e}\x{45f}\x{490}\x{491}\x{2020}\x{2021}\x{2030}\x{2039}\x{203a}\x{20ac}\x{2116}\x{2122}]";

impl Ftfy {
    /// Builds all tables and regexes.
    pub(super) fn new() -> Result<Self, TokenizerError> {
        let pages = code_pages()?;
        let mut c1 = ['\0'; 32];
        for (i, slot) in c1.iter_mut().enumerate() {
            *slot = pages[1].decode[0x80 + i];
        }
        let html = HtmlUnescaper {
            charref: compile("html charref", HTML_CHARREF_PATTERN)?,
            c1,
        };
        // ftfy's `_build_html_entities`.
        let mut entities = HashMap::new();
        for (key, value) in htmlize::ENTITIES.entries() {
            let (Ok(key), Ok(value)) = (std::str::from_utf8(key), std::str::from_utf8(value))
            else {
                continue;
            };
            if !key.ends_with(';') {
                continue;
            }
            entities.insert(key.to_owned(), value.to_owned());
        }
        let lower_names: Vec<(String, String)> = entities
            .iter()
            .filter(|(k, _)| k.to_lowercase() == **k)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (key, value) in lower_names {
            let upper = key.to_uppercase();
            if html.unescape(&upper) == upper {
                entities.insert(upper, value.to_uppercase());
            }
        }
        let mut width = HashMap::new();
        width.insert('\u{3000}', " ".to_owned());
        for c in '\u{ff01}'..'\u{fff0}' {
            let alt: String = c.to_string().nfkc().collect();
            if alt != c.to_string() {
                width.insert(c, alt);
            }
        }
        Ok(Self {
            html,
            entities,
            entity_re: compile("ftfy entity", FTFY_ENTITY_PATTERN)?,
            ansi: compile("ftfy ansi", ANSI_PATTERN)?,
            badness: compile("ftfy badness", BADNESS_PATTERN)?,
            utf8_detector: compile("ftfy utf8 detector", UTF8_DETECTOR_PATTERN)?,
            continuation_strict: compile("ftfy utf8 continuation", UTF8_CONTINUATION_STRICT)?,
            altered_utf8: compile_bytes("ftfy altered utf8", ALTERED_UTF8_PATTERN)?,
            lossy_utf8: compile_bytes("ftfy lossy utf8", LOSSY_UTF8_PATTERN)?,
            pages,
            width,
            ligatures: LIGATURES.iter().copied().collect(),
        })
    }

    /// `ftfy.fix_text(text)`.
    pub(super) fn fix_text(&self, text: &str) -> String {
        let mut unescape_html = true;
        let mut out = String::with_capacity(text.len());
        // Segments end after each '\n' (max_decode_length 10^6 code points).
        let mut rest = text;
        while !rest.is_empty() {
            let mut end = rest.find('\n').map_or(rest.len(), |i| i + 1);
            if let Some((idx, _)) = rest[..end].char_indices().nth(1_000_000) {
                end = idx;
            }
            let segment = &rest[..end];
            if segment.contains('<') {
                unescape_html = false;
            }
            out.push_str(&self.fix_segment(segment, unescape_html));
            rest = &rest[end..];
        }
        out
    }

    /// `ftfy.fix_and_explain(segment)`, without the explanation.
    fn fix_segment(&self, text: &str, unescape_html: bool) -> String {
        let unescape_html = unescape_html && !text.contains('<');
        let mut text = text.to_owned();
        loop {
            let orig = text.clone();
            if unescape_html {
                text = self.unescape_html(&text);
            }
            text = self.fix_encoding(&text);
            text = self.fix_c1_controls(&text);
            text = text
                .chars()
                .fold(String::with_capacity(text.len()), |mut s, c| {
                    match self.ligatures.get(&c) {
                        Some(r) => s.push_str(r),
                        None => s.push(c),
                    }
                    s
                });
            text = text
                .chars()
                .fold(String::with_capacity(text.len()), |mut s, c| {
                    match self.width.get(&c) {
                        Some(r) => s.push_str(r),
                        None => s.push(c),
                    }
                    s
                });
            text = text
                .chars()
                .map(|c| match c {
                    '\u{2bc}' | '\u{2018}'..='\u{201b}' => '\'',
                    '\u{201c}'..='\u{201f}' => '"',
                    c => c,
                })
                .collect();
            text = text
                .replace("\r\n", "\n")
                .replace(['\r', '\u{2028}', '\u{2029}', '\u{85}'], "\n");
            text = self.ansi.replace_all(&text, "").into_owned();
            text.retain(|c| {
                !matches!(c,
                    '\u{0}'..='\u{8}' | '\u{b}' | '\u{e}'..='\u{1f}' | '\u{7f}'
                    | '\u{206a}'..='\u{206f}' | '\u{feff}' | '\u{fff9}'..='\u{fffc}')
            });
            text = text.nfc().collect();
            if text == orig {
                return text;
            }
        }
    }

    /// ftfy's `fixes.unescape_html`.
    fn unescape_html(&self, text: &str) -> String {
        self.entity_re
            .replace_all(text, |caps: &regex::Captures<'_>| {
                let m = caps.get(0).map_or("", |m| m.as_str());
                if let Some(v) = self.entities.get(m) {
                    v.clone()
                } else if m.starts_with("&#") {
                    let unescaped = self.html.unescape(m);
                    if unescaped.contains(';') {
                        m.to_owned()
                    } else {
                        unescaped
                    }
                } else {
                    m.to_owned()
                }
            })
            .into_owned()
    }

    /// ftfy's `badness.is_bad`.
    fn is_bad(&self, text: &str) -> bool {
        self.badness.is_match(text)
    }

    /// `ftfy.fix_encoding(text)`.
    fn fix_encoding(&self, text: &str) -> String {
        let mut text = text.to_owned();
        loop {
            let next = self.fix_encoding_one_step(&text);
            if next == text {
                return text;
            }
            text = next;
        }
    }

    /// ftfy's `_fix_encoding_one_step_and_explain`.
    fn fix_encoding_one_step(&self, text: &str) -> String {
        if text.is_empty() || text.is_ascii() || !self.is_bad(text) {
            return text.to_owned();
        }
        let mut latin1_possible = false;
        for page in &self.pages {
            let Some(mut bytes) = page.encode(text) else {
                continue;
            };
            if page.name == "latin-1" {
                latin1_possible = true;
            }
            if page.name != "macroman" && self.altered_utf8.is_match(&bytes) {
                bytes = restore_byte_a0(&self.altered_utf8, &bytes);
            }
            if page.name.starts_with("sloppy") {
                bytes = self
                    .lossy_utf8
                    .replace_all(&bytes, "\u{fffd}".as_bytes())
                    .into_owned();
            }
            let decoded = if bytes.contains(&0xed) || bytes.contains(&0xc0) {
                decode_utf8_variants(&bytes)
            } else {
                String::from_utf8(bytes).ok()
            };
            if let Some(fixed) = decoded {
                return fixed;
            }
        }
        if self.utf8_detector.is_match(text) {
            let fixed = self.decode_inconsistent_utf8(text);
            if fixed != text {
                return fixed;
            }
        }
        if latin1_possible {
            // `text.encode('latin-1').decode('windows-1252')`, strict.
            let page = &self.pages[1];
            let mut fixed = String::with_capacity(text.len());
            let mut ok = true;
            for c in text.chars() {
                let b = c as u32;
                match b {
                    0x81 | 0x8d | 0x8f | 0x90 | 0x9d => {
                        ok = false;
                        break;
                    }
                    0x80..=0x9f => fixed.push(page.decode[b as usize]),
                    _ => fixed.push(c),
                }
            }
            if ok && fixed != text {
                return fixed;
            }
        }
        self.fix_c1_controls(text)
    }

    /// ftfy's `fixes.decode_inconsistent_utf8` (`UTF8_DETECTOR_RE` has a look-behind, emulated).
    fn decode_inconsistent_utf8(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut copied = 0;
        let mut pos = 0;
        while pos <= text.len() {
            let Some(m) = self.utf8_detector.find_at(text, pos) else {
                break;
            };
            let start = m.start();
            let prev_bad = text[..start].chars().next_back().is_some_and(|c| {
                self.continuation_strict
                    .is_match(c.encode_utf8(&mut [0; 4]))
            });
            if prev_bad {
                pos = start + text[start..].chars().next().map_or(1, char::len_utf8);
                continue;
            }
            let substr = m.as_str();
            out.push_str(&text[copied..start]);
            if substr.len() < text.len() && self.is_bad(substr) {
                out.push_str(&self.fix_encoding(substr));
            } else {
                out.push_str(substr);
            }
            copied = m.end();
            pos = m.end();
        }
        out.push_str(&text[copied..]);
        out
    }

    /// ftfy's `fixes.fix_c1_controls`.
    fn fix_c1_controls(&self, text: &str) -> String {
        text.chars()
            .map(|c| {
                if ('\u{80}'..='\u{9f}').contains(&c) {
                    self.pages[1].decode[c as usize]
                } else {
                    c
                }
            })
            .collect()
    }
}

/// ftfy's `fixes.restore_byte_a0`.
fn restore_byte_a0(altered: &BytesRegex, bytes: &[u8]) -> Vec<u8> {
    // A_GRAVE_WORD_RE = b'\xc3 (?! |quele|quela|quilo|s )' -> b'\xc3\xa0 '
    let mut step = Vec::with_capacity(bytes.len() + 4);
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == 0xc3 && bytes.get(i + 1) == Some(&b' ') {
            let after = &bytes[i + 2..];
            let blocked = [&b" "[..], b"quele", b"quela", b"quilo", b"s "]
                .iter()
                .any(|p| after.starts_with(p));
            if !blocked {
                step.extend_from_slice(b"\xc3\xa0 ");
                i += 2;
                continue;
            }
        }
        step.push(bytes[i]);
        i += 1;
    }
    altered
        .replace_all(&step, |caps: &regex::bytes::Captures<'_>| {
            caps.get(0)
                .map(|m| {
                    m.as_bytes()
                        .iter()
                        .map(|&b| if b == b' ' { 0xa0 } else { b })
                        .collect::<Vec<u8>>()
                })
                .unwrap_or_default()
        })
        .into_owned()
}

/// ftfy's `utf-8-variants` codec: UTF-8 plus CESU-8 surrogate pairs and Java's `C0 80` NUL.
fn decode_utf8_variants(bytes: &[u8]) -> Option<String> {
    let mut out = String::with_capacity(bytes.len());
    let mut i = 0;
    let cont = |b: Option<&u8>, lo: u8, hi: u8| b.is_some_and(|b| (lo..=hi).contains(b));
    while i < bytes.len() {
        match bytes[i] {
            0xc0 if bytes.get(i + 1) == Some(&0x80) => {
                out.push('\0');
                i += 2;
            }
            0xed if cont(bytes.get(i + 1), 0xa0, 0xaf)
                && cont(bytes.get(i + 2), 0x80, 0xbf)
                && bytes.get(i + 3) == Some(&0xed)
                && cont(bytes.get(i + 4), 0xb0, 0xbf)
                && cont(bytes.get(i + 5), 0x80, 0xbf) =>
            {
                let hi =
                    0xd000 | (u32::from(bytes[i + 1] & 0x3f) << 6) | u32::from(bytes[i + 2] & 0x3f);
                let lo =
                    0xd000 | (u32::from(bytes[i + 4] & 0x3f) << 6) | u32::from(bytes[i + 5] & 0x3f);
                let c = 0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00);
                out.push(char::from_u32(c)?);
                i += 6;
            }
            _ => {
                let end = bytes[i + 1..]
                    .iter()
                    .position(|&b| b == 0xc0 || b == 0xed)
                    .map_or(bytes.len(), |p| i + 1 + p);
                // A chunk starting with 0xED that is not a CESU-8 pair is plain UTF-8 (or invalid).
                out.push_str(std::str::from_utf8(&bytes[i..end]).ok()?);
                i = end;
            }
        }
    }
    Some(out)
}
