//! Aliases: small JSON files naming a version, replaced atomically; each remembers the versions
//! it pointed at before, so `rollback` can go back.

use crate::Registry;
use crate::error::RegistryError;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// `aliases/<name>.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AliasFile {
    pub alias: String,
    pub version: u32,
    /// Versions the alias pointed at before, oldest first (the last is the rollback target).
    pub history: Vec<u32>,
    pub updated_at: String,
    /// Why it was last moved (`promoted by the gate`, a user's `--reason`, `rollback`).
    pub reason: String,
}

impl Registry {
    fn alias_path(&self, alias: &str) -> PathBuf {
        self.dir.join("aliases").join(format!("{alias}.json"))
    }

    /// The alias file, or `None` when the alias was never set.
    pub fn alias(&self, alias: &str) -> Result<Option<AliasFile>, RegistryError> {
        let path = self.alias_path(alias);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(RegistryError::json(&path)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(RegistryError::io(&path)(e)),
        }
    }

    /// Every alias, by name.
    pub fn aliases(&self) -> Result<Vec<AliasFile>, RegistryError> {
        let dir = self.dir.join("aliases");
        let Ok(entries) = std::fs::read_dir(&dir) else { return Ok(Vec::new()) };
        let mut names: Vec<String> = entries
            .flatten()
            .filter_map(|e| e.file_name().to_string_lossy().strip_suffix(".json").map(str::to_owned))
            .filter(|name| crate::Reference::is_alias_name(name))
            .collect();
        names.sort();
        let mut out = Vec::new();
        for name in names {
            if let Some(file) = self.alias(&name)? {
                out.push(file);
            }
        }
        Ok(out)
    }

    /// Points `alias` at `version` (which must be intact), remembering where it pointed before.
    ///
    /// # Errors
    /// [`RegistryError::Reference`] for a bad alias name, a missing or damaged version, or I/O.
    pub fn set_alias(&self, alias: &str, version: u32, reason: &str) -> Result<AliasFile, RegistryError> {
        if !crate::Reference::is_alias_name(alias) {
            return Err(RegistryError::Reference(alias.to_owned()));
        }
        self.version(version)?;
        let mut history = Vec::new();
        match self.alias(alias) {
            Ok(Some(old)) => {
                history = old.history;
                if old.version != version {
                    history.push(old.version);
                }
            }
            Ok(None) => {}
            // An alias file that does not parse (damaged) is replaced; its history is rebuilt
            // from the decision log, which recorded every move.
            Err(error @ RegistryError::Json { .. }) => {
                history = self.logged_history(alias).unwrap_or_default();
                history.retain(|v| *v != version);
                tracing::warn!(
                    "{error}; replaced, with the history the decision log recorded ({})",
                    history.iter().map(|v| format!("v{v}")).collect::<Vec<_>>().join(", ")
                );
            }
            Err(error) => return Err(error),
        }
        self.write_alias(AliasFile {
            alias: alias.to_owned(),
            version,
            history,
            updated_at: sspa_fsio::timestamp(),
            reason: reason.to_owned(),
        })
    }

    /// Points `alias` back at the version it pointed at before the last move. Versions that are
    /// damaged are passed over (with a warning).
    ///
    /// # Errors
    /// [`RegistryError::NoAlias`], [`RegistryError::NothingToRollBack`], or I/O.
    pub fn rollback(&self, alias: &str, reason: &str) -> Result<AliasFile, RegistryError> {
        let Some(mut file) = self.alias(alias)? else {
            return Err(RegistryError::NoAlias {
                dir: self.dir.clone(),
                alias: alias.to_owned(),
                aliases: self.aliases()?.into_iter().map(|a| a.alias).collect(),
            });
        };
        while let Some(previous) = file.history.pop() {
            match self.version(previous) {
                Ok(_) => {
                    file.version = previous;
                    file.updated_at = sspa_fsio::timestamp();
                    file.reason = reason.to_owned();
                    return self.write_alias(file);
                }
                Err(e) => tracing::warn!("rollback of `{alias}` passes over v{previous}: {e}"),
            }
        }
        Err(RegistryError::NothingToRollBack { alias: alias.to_owned(), version: file.version })
    }

    fn write_alias(&self, file: AliasFile) -> Result<AliasFile, RegistryError> {
        let path = self.alias_path(&file.alias);
        let json = serde_json::to_vec_pretty(&file).map_err(RegistryError::json(&path))?;
        sspa_fsio::write_atomic(&path, &json).map_err(RegistryError::io(&path))?;
        Ok(file)
    }
}
