//! The model registry of a workspace (`<workspace>/models/`): what `sspa-pipe retrain` promotes
//! and `predict --model` serves.
//!
//! ```text
//! models/v<N>/                 one promoted model: the train stage's outputs (weights raw + EMA,
//!                              config.json, features.json, ...) and version.json (run id, keys,
//!                              metrics, lineage, every file's size and BLAKE3)
//! models/.tmp-v<N>-<pid>/      a version being copied: never read, swept by the next promotion
//! models/aliases/<name>.json   the version an alias (`current`, or a user's) points at and the
//!                              versions it pointed at before (for rollback); replaced atomically
//! models/decisions.jsonl       every gate decision, one JSON object per line, appended
//! ```
//!
//! A version directory appears by one rename once all its files are written and hashed, and an
//! alias file is replaced by one rename, so a reader (or a process killed half-way) sees an alias
//! pointing at the old version or at the new one, never at a partial one. Versions are immutable:
//! [`Registry::version`] checks every file against `version.json` before it is used. The caller
//! holds the workspace lock for every write.

mod alias;
mod champion;
mod decision;
mod error;
mod gate;
mod version;

pub use alias::AliasFile;
pub use champion::Champion;
pub use decision::{Decision, DecisionKind, DecisionLog, TornLine};
pub use error::RegistryError;
pub use gate::{Gate, Verdict, metric};
pub use version::{FileEntry, NewVersion, Origin, Version, VersionInfo};

use std::path::{Path, PathBuf};

/// The alias `retrain` moves and `predict --model CONFIG` serves.
pub const CURRENT: &str = "current";

/// A reference to a registry model: `current`, another alias, or `v3` (the config crate's one
/// model-reference type; `train.init` names one too).
pub use sspa_config::{ModelReference as Reference, ReferenceError};

/// One workspace's registry. Reading never creates anything; writing creates the directory.
#[derive(Debug, Clone)]
pub struct Registry {
    dir: PathBuf,
}

impl Registry {
    /// The registry of the workspace at `workspace` (`<workspace>/models`).
    pub fn of_workspace(workspace: &Path) -> Self {
        Self { dir: workspace.join("models") }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether the registry directory exists at all.
    pub fn exists(&self) -> bool {
        self.dir.is_dir()
    }

    /// The version a reference names, checked ([`Registry::version`]).
    ///
    /// # Errors
    /// [`RegistryError::NoAlias`] / [`RegistryError::NoVersion`], or a damaged version.
    pub fn resolve(&self, reference: &Reference) -> Result<Version, RegistryError> {
        let number = match reference {
            Reference::Version(number) => *number,
            Reference::Alias(alias) => match self.alias(alias)? {
                Some(file) => file.version,
                None => {
                    return Err(RegistryError::NoAlias {
                        dir: self.dir.clone(),
                        alias: alias.clone(),
                        aliases: self.aliases()?.into_iter().map(|a| a.alias).collect(),
                    });
                }
            },
        };
        self.version(number)
    }
}

#[cfg(test)]
mod tests;
