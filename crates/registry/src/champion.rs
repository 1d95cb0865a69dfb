//! The model a candidate is judged against. The gate fails closed: when the alias's version
//! cannot be resolved or verified, the champion is the newest intact version the alias pointed at
//! before; when there is none, the candidate has nothing to beat and is refused (unless forced).
//! Only a registry where no version was ever promoted lets a candidate become the first version.

use crate::{DecisionKind, Registry, Version};

/// Who a candidate must beat.
#[derive(Debug)]
pub enum Champion {
    /// No version was ever promoted to the alias: the candidate may become the first.
    First,
    /// The alias's version, intact.
    Current(Version),
    /// The alias's version cannot be used (`why`); `version` is the newest intact one it pointed
    /// at before.
    Fallback { version: Version, why: String },
    /// Neither the alias's version nor any it pointed at before can be used (`why`).
    Unusable { why: String },
}

impl Champion {
    /// The version to compare with, if any.
    pub fn version(&self) -> Option<&Version> {
        match self {
            Self::Current(version) | Self::Fallback { version, .. } => Some(version),
            Self::First | Self::Unusable { .. } => None,
        }
    }
}

impl Registry {
    /// The champion behind `alias` (see [`Champion`]).
    pub fn champion(&self, alias: &str) -> Champion {
        let (why, earlier) = match self.alias(alias) {
            Ok(Some(file)) => match self.version(file.version) {
                Ok(version) => return Champion::Current(version),
                Err(error) => {
                    (format!("`{alias}` points at v{}, which cannot be used: {error}", file.version), file.history)
                }
            },
            Ok(None) => {
                let logged = self.logged_history(alias);
                let present = self.version_numbers().unwrap_or_default();
                match (logged, present.is_empty()) {
                    (Ok(logged), true) if logged.is_empty() => return Champion::First,
                    (Ok(logged), _) if logged.is_empty() => {
                        return Champion::Unusable {
                            why: format!(
                                "the registry `{}` holds {} but no alias `{alias}` and no promotion in decisions.jsonl; \
                                 promote one with `sspa-pipe models promote`",
                                self.dir.display(),
                                present.iter().map(|v| format!("v{v}")).collect::<Vec<_>>().join(", ")
                            ),
                        };
                    }
                    (Ok(logged), _) => (format!("the alias file of `{alias}` is gone"), logged),
                    (Err(error), _) => {
                        return Champion::Unusable {
                            why: format!("the alias `{alias}` is not set and the decision log cannot be read: {error}"),
                        };
                    }
                }
            }
            Err(error) => match self.logged_history(alias) {
                Ok(logged) => (format!("{error}"), logged),
                Err(log) => {
                    return Champion::Unusable {
                        why: format!("{error}; the decision log cannot be read either: {log}"),
                    };
                }
            },
        };
        let mut passed = Vec::new();
        for number in earlier.iter().rev() {
            match self.version(*number) {
                Ok(version) => {
                    let why = if passed.is_empty() { why } else { format!("{why}; passed over {}", passed.join("; ")) };
                    return Champion::Fallback { version, why };
                }
                Err(error) => passed.push(format!("v{number} ({error})")),
            }
        }
        let tried = if earlier.is_empty() {
            "it pointed at no version before".to_owned()
        } else {
            format!("no version it pointed at before is intact: {}", passed.join("; "))
        };
        Champion::Unusable { why: format!("{why}; {tried}") }
    }

    /// The versions `alias` was moved to, oldest first, as `decisions.jsonl` recorded them
    /// (repeats of the same version in a row kept once): the alias's history when its own file
    /// is gone or unreadable.
    pub(crate) fn logged_history(&self, alias: &str) -> Result<Vec<u32>, crate::RegistryError> {
        let log = self.decisions()?;
        let mut history: Vec<u32> = Vec::new();
        for decision in log.decisions.iter().filter(|d| d.alias == alias) {
            let moved =
                matches!(decision.decision, DecisionKind::Promoted | DecisionKind::Forced | DecisionKind::RolledBack);
            if let Some(version) = decision.version.filter(|_| moved)
                && history.last() != Some(&version)
            {
                history.push(version);
            }
        }
        Ok(history)
    }
}
