//! From a raw LLM answer to the description that is embedded (paper Eq. 4):
//! the first sentence(s), at most `max_chars` characters, then `" A photo of a {label}."`.

/// Cleans `raw` and appends the photo sentence. Whitespace runs (newlines included) become one
/// space; whole sentences are kept while they fit both limits; a first sentence longer than
/// `max_chars` is cut at a word boundary. The kept text always ends with sentence punctuation.
pub fn postprocess(raw: &str, label: &str, max_chars: usize, max_sentences: usize) -> String {
    let (body, _) = first_sentences(raw, max_chars.max(1), max_sentences.max(1));
    if body.is_empty() { format!("A photo of a {label}.") } else { format!("{body} A photo of a {label}.") }
}

/// Whether [`postprocess`] gives `raw` the description it would give the whole answer, when `raw`
/// was cut off by the token limit (`finish_reason = "length"`): true when the sentences it keeps
/// all end before the last, possibly unfinished, piece of `raw` (a piece that ends in `.` at
/// the very end counts as unfinished too: "2." may have become "2.5"). A last piece too long to
/// fit is cut the same way whatever followed it, so it does not count as kept.
pub fn cut_off_is_harmless(raw: &str, max_chars: usize, max_sentences: usize) -> bool {
    let (_, used_last) = first_sentences(raw, max_chars.max(1), max_sentences.max(1));
    !used_last
}

/// The kept text, and whether it holds the last piece of the answer whole.
fn first_sentences(raw: &str, max_chars: usize, max_sentences: usize) -> (String, bool) {
    let text = raw.split_whitespace().collect::<Vec<_>>().join(" ");
    let text = text.trim_matches(|c: char| c == '"' || c == '\'' || c.is_whitespace());
    let mut kept = String::new();
    let pieces = split_sentences(text);
    let mut used_last = false;
    for (sentences, sentence) in pieces.iter().enumerate() {
        if sentences == max_sentences
            || kept.chars().count() + usize::from(!kept.is_empty()) + sentence.chars().count() > max_chars
        {
            break;
        }
        if !kept.is_empty() {
            kept.push(' ');
        }
        kept.push_str(sentence);
        used_last = sentences + 1 == pieces.len();
    }
    if kept.is_empty() && !text.is_empty() {
        // The first sentence alone is too long: cut it at the last space that fits.
        let prefix: String = text.chars().take(max_chars.saturating_sub(1)).collect();
        let cut = match prefix.rfind(' ') {
            Some(space) if space > 0 && prefix.chars().count() < text.chars().count() => &prefix[..space],
            _ => prefix.as_str(),
        };
        kept = cut.trim_end_matches(|c: char| c == ',' || c == ';' || c == ':' || c.is_whitespace()).to_owned();
    }
    if !kept.is_empty() && !kept.ends_with(['.', '!', '?']) {
        kept.push('.');
    }
    (kept, used_last)
}

/// Sentences end at `.`, `!` or `?` followed by a space or the end; the last piece may be a
/// sentence cut short by the token limit.
fn split_sentences(text: &str) -> Vec<&str> {
    let mut sentences = Vec::new();
    let mut start = 0;
    let bytes = text.as_bytes();
    for (i, c) in text.char_indices() {
        if matches!(c, '.' | '!' | '?') && bytes.get(i + 1).is_none_or(|&next| next == b' ') {
            let sentence = text[start..=i].trim();
            if !sentence.is_empty() {
                sentences.push(sentence);
            }
            start = i + 1;
        }
    }
    let rest = text[start..].trim();
    if !rest.is_empty() {
        sentences.push(rest);
    }
    sentences
}

#[cfg(test)]
mod tests {
    use super::{cut_off_is_harmless, postprocess};

    #[test]
    fn keeps_first_sentences_and_appends_the_photo_sentence() {
        let raw = " A coat is long and dark.  It has buttons.\nIt is warm.";
        assert_eq!(postprocess(raw, "Coat", 300, 2), "A coat is long and dark. It has buttons. A photo of a Coat.");
        assert_eq!(postprocess(raw, "Coat", 300, 1), "A coat is long and dark. A photo of a Coat.");
        assert_eq!(postprocess(raw, "Coat", 30, 3), "A coat is long and dark. A photo of a Coat.");
    }

    #[test]
    fn cuts_a_long_first_sentence_at_a_word() {
        let raw = "A bag is a boxy carry item with handles, straps, pockets and zips";
        assert_eq!(postprocess(raw, "Bag", 30, 2), "A bag is a boxy carry item. A photo of a Bag.");
    }

    #[test]
    fn unfinished_sentence_gets_a_full_stop() {
        assert_eq!(postprocess("a shoe with laces", "Sneaker", 300, 2), "a shoe with laces. A photo of a Sneaker.");
        assert_eq!(postprocess("  \n ", "Sneaker", 300, 2), "A photo of a Sneaker.");
    }

    #[test]
    fn decimals_and_quotes_do_not_end_sentences() {
        let raw = "\"A 2.5 cm strap holds it. Second one. Third.\"";
        assert_eq!(postprocess(raw, "Sandal", 300, 2), "A 2.5 cm strap holds it. Second one. A photo of a Sandal.");
    }

    #[test]
    fn a_cut_off_answer_is_harmless_when_its_kept_sentences_end_before_the_cut() {
        let cut = " A coat is long and dark. It has buttons. It is wa";
        assert!(cut_off_is_harmless(cut, 300, 2));
        assert!(cut_off_is_harmless(cut, 300, 1));
        assert!(!cut_off_is_harmless(cut, 300, 3), "the third sentence is the unfinished one");
        // The unfinished piece does not fit in 45 characters; the whole one would not either.
        assert!(cut_off_is_harmless(cut, 45, 3));
        assert!(!cut_off_is_harmless(cut, 60, 3));
        // Ending in a full stop proves nothing: "It has 2." may have become "It has 2.5 cm straps."
        assert!(!cut_off_is_harmless("A coat is long. It has 2.", 300, 2));
        assert!(cut_off_is_harmless("A coat is long. It has 2.", 300, 1));
        // One endless sentence, longer than `max_chars`: cut at a word whatever followed.
        let endless = "An airplane is on a runway, often on a runway, often on a runway, often on a";
        assert!(cut_off_is_harmless(endless, 40, 2));
        assert_eq!(
            postprocess(endless, "airplane", 40, 2),
            postprocess(&format!("{endless} runway."), "airplane", 40, 2)
        );
        assert!(!cut_off_is_harmless(endless, 300, 2), "it fits, unfinished");
    }

    #[test]
    fn counts_characters_not_bytes() {
        let raw = "Ééééé ééééé. Ààààà.";
        assert_eq!(postprocess(raw, "x", 12, 2), "Ééééé ééééé. A photo of a x.");
    }
}
