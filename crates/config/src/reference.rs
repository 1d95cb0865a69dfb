//! The one way to name a registry model: an alias (`current`, or a user's: a-z, 0-9, `-`, `_`) or a
//! version `v<N>`. `train.init` ([`crate::TrainInit`]), `predict --model`, `models show|promote`
//! and the registry's own directory and alias names all go through it.

/// A registry model.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ModelReference {
    /// The model an alias points at (`current`, or a user alias).
    Alias(String),
    /// A registry version (`v3`).
    Version(u32),
}

/// Why a text is no [`ModelReference`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    /// `v0`: versions are numbered from 1.
    #[error("`{0}`: registry versions start at v1")]
    VersionZero(String),
    /// Neither an alias name nor `v<N>`.
    #[error("`{0}` is not a registry reference: use an alias (a-z, 0-9, -, _) or a version `v<N>`")]
    Invalid(String),
}

impl ModelReference {
    /// `v<N>` (N ≥ 1) or an alias name.
    ///
    /// # Errors
    /// [`ReferenceError`] naming the text.
    pub fn parse(text: &str) -> Result<Self, ReferenceError> {
        if let Some(digits) = version_digits(text) {
            return digits
                .parse::<u32>()
                .ok()
                .filter(|n| *n > 0)
                .map(Self::Version)
                .ok_or_else(|| ReferenceError::VersionZero(text.to_owned()));
        }
        if Self::is_alias_name(text) {
            return Ok(Self::Alias(text.to_owned()));
        }
        Err(ReferenceError::Invalid(text.to_owned()))
    }

    /// Whether `name` can name an alias: a-z, 0-9, `-`, `_`, not empty.
    pub fn is_alias_name(name: &str) -> bool {
        !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    }

    /// The number of a version's name (`v12` → 12), as the registry names its directories.
    pub fn version_number(name: &str) -> Option<u32> {
        version_digits(name)?.parse().ok()
    }
}

/// The digits of `v<digits>`.
fn version_digits(text: &str) -> Option<&str> {
    text.strip_prefix('v').filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

impl std::fmt::Display for ModelReference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Alias(alias) => f.write_str(alias),
            Self::Version(version) => write!(f, "v{version}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_aliases_parse_and_print_back() {
        assert_eq!(ModelReference::parse("v12"), Ok(ModelReference::Version(12)));
        assert_eq!(ModelReference::parse("current"), Ok(ModelReference::Alias("current".into())));
        assert_eq!(ModelReference::parse("staging-2").map(|r| r.to_string()), Ok("staging-2".into()));
        assert_eq!(ModelReference::parse("v0"), Err(ReferenceError::VersionZero("v0".into())));
        assert!(matches!(ModelReference::parse("Prod!"), Err(ReferenceError::Invalid(_))));
        assert!(matches!(ModelReference::parse(""), Err(ReferenceError::Invalid(_))));
        assert_eq!(ModelReference::version_number("v7"), Some(7));
        assert_eq!(ModelReference::version_number("v"), None);
        assert_eq!(ModelReference::version_number(".tmp-v3-12"), None);
    }
}
