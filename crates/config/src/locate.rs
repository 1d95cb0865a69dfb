//! Maps key paths (`train.asl.clip`) to line and column in the source text.

use toml::de::{DeTable, DeValue};

pub(crate) struct Locator<'a> {
    text: &'a str,
    table: Option<DeTable<'a>>,
}

impl<'a> Locator<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        let table = DeTable::parse(text).ok().map(|t| t.into_inner());
        Self { text, table }
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub(crate) fn position(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        (line, before[line_start..].chars().count() + 1)
    }

    /// Where the key itself is written.
    pub(crate) fn key(&self, keys: &[&str]) -> (usize, usize) {
        self.key_or_parent(keys)
    }

    /// The key, or the deepest parent that exists (for missing keys).
    pub(crate) fn key_or_parent(&self, keys: &[&str]) -> (usize, usize) {
        self.find(keys, false)
    }

    /// The value, or the deepest parent key that exists.
    pub(crate) fn value_or_parent(&self, keys: &[&str]) -> (usize, usize) {
        self.find(keys, true)
    }

    fn find(&self, keys: &[&str], want_value: bool) -> (usize, usize) {
        let Some(mut table) = self.table.as_ref() else { return (1, 1) };
        let mut best = 0;
        for (depth, key) in keys.iter().enumerate() {
            let Some((k, v)) = table.iter().find(|(k, _)| k.get_ref().as_ref() == *key) else { break };
            let last = depth + 1 == keys.len();
            best = if last && want_value { v.span().start } else { k.span().start };
            match v.get_ref() {
                DeValue::Table(inner) => table = inner,
                DeValue::Array(items) => {
                    if let Some(index) = keys.get(depth + 1).and_then(|k| k.parse::<usize>().ok())
                        && let Some(item) = items.get(index)
                    {
                        best = item.span().start;
                    }
                    break;
                }
                _ => break,
            }
        }
        self.position(best)
    }
}
