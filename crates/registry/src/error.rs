//! Registry errors; each names the file or the version it is about.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("`{path}`: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{path}`: not valid registry JSON: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// A version's file is missing, truncated or altered since it was registered.
    #[error("registry version v{version} is damaged: `{path}` {reason}")]
    Corrupt { version: u32, path: PathBuf, reason: String },
    #[error("the registry `{dir}` has no version v{version}{}", known_versions(.known))]
    NoVersion { dir: PathBuf, version: u32, known: Vec<u32> },
    #[error("the registry `{dir}` has no alias `{alias}`{}", if .aliases.is_empty() { " (no model was promoted yet)".to_owned() } else { format!(" (aliases: {})", .aliases.join(", ")) })]
    NoAlias { dir: PathBuf, alias: String, aliases: Vec<String> },
    #[error("alias `{alias}` has no earlier version to roll back to (it has pointed only at v{version})")]
    NothingToRollBack { alias: String, version: u32 },
    #[error("`{0}` is not a registry reference: use an alias (a-z, 0-9, -, _) or a version `v<N>`")]
    Reference(String),
    #[error("`{path}` lacks the trained model file `{file}`")]
    MissingSource { path: PathBuf, file: String },
}

fn known_versions(known: &[u32]) -> String {
    if known.is_empty() {
        " (the registry is empty)".to_owned()
    } else {
        format!(" (versions: {})", known.iter().map(|v| format!("v{v}")).collect::<Vec<_>>().join(", "))
    }
}

impl RegistryError {
    pub(crate) fn io(path: &Path) -> impl Fn(std::io::Error) -> Self + '_ {
        move |source| Self::Io { path: path.to_owned(), source }
    }

    pub(crate) fn json(path: &Path) -> impl Fn(serde_json::Error) -> Self + '_ {
        move |source| Self::Json { path: path.to_owned(), source }
    }
}
