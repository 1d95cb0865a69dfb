//! Streaming readers for the annotation formats: the file is read through a small buffer and each
//! image entry is handed on as soon as it is parsed, so memory does not grow with the file.
//!
//! JSON: the top-level object's keys are visited in file order; an array under a key the caller
//! streams is walked element by element, each element kept only as its raw JSON text (so the
//! importers can still name the line an entry starts on and parse it with their own messages).

use crate::error::DataError;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use std::cell::Cell;
use std::io::{BufReader, Read};
use std::path::Path;
use std::rc::Rc;

/// Read buffer of the streaming readers.
pub(crate) const READ_BUFFER: usize = 64 * 1024;

/// Counts the newlines of everything read through it.
struct LineCounting<R> {
    inner: R,
    newlines: Rc<Cell<usize>>,
}

impl<R: Read> Read for LineCounting<R> {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buffer)?;
        let read = buffer.get(..n).unwrap_or_default();
        self.newlines.set(self.newlines.get() + read.iter().filter(|&&b| b == b'\n').count());
        Ok(n)
    }
}

/// What to do with the value of a top-level key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Field {
    /// An array: hand on each element with the line it starts on.
    Stream,
    /// Hand on the whole value (for small values such as a class list).
    Keep,
    /// Parse and drop.
    Skip,
}

/// What [`read_object`] hands on.
pub(crate) enum Item<'a> {
    Element { key: &'a str, line: usize, raw: &'a RawValue },
    Value { key: &'a str, raw: &'a RawValue },
}

struct Context<'c> {
    newlines: Rc<Cell<usize>>,
    choose: &'c dyn Fn(&str) -> Field,
    on: &'c mut dyn FnMut(Item<'_>) -> Result<(), DataError>,
    /// The error a callback returned (serde only carries strings).
    stopped: Option<DataError>,
}

impl Context<'_> {
    fn hand_on<E: serde::de::Error>(&mut self, item: Item<'_>) -> Result<(), E> {
        (self.on)(item).map_err(|error| {
            self.stopped = Some(error);
            E::custom("stopped by the importer")
        })
    }
}

/// Streams the top-level JSON object of `path`; `choose(key)` says what to do with each value.
pub(crate) fn read_object(
    path: &Path,
    choose: &dyn Fn(&str) -> Field,
    on: &mut dyn FnMut(Item<'_>) -> Result<(), DataError>,
) -> Result<(), DataError> {
    let file = std::fs::File::open(path).map_err(|e| DataError::read(path, e))?;
    let newlines = Rc::new(Cell::new(0));
    let reader = LineCounting { inner: BufReader::with_capacity(READ_BUFFER, file), newlines: Rc::clone(&newlines) };
    let mut context = Context { newlines, choose, on, stopped: None };
    let mut deserializer = serde_json::Deserializer::from_reader(reader);
    let result =
        (&mut deserializer).deserialize_map(ObjectVisitor { context: &mut context }).and_then(|()| deserializer.end());
    if let Some(error) = context.stopped.take() {
        return Err(error);
    }
    result.map_err(|e| match e.classify() {
        serde_json::error::Category::Io => DataError::read(path, std::io::Error::other(e.to_string())),
        _ => DataError::annotation(path, format!("{}:{}: {e}", e.line(), e.column())),
    })
}

struct ObjectVisitor<'a, 'c> {
    context: &'a mut Context<'c>,
}

impl<'de> Visitor<'de> for ObjectVisitor<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            match (self.context.choose)(&key) {
                Field::Stream => map.next_value_seed(ArraySeed { key: &key, context: &mut *self.context })?,
                Field::Keep => {
                    let raw: Box<RawValue> = map.next_value()?;
                    self.context.hand_on(Item::Value { key: &key, raw: &raw })?;
                }
                Field::Skip => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

struct ArraySeed<'a, 'c> {
    key: &'a str,
    context: &'a mut Context<'c>,
}

impl<'de> DeserializeSeed<'de> for ArraySeed<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ArraySeed<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "an array under `{}`", self.key)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let newlines = Rc::clone(&self.context.newlines);
        while let Some((line, raw)) = seq.next_element_seed(Lined { newlines: &newlines })? {
            self.context.hand_on::<A::Error>(Item::Element { key: self.key, line, raw: &raw })?;
        }
        Ok(())
    }
}

