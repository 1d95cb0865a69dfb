//! Shared test helpers: fixtures, installed weights, comparisons.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("fixtures")
}

pub fn fixture_json(name: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(fixtures().join(name)).unwrap();
    serde_json::from_str(&text).unwrap()
}

pub fn floats(value: &serde_json::Value) -> Vec<f32> {
    value.as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect()
}

/// The installed model directory holding `marker`, or `None` with a skip note; under `CI` a
/// missing install fails the test (CI runs `scripts/install-encoders` first).
pub fn installed(dir: PathBuf, marker: &str) -> Option<PathBuf> {
    if dir.join(marker).is_file() {
        return Some(dir);
    }
    let message = format!(
        "`{}` not found: run scripts/install-encoders (or set SSPA_ENCODERS_DIR / SSPA_MINILM_DIR / SSPA_EFFICIENTNET_DIR)",
        dir.join(marker).display()
    );
    if std::env::var_os("CI").is_some() {
        panic!("{message}");
    }
    eprintln!("skipping: {message}");
    None
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// The fixture's 224×224 crops of the named photos (`images.<name>.file` in `fixture`), decoded.
pub fn fixture_photos(fixture: &serde_json::Value, names: &[&str]) -> Vec<image::RgbImage> {
    names
        .iter()
        .map(|name| {
            let file = fixture["images"][name]["file"].as_str().unwrap();
            image::open(fixtures().join(file)).unwrap().to_rgb8()
        })
        .collect()
}
