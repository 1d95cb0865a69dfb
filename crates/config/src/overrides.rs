//! `-S key=value` overrides (as `dvc exp run -S`): a dotted config key and a TOML value, applied
//! to the parsed file before validation, so an overridden value is checked exactly like one
//! written in the file.

use std::fmt;
use std::str::FromStr;

/// One override, e.g. `train.lr=2e-3` or `model.preset=clip-rn50`.
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    /// Dotted key, e.g. `train.asl.gamma_neg`.
    pub key: String,
    /// The value set at `key`, as TOML (a bare word that is not TOML is a string).
    pub value: toml::Value,
    /// The argument as given, for messages.
    pub argument: String,
}

impl FromStr for Override {
    type Err = String;

    /// `KEY=VALUE`: the value is TOML (`2e-3`, `true`, `"text"`, `["a", "b"]`); a bare word that
    /// is not TOML is taken as a string (`model.preset=clip-rn50`).
    fn from_str(argument: &str) -> Result<Self, Self::Err> {
        let (key, raw) =
            argument.split_once('=').ok_or_else(|| format!("`{argument}` is not KEY=VALUE (e.g. `train.lr=2e-3`)"))?;
        let key = key.trim();
        let well_formed = !key.is_empty()
            && key
                .split('.')
                .all(|part| !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
        if !well_formed {
            return Err(format!("`{key}` in `{argument}` is not a dotted config key (e.g. `train.lr`)"));
        }
        let raw = raw.trim();
        let value = match toml::from_str::<toml::Table>(&format!("value = {raw}")) {
            Ok(mut table) => table.remove("value").ok_or_else(|| format!("`{raw}` is not a TOML value"))?,
            Err(_) if !raw.is_empty() && !raw.starts_with(['[', '{', '"', '\'']) => toml::Value::String(raw.to_owned()),
            Err(e) => return Err(format!("value `{raw}` of `{key}` is not TOML: {}", e.message().trim())),
        };
        Ok(Self { key: key.to_owned(), value, argument: argument.to_owned() })
    }
}

impl fmt::Display for Override {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.argument)
    }
}

impl Override {
    /// Sets the value in `root`, creating the tables on its path that the file leaves out.
    ///
    /// # Errors
    /// A message when a key on the path holds a value that is not a table.
    pub(crate) fn apply(&self, root: &mut toml::Table) -> Result<(), String> {
        let parts: Vec<&str> = self.key.split('.').collect();
        let (last, parents) = parts.split_last().ok_or("empty key")?;
        let mut table = root;
        for (depth, part) in parents.iter().enumerate() {
            let entry = table.entry((*part).to_owned()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
            table = match entry {
                toml::Value::Table(inner) => inner,
                other => {
                    return Err(format!(
                        "`{}` is a {}, not a table: it cannot hold `{}`",
                        parts[..=depth].join("."),
                        other.type_str(),
                        self.key
                    ));
                }
            };
        }
        table.insert((*last).to_owned(), self.value.clone());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_toml_and_bare_words_strings() {
        let parsed = |text: &str| text.parse::<Override>().expect("override");
        assert_eq!(parsed("train.lr=2e-3").value, toml::Value::Float(2e-3));
        assert_eq!(parsed("train.epochs=3").value, toml::Value::Integer(3));
        assert_eq!(parsed("ablation.gate=false").value, toml::Value::Boolean(false));
        assert_eq!(parsed("model.preset=clip-rn50").value, toml::Value::String("clip-rn50".into()));
        assert_eq!(parsed("llm.model=\"a b\"").value, toml::Value::String("a b".into()));
        assert_eq!(parsed("llm.stop=[\"\\n\", \".\"]").value.as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn malformed_arguments_are_named() {
        for (argument, needle) in [
            ("train.lr", "is not KEY=VALUE"),
            ("=3", "is not a dotted config key"),
            ("train..lr=3", "is not a dotted config key"),
            ("llm.stop=[\"a\"", "is not TOML"),
        ] {
            let error = argument.parse::<Override>().expect_err(argument);
            assert!(error.contains(needle), "{argument}: {error}");
        }
    }

    #[test]
    fn a_scalar_on_the_path_cannot_hold_a_key() {
        let mut root: toml::Table = toml::from_str("[train]\nlr = 1.0\n").expect("toml");
        let error = "train.lr.x=1".parse::<Override>().expect("override").apply(&mut root).expect_err("scalar");
        assert!(error.contains("`train.lr` is a float, not a table"), "{error}");
        "ablation.gate=false".parse::<Override>().expect("override").apply(&mut root).expect("new table");
        assert_eq!(root["ablation"]["gate"], toml::Value::Boolean(false));
    }
}
