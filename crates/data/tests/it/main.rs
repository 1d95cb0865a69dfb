//! Integration tests of sspa-data: importers on hand-written annotation files, bad input, the
//! Fashion-MNIST demo builds (mosaics and scenes), and the shard → loader round trip.

mod all_problems;
mod bad_input;
mod demo;
mod importers;
mod scenes;
mod shards;

use std::path::{Path, PathBuf};

/// A temporary data root with helpers to write files into it.
pub struct Fixture {
    pub dir: tempfile::TempDir,
}

impl Default for Fixture {
    fn default() -> Self {
        Self { dir: tempfile::tempdir().expect("temp dir") }
    }
}

impl Fixture {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `text` to `relative` (parents created) and returns the full path.
    pub fn write(&self, relative: &str, text: &str) -> PathBuf {
        self.write_bytes(relative, text.as_bytes())
    }

    pub fn write_bytes(&self, relative: &str, bytes: &[u8]) -> PathBuf {
        let path = self.root().join(relative);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, bytes).expect("write");
        path
    }

    /// Writes a manifest and loads it.
    pub fn manifest(&self, text: &str) -> sspa_data::Manifest {
        let path = self.write("manifest.toml", text);
        sspa_data::Manifest::load(&path).expect("valid manifest")
    }

    /// A solid-colour RGB PNG of `width × height`.
    pub fn png(&self, relative: &str, width: u32, height: u32, colour: [u8; 3]) -> PathBuf {
        let image = image::RgbImage::from_pixel(width, height, image::Rgb(colour));
        let mut bytes = Vec::new();
        image.write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png).expect("encode png");
        self.write_bytes(relative, &bytes)
    }

    /// A JPEG of `width × height` with a horizontal gradient.
    pub fn jpeg_bytes(width: u32, height: u32) -> Vec<u8> {
        let image = image::RgbImage::from_fn(width, height, |x, y| image::Rgb([(x * 4) as u8, (y * 4) as u8, 90]));
        let mut bytes = Vec::new();
        image.write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Jpeg).expect("encode jpeg");
        bytes
    }
}

pub fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// Targets of an imported split by file name.
pub fn targets_by_name(split: &sspa_data::Split) -> std::collections::BTreeMap<String, Vec<i8>> {
    split
        .images
        .iter()
        .map(|e| (e.path.file_name().expect("name").to_string_lossy().into_owned(), e.targets.clone()))
        .collect()
}

pub fn no_progress(_: u64, _: u64) {}
