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

/// `SSPA_ENCODERS_DIR`, else `$SSPA_CACHE/encoders`, else `$HOME/.cache/sspa-pipe/encoders`.
pub fn encoders_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("SSPA_ENCODERS_DIR") {
        return PathBuf::from(dir);
    }
    let cache = std::env::var_os("SSPA_CACHE").map(PathBuf::from).unwrap_or_else(|| {
        let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
        home.join(".cache").join("sspa-pipe")
    });
    cache.join("encoders")
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
