//! Where the installed encoder weights live.
//!
//! `scripts/install-encoders` installs into `${SSPA_CACHE:-~/.cache/sspa-pipe}/encoders` and
//! exposes stable directories there:
//!
//! | directory | content | override |
//! |---|---|---|
//! | `<root>/all-MiniLM-L6-v2` | `config.json`, `model.safetensors`, `tokenizer.json`, … | `SSPA_MINILM_DIR` |
//! | `<root>/efficientnet-lite0` | `model.safetensors` (converted from the `.pth`) | `SSPA_EFFICIENTNET_DIR` |
//!
//! `<root>` is `SSPA_ENCODERS_DIR` when set.

use std::path::PathBuf;

/// Name of the MiniLM directory under the encoders root.
pub const MINILM: &str = "all-MiniLM-L6-v2";
/// Name of the EfficientNet-Lite0 directory under the encoders root.
pub const EFFICIENTNET_LITE0: &str = "efficientnet-lite0";

/// `SSPA_CACHE`, else `$HOME/.cache/sspa-pipe`: where the install scripts put what they install.
pub fn cache_root() -> PathBuf {
    std::env::var_os("SSPA_CACHE").map(PathBuf::from).unwrap_or_else(|| {
        let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
        home.join(".cache").join("sspa-pipe")
    })
}

/// `SSPA_ENCODERS_DIR`, else `$SSPA_CACHE/encoders`, else `$HOME/.cache/sspa-pipe/encoders`.
pub fn encoders_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("SSPA_ENCODERS_DIR") {
        return PathBuf::from(dir);
    }
    cache_root().join("encoders")
}

/// The Python the benchmarks run their PyTorch sides with: `SSPA_BENCH_TORCH_PYTHON`, else the
/// venv of `scripts/install-torch` (`<cache>/torch/bin/python`) when it exists.
pub fn torch_python() -> Option<PathBuf> {
    if let Some(python) = std::env::var_os("SSPA_BENCH_TORCH_PYTHON") {
        return Some(PathBuf::from(python));
    }
    Some(cache_root().join("torch").join("bin").join("python")).filter(|python| python.exists())
}

/// The MiniLM model directory: `SSPA_MINILM_DIR` or `<root>/all-MiniLM-L6-v2`.
pub fn minilm_dir() -> PathBuf {
    std::env::var_os("SSPA_MINILM_DIR").map(PathBuf::from).unwrap_or_else(|| encoders_root().join(MINILM))
}

/// The EfficientNet-Lite0 directory: `SSPA_EFFICIENTNET_DIR` or `<root>/efficientnet-lite0`.
pub fn efficientnet_dir() -> PathBuf {
    std::env::var_os("SSPA_EFFICIENTNET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| encoders_root().join(EFFICIENTNET_LITE0))
}
