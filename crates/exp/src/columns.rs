//! The experiment table's typed columns: what [`crate::build`] aggregates into, what the
//! renderers read, and how the table becomes an Arrow record batch for its Parquet file.

use crate::Table;
use arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray, UInt32Array};
use arrow_schema::{DataType, Field, Schema};
use serde_json::Value;
use std::cmp::Ordering;
use std::sync::Arc;

/// One named column, one value a variant.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: String,
    pub values: Values,
}

/// A column's values.
#[derive(Debug, Clone, PartialEq)]
pub enum Values {
    /// Names, parameters, status and errors; `None` where a variant has none.
    Text(Vec<Option<String>>),
    /// Counts of runs (`n`, `runs`).
    Count(Vec<u32>),
    /// Means, standard deviations, Δs and seconds; `None` where there is nothing to aggregate.
    Number(Vec<Option<f64>>),
}

impl Column {
    pub(crate) fn text(name: &str, values: Vec<Option<String>>) -> Self {
        Self { name: name.to_owned(), values: Values::Text(values) }
    }

    pub(crate) fn count(name: &str, values: Vec<u32>) -> Self {
        Self { name: name.to_owned(), values: Values::Count(values) }
    }

    pub(crate) fn number(name: &str, values: Vec<Option<f64>>) -> Self {
        Self { name: name.to_owned(), values: Values::Number(values) }
    }

    /// The number of rows.
    pub fn len(&self) -> usize {
        match &self.values {
            Values::Text(values) => values.len(),
            Values::Count(values) => values.len(),
            Values::Number(values) => values.len(),
        }
    }

    /// True when the column has no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Row `row` as JSON: a string, an integer, a finite number, or null (missing, NaN, ±∞).
    pub fn json(&self, row: usize) -> Value {
        match &self.values {
            Values::Text(values) => values[row].clone().map_or(Value::Null, Value::String),
            Values::Count(values) => Value::from(values[row]),
            Values::Number(values) => values[row].filter(|v| v.is_finite()).map_or(Value::Null, Value::from),
        }
    }

    /// Row `row` as a CSV field: empty for null, shortest round-trip decimal for numbers (the
    /// spelling serde_json uses: `72.0`, `1e-7`, `1e+20`), text quoted only when it holds a
    /// comma, a quote or a line break, or is empty.
    pub fn csv(&self, row: usize) -> String {
        match &self.values {
            Values::Text(values) => values[row].as_deref().map_or_else(String::new, csv_text),
            Values::Count(values) => values[row].to_string(),
            Values::Number(values) => {
                values[row].map_or_else(String::new, |v| zmij::Buffer::new().format(v).to_owned())
            }
        }
    }

    /// Compares two rows; `None` (null) sorts after every value in either direction.
    fn compare(&self, a: usize, b: usize, descending: bool) -> Ordering {
        fn ordered<T>(a: Option<T>, b: Option<T>, descending: bool, cmp: impl Fn(&T, &T) -> Ordering) -> Ordering {
            match (a, b) {
                (Some(a), Some(b)) if descending => cmp(&b, &a),
                (Some(a), Some(b)) => cmp(&a, &b),
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (None, None) => Ordering::Equal,
            }
        }
        match &self.values {
            Values::Text(values) => ordered(values[a].as_ref(), values[b].as_ref(), descending, |a, b| a.cmp(b)),
            Values::Count(values) => ordered(Some(values[a]), Some(values[b]), descending, Ord::cmp),
            Values::Number(values) => ordered(values[a], values[b], descending, f64::total_cmp),
        }
    }

    fn reorder(&mut self, order: &[usize]) {
        fn pick<T: Clone>(values: &mut Vec<T>, order: &[usize]) {
            *values = order.iter().map(|&row| values[row].clone()).collect();
        }
        match &mut self.values {
            Values::Text(values) => pick(values, order),
            Values::Count(values) => pick(values, order),
            Values::Number(values) => pick(values, order),
        }
    }

    fn arrow(&self) -> (Field, ArrayRef) {
        match &self.values {
            Values::Text(values) => (
                Field::new(&self.name, DataType::Utf8, true),
                Arc::new(values.iter().map(Option::as_deref).collect::<StringArray>()),
            ),
            Values::Count(values) => {
                (Field::new(&self.name, DataType::UInt32, false), Arc::new(UInt32Array::from(values.clone())))
            }
            Values::Number(values) => {
                (Field::new(&self.name, DataType::Float64, true), Arc::new(Float64Array::from(values.clone())))
            }
        }
    }
}

fn csv_text(text: &str) -> String {
    if text.is_empty() {
        return "\"\"".to_owned();
    }
    if text.contains([',', '"', '\n', '\r']) { format!("\"{}\"", text.replace('"', "\"\"")) } else { text.to_owned() }
}

impl Table {
    /// The number of rows (variants).
    pub fn height(&self) -> usize {
        self.columns.first().map_or(0, Column::len)
    }

    /// The column called `name`.
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|column| column.name == name)
    }

    /// Sorts the rows by column `name` (stable: ties keep their order), nulls last. An unknown
    /// name leaves the order as it is ([`crate::build`] checks the name first).
    pub(crate) fn sort_by(&mut self, name: &str, descending: bool) {
        let Some(column) = self.column(name) else { return };
        let mut order: Vec<usize> = (0..self.height()).collect();
        order.sort_by(|&a, &b| column.compare(a, b, descending));
        for column in &mut self.columns {
            column.reorder(&order);
        }
    }

    /// The table as CSV: a header of the column names, one line a row.
    pub(crate) fn csv(&self) -> String {
        let line = |cells: Vec<String>| cells.join(",") + "\n";
        let mut out = line(self.columns.iter().map(|column| csv_text(&column.name)).collect());
        for row in 0..self.height() {
            out += &line(self.columns.iter().map(|column| column.csv(row)).collect());
        }
        out
    }
}

/// The columns as one Arrow record batch, in order.
pub(crate) fn record_batch(columns: &[Column]) -> RecordBatch {
    let (fields, arrays): (Vec<Field>, Vec<ArrayRef>) = columns.iter().map(Column::arrow).unzip();
    RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)
        .expect("the table's columns have one length each and their arrays match their fields")
}
