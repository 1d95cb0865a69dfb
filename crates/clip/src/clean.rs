//! Text cleaning before CLIP's BPE: OpenAI `simple_tokenizer`'s `basic_clean` and
//! `whitespace_clean`, without `ftfy`.
//!
//! `basic_clean` is `ftfy.fix_text(text)`, then `html.unescape` twice, then `strip()`. There is no
//! Rust ftfy: text that ftfy would change (mojibake, curly quotes → straight, HTML entities when
//! the text has no `<`, ligatures, full-width forms, NFC…) tokenises as the Python tokenizer with
//! ftfy bypassed. `html.unescape` is reproduced for numeric references (with Python's
//! replacement rules) and the named references of HTML 4's Latin-1 set plus `&amp;`, `&lt;`,
//! `&gt;`, `&quot;`, `&apos;` (with or without `;`, longest-prefix rule included); the other HTML5
//! names (`&hellip;`, `&mdash;`…) are left as written.

use std::sync::LazyLock;

use regex::{Captures, Regex};

/// Named references that Python's `html.unescape` accepts without the trailing `;`: the Latin-1
/// names for U+00A0 … U+00FF, in code-point order.
const LATIN1: [&str; 96] = [
    "nbsp", "iexcl", "cent", "pound", "curren", "yen", "brvbar", "sect", "uml", "copy", "ordf", "laquo", "not", "shy",
    "reg", "macr", "deg", "plusmn", "sup2", "sup3", "acute", "micro", "para", "middot", "cedil", "sup1", "ordm",
    "raquo", "frac14", "frac12", "frac34", "iquest", "Agrave", "Aacute", "Acirc", "Atilde", "Auml", "Aring", "AElig",
    "Ccedil", "Egrave", "Eacute", "Ecirc", "Euml", "Igrave", "Iacute", "Icirc", "Iuml", "ETH", "Ntilde", "Ograve",
    "Oacute", "Ocirc", "Otilde", "Ouml", "times", "Oslash", "Ugrave", "Uacute", "Ucirc", "Uuml", "Yacute", "THORN",
    "szlig", "agrave", "aacute", "acirc", "atilde", "auml", "aring", "aelig", "ccedil", "egrave", "eacute", "ecirc",
    "euml", "igrave", "iacute", "icirc", "iuml", "eth", "ntilde", "ograve", "oacute", "ocirc", "otilde", "ouml",
    "divide", "oslash", "ugrave", "uacute", "ucirc", "uuml", "yacute", "thorn", "yuml",
];

/// Python's `html._invalid_charrefs` for 0x80 … 0x9F (Windows-1252).
const WINDOWS_1252: [char; 32] = [
    '€', '\u{81}', '‚', 'ƒ', '„', '…', '†', '‡', 'ˆ', '‰', 'Š', '‹', 'Œ', '\u{8d}', 'Ž', '\u{8f}', '\u{90}', '‘', '’',
    '“', '”', '•', '–', '—', '˜', '™', 'š', '›', 'œ', '\u{9d}', 'ž', 'Ÿ',
];

static CHARREF: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)").expect("the reference pattern is valid")
});
static SPACES: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\s+").expect("the whitespace pattern is valid"));

/// A legacy name (valid without `;`) → its character.
fn legacy(name: &str) -> Option<char> {
    match name {
        "amp" | "AMP" => Some('&'),
        "lt" | "LT" => Some('<'),
        "gt" | "GT" => Some('>'),
        "quot" | "QUOT" => Some('"'),
        "COPY" => Some('©'),
        "REG" => Some('®'),
        _ => LATIN1.iter().position(|&known| known == name).and_then(|index| char::from_u32(0xA0 + index as u32)),
    }
}

fn numeric(reference: &str) -> String {
    let digits = reference.trim_end_matches(';');
    let parsed = match digits.strip_prefix("#x").or_else(|| digits.strip_prefix("#X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => digits[1..].parse::<u64>(),
    };
    // Digits only, so a parse error is an overflow: out of range like any number > 0x10FFFF.
    let number = parsed.unwrap_or(u64::MAX);
    match number {
        0 => "\u{FFFD}".into(),
        13 => "\r".into(),
        0x80..=0x9F => WINDOWS_1252[(number - 0x80) as usize].to_string(),
        0xD800..=0xDFFF => "\u{FFFD}".into(),
        number if number > 0x10FFFF => "\u{FFFD}".into(),
        1..=8 | 0xB | 0xE..=0x1F | 0x7F | 0xFDD0..=0xFDEF => String::new(),
        number if number & 0xFFFE == 0xFFFE => String::new(),
        number => char::from_u32(number as u32).map(String::from).unwrap_or_default(),
    }
}

fn named(reference: &str) -> String {
    if let Some(name) = reference.strip_suffix(';') {
        if name == "apos" {
            return "'".into();
        }
        if let Some(character) = legacy(name) {
            return character.to_string();
        }
    } else if let Some(character) = legacy(reference) {
        return character.to_string();
    }
    // The longest known prefix (Python tries lengths len − 1 down to 2).
    let boundaries: Vec<usize> = reference.char_indices().map(|(index, _)| index).skip(2).collect();
    for &end in boundaries.iter().rev() {
        if let Some(character) = legacy(&reference[..end]) {
            return format!("{character}{}", &reference[end..]);
        }
    }
    format!("&{reference}")
}

/// Python's `html.unescape`, restricted to the references listed in the module docs.
pub fn html_unescape(text: &str) -> String {
    if !text.contains('&') {
        return text.to_string();
    }
    CHARREF
        .replace_all(text, |captures: &Captures<'_>| {
            let reference = &captures[1];
            if reference.starts_with('#') { numeric(reference) } else { named(reference) }
        })
        .into_owned()
}

/// Python's `str.isspace`: Unicode `White_Space` plus the separators U+001C … U+001F.
fn is_python_space(character: char) -> bool {
    character.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&character)
}

/// `basic_clean` without ftfy: `html.unescape` twice, then `strip()`.
pub fn basic_clean(text: &str) -> String {
    html_unescape(&html_unescape(text)).trim_matches(is_python_space).to_string()
}

/// `whitespace_clean`: runs of whitespace → one space, then `strip()`.
pub fn whitespace_clean(text: &str) -> String {
    SPACES.replace_all(text, " ").trim_matches(is_python_space).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_references_follow_python() {
        // Expected values from Python 3.11 `html.unescape`.
        assert_eq!(html_unescape("a &amp; b &lt;c&gt; &quot;d&quot; &apos;e&apos;"), "a & b <c> \"d\" 'e'");
        assert_eq!(html_unescape("&ampfoo &amp;amp; &eacute;t&eacute"), "&foo &amp; été");
        assert_eq!(html_unescape("&#65;&#x42;&#X43 &#0; &#128; &#55296; &#1; &#99999999999999999999;"), "ABC � € �  �");
        assert_eq!(html_unescape("&unknown; & alone"), "&unknown; & alone");
        // Python decodes every HTML5 name (`…` here); this table stops at Latin-1.
        assert_eq!(html_unescape("&hellip;"), "&hellip;");
        assert_eq!(basic_clean("  &amp;amp;  "), "&");
    }

    #[test]
    fn whitespace_is_collapsed_and_stripped() {
        assert_eq!(whitespace_clean("  a \t\n b\u{3000}c  "), "a b c");
        assert_eq!(whitespace_clean("\u{1c}x\u{1f}"), "x");
    }
}