/// An element as raw JSON with the line it starts on. serde_json has consumed the whitespace
/// before an element and peeked at its first byte when it asks for it, so the newlines read so
/// far are exactly those before the element.
struct Lined<'a> {
    newlines: &'a Cell<usize>,
}

impl<'de> DeserializeSeed<'de> for Lined<'_> {
    type Value = (usize, Box<RawValue>);

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        let line = self.newlines.get() + 1;
        let raw = <Box<RawValue> as serde::Deserialize>::deserialize(deserializer)?;
        Ok((line, raw))
    }
}

/// The raw value of top-level key `key` (read in one streaming pass that skips everything else).
pub(crate) fn read_value(path: &Path, key: &str) -> Result<Option<Box<RawValue>>, DataError> {
    let mut found = None;
    read_object(path, &|k| if k == key { Field::Keep } else { Field::Skip }, &mut |item| {
        if let Item::Value { key: k, raw } = item
            && k == key
        {
            found = Some(raw.to_owned());
        }
        Ok(())
    })?;
    Ok(found)
}

/// Parses a raw JSON value into `T`, with `what` and the line in the message.
pub(crate) fn parse_raw<T: serde::de::DeserializeOwned>(
    raw: &RawValue,
    path: &Path,
    line: Option<usize>,
    what: &str,
) -> Result<T, DataError> {
    serde_json::from_str(raw.get()).map_err(|e| match line {
        Some(line) => DataError::annotation(path, format!("{line}: {what}: {e}")),
        None => DataError::annotation(path, format!("{what}: {e}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elements_come_with_the_line_they_start_on() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("a.json");
        let text = "{\n\"skip\": [1, {\"a\": [2]}],\n\"list\": [\n  [\"a\", 1],\n\n  [\"b\",\n 2], [\"c\", 3]\n],\n\"keep\": {\"x\": 1}\n}";
        std::fs::write(&path, text).expect("write");
        let mut seen = Vec::new();
        read_object(
            &path,
            &|key| match key {
                "list" => Field::Stream,
                "keep" => Field::Keep,
                _ => Field::Skip,
            },
            &mut |item| {
                seen.push(match item {
                    Item::Element { key, line, raw } => format!("{key}:{line}:{}", raw.get()),
                    Item::Value { key, raw } => format!("{key}={}", raw.get()),
                });
                Ok(())
            },
        )
        .expect("valid");
        assert_eq!(seen, ["list:4:[\"a\", 1]", "list:6:[\"b\",\n 2]", "list:7:[\"c\", 3]", "keep={\"x\": 1}"]);
    }

    #[test]
    fn a_callback_error_stops_the_stream_and_is_returned() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("a.json");
        std::fs::write(&path, "{\"list\": [1, 2, 3]}").expect("write");
        let mut count = 0;
        let error = read_object(&path, &|_| Field::Stream, &mut |_| {
            count += 1;
            if count == 2 { Err(DataError::annotation("marker", "stop")) } else { Ok(()) }
        })
        .expect_err("stopped");
        assert_eq!(count, 2);
        assert!(error.to_string().contains("marker"), "{error}");
    }

    #[test]
    fn syntax_errors_name_line_and_column() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("a.json");
        std::fs::write(&path, "{\"list\": [1,\n 2 3]}").expect("write");
        let error = read_object(&path, &|_| Field::Stream, &mut |_| Ok(())).expect_err("syntax");
        assert!(error.to_string().contains("a.json`: 2:"), "{error}");
    }
}
