//! `sspa-pipe manifest check|pin`: the `[checksums]` table of dataset manifests.
//!
//! The data root is `--data-root`, else `$SSPA_DATA_ROOT` (when set and non-empty), else `data`
//! beside the manifest's directory (`<project>/data` for `<project>/data_manifest/*.toml`).

use crate::exit;
use clap::Subcommand;
use sspa_data::checksums::{self, ChecksumStatus, PinStatus};
use std::path::{Path, PathBuf};

#[derive(Debug, Subcommand)]
pub enum ManifestCommand {
    /// Verify every `[checksums]` entry of the manifests; exit 2 on a mismatch or a missing file.
    Check {
        #[arg(required = true, value_name = "MANIFEST")]
        manifests: Vec<PathBuf>,
        /// Directory the manifest's paths are relative to.
        #[arg(long, value_name = "DIR")]
        data_root: Option<PathBuf>,
    },
    /// Hash the annotation files present and write them into the manifest's `[checksums]`.
    Pin {
        #[arg(value_name = "MANIFEST")]
        manifest: PathBuf,
        /// Directory the manifest's paths are relative to.
        #[arg(long, value_name = "DIR")]
        data_root: Option<PathBuf>,
    },
}

pub fn manifest(command: &ManifestCommand) -> anyhow::Result<u8> {
    match command {
        ManifestCommand::Check { manifests, data_root } => check(manifests, data_root.as_deref()),
        ManifestCommand::Pin { manifest, data_root } => pin(manifest, data_root.as_deref()),
    }
}

fn data_root_for(manifest: &Path, given: Option<&Path>) -> PathBuf {
    if let Some(root) = given {
        return root.to_path_buf();
    }
    if let Some(root) = std::env::var_os("SSPA_DATA_ROOT").filter(|v| !v.is_empty()) {
        return PathBuf::from(root);
    }
    manifest.parent().and_then(Path::parent).unwrap_or(Path::new("")).join("data")
}

fn check(manifests: &[PathBuf], data_root: Option<&Path>) -> anyhow::Result<u8> {
    let (mut checked, mut failed) = (0usize, 0usize);
    for manifest in manifests {
        let root = data_root_for(manifest, data_root);
        let reports = match checksums::check(manifest, &root) {
            Ok(reports) => reports,
            Err(error) => {
                eprintln!("error: {:#}", anyhow::Error::from(error));
                failed += 1;
                continue;
            }
        };
        let shown = manifest.display();
        for report in &reports {
            let place = match report.line {
                Some(line) => format!("{shown}:{line}"),
                None => shown.to_string(),
            };
            match &report.status {
                ChecksumStatus::Ok => println!("ok        {place}  {}", report.file),
                ChecksumStatus::Mismatch { expected, actual } => {
                    println!("MISMATCH  {place}  {}: expected {expected}, found {actual}", report.file)
                }
                ChecksumStatus::Missing => {
                    println!("MISSING   {place}  {}: `{}` not found", report.file, report.path.display())
                }
                ChecksumStatus::Unpinned => {
                    println!("unpinned  {place}  {} (run `sspa-pipe manifest pin {shown}`)", report.file)
                }
            }
        }
        checked += reports.iter().filter(|r| r.status != ChecksumStatus::Unpinned).count();
        failed += reports.iter().filter(|r| r.is_failure()).count();
    }
    if failed > 0 {
        eprintln!("error: {failed} of the checks failed ({checked} pinned files checked)");
        return Ok(exit::USAGE);
    }
    tracing::info!("{checked} pinned file(s) match");
    Ok(exit::OK)
}

fn pin(manifest: &Path, data_root: Option<&Path>) -> anyhow::Result<u8> {
    let root = data_root_for(manifest, data_root);
    let reports = match checksums::pin(manifest, &root) {
        Ok(reports) => reports,
        Err(error) => {
            eprintln!("error: {:#}", anyhow::Error::from(error));
            return Ok(exit::USAGE);
        }
    };
    for report in &reports {
        match &report.status {
            PinStatus::Added { blake3 } => println!("added      {}  {blake3}", report.file),
            PinStatus::Changed { previous, blake3 } => {
                println!("changed    {}  {blake3} (was {previous})", report.file)
            }
            PinStatus::Unchanged { blake3 } => println!("unchanged  {}  {blake3}", report.file),
            PinStatus::Missing => {
                tracing::warn!("`{}` not found under `{}`: not pinned", report.file, root.display());
                println!("missing    {}", report.file);
            }
        }
    }
    Ok(exit::OK)
}
