//! The table out: CSV and JSON keep every aggregate as a number (`raw.mAP`, `raw.mAP_std`,
//! `raw.mAP_delta`); the text, Markdown and HTML tables show one cell per metric,
//! `mean ± std (Δ)`, for people.

use crate::{ExpError, Table, delta_column, std_column};
use serde_json::{Value, json};
use sspa_report::markup::{Align, HtmlCell, HtmlRow, html as html_escape, html_table, markdown_cell, markdown_table};

/// `--format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Markdown,
    Csv,
    Json,
    Html,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "table" => Ok(Format::Table),
            "md" | "markdown" => Ok(Format::Markdown),
            "csv" => Ok(Format::Csv),
            "json" => Ok(Format::Json),
            "html" => Ok(Format::Html),
            other => Err(format!("unknown format `{other}` (table, md, csv, json, html)")),
        }
    }
}

pub(crate) fn render(table: &Table, format: Format) -> Result<String, ExpError> {
    match format {
        Format::Csv => Ok(table.csv()),
        Format::Json => Ok(serde_json::to_string_pretty(&json(table)?).unwrap_or_default() + "\n"),
        Format::Table => text(table),
        Format::Markdown => markdown(table),
        Format::Html => html(table),
    }
}

/// Row `row` of column `name` as JSON; a column the table lacks is null.
fn cell(table: &Table, column: &str, row: usize) -> Value {
    table.column(column).map_or(Value::Null, |column| column.json(row))
}

/// `{"baseline", "params", "metrics", "rows": [{column: value}]}`.
pub(crate) fn json(table: &Table) -> Result<Value, ExpError> {
    let rows: Vec<Value> = (0..table.height())
        .map(|row| Value::Object(table.columns.iter().map(|column| (column.name.clone(), column.json(row))).collect()))
        .collect();
    Ok(json!({"baseline": table.baseline, "params": table.params, "metrics": table.metrics, "rows": rows}))
}

fn number(value: &Value) -> Option<f64> {
    value.as_f64()
}

/// Header and cells for people: variant, params, status, n, `mean ± std (Δ)` per metric, train
/// time, error.
fn human(table: &Table) -> Result<(Vec<String>, Vec<Vec<String>>), ExpError> {
    let mut header = vec!["variant".to_owned()];
    header.extend(table.params.iter().cloned());
    header.extend(["status".into(), "n".into()]);
    header.extend(table.metrics.iter().cloned());
    header.extend(["train".into(), "error".into()]);
    let mut rows = Vec::new();
    for row in 0..table.height() {
        let text = |column: &str| -> Result<String, ExpError> {
            Ok(match cell(table, column, row) {
                Value::Null => String::new(),
                Value::String(s) => s,
                other => other.to_string(),
            })
        };
        let variant = text("variant")?;
        let is_baseline = variant == table.baseline;
        let mut cells = vec![if is_baseline { format!("{variant} (baseline)") } else { variant }];
        for param in &table.params {
            cells.push(text(param)?);
        }
        cells.push(text("status")?);
        cells.push(format!("{}/{}", text("n")?, text("runs")?));
        for metric in &table.metrics {
            let mean = number(&cell(table, metric, row));
            let std = number(&cell(table, &std_column(metric), row));
            let delta = number(&cell(table, &delta_column(metric), row));
            cells.push(match (mean, std) {
                (None, _) => String::new(),
                (Some(mean), std) => {
                    let mut text = format!("{mean:.2}");
                    if let Some(std) = std {
                        text += &format!(" ± {std:.2}");
                    }
                    if let (Some(delta), false) = (delta, is_baseline) {
                        text += &format!(" ({delta:+.2})");
                    }
                    text
                }
            });
        }
        cells.push(number(&cell(table, "train_s", row)).map_or(String::new(), |s| format!("{s:.1} s")));
        cells.push(text("error")?);
        rows.push(cells);
    }
    Ok((header, rows))
}

fn note(table: &Table) -> String {
    format!("mean ± sample std over the n seeds that succeeded (of runs); (Δ) against `{}`", table.baseline)
}

fn text(table: &Table) -> Result<String, ExpError> {
    let (header, rows) = human(table)?;
    let widths: Vec<usize> = (0..header.len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).chain([header[i].chars().count()]).max().unwrap_or(0))
        .collect();
    let line = |cells: &[String]| -> String {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        padded.join("  ").trim_end().to_owned() + "\n"
    };
    let mut out = line(&header);
    for row in &rows {
        out += &line(row);
    }
    out += &note(table);
    out.push('\n');
    Ok(out)
}

fn markdown(table: &Table) -> Result<String, ExpError> {
    let (header, rows) = human(table)?;
    let header: Vec<String> = header.iter().map(|title| markdown_cell(title)).collect();
    let header: Vec<(&str, Align)> = header.iter().map(|title| (title.as_str(), Align::Left)).collect();
    let rows = rows.iter().map(|row| row.iter().map(|cell| markdown_cell(cell)).collect::<Vec<_>>());
    Ok(format!("{}\n{}\n", markdown_table(&header, rows), note(table)))
}

fn html(table: &Table) -> Result<String, ExpError> {
    let (header, rows) = human(table)?;
    let mut out = String::from(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>experiment</title><style>\
         body{font-family:sans-serif}table{border-collapse:collapse}\
         th,td{border:1px solid #ccc;padding:4px 8px;text-align:left}\
         tr.failed td{color:#a00}</style></head><body>\n",
    );
    let status = header.iter().position(|h| h == "status").unwrap_or(0);
    let titles: Vec<String> = header.iter().map(|title| html_escape(title)).collect();
    let rows = rows.iter().map(|row| HtmlRow {
        class: (row[status] != "succeeded").then_some("failed"),
        cells: row.iter().map(|cell| HtmlCell::text(cell)).collect(),
    });
    out += &html_table(&titles.iter().map(String::as_str).collect::<Vec<_>>(), rows);
    out += &format!("<p>{}</p>\n</body></html>\n", html_escape(&note(table)));
    Ok(out)
}
