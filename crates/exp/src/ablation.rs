//! The paper's ablation study as a built-in grid (`sspa-pipe ablate`) and its report laid out
//! like the paper's tables (SSPA.md, "The paper's ablation tables").
//!
//! Each [`StudyTable`] lists its rows as `[ablation]` overrides of the domain config; full SSPA
//! (no override) closes every table, as in the paper. [`render_markdown`] and [`render_html`]
//! put one metric per cell, `mean ± std` over seeds with `n`, Δ against full SSPA, the best
//! row in bold, and the paper's own COCO number (or the relation it reports) beside it.

use crate::batch::BatchOutcome;
use crate::{ExpError, ParamColumns, RunRecord, RunStatus, TableOptions};
use sspa_config::Override;
use sspa_report::markup::{Align, HtmlCell, HtmlRow, html as escape, html_table, markdown_cell, markdown_table};
use std::collections::{BTreeMap, BTreeSet};

/// One row of a paper table: what it changes and what the paper reports for it on COCO.
#[derive(Debug, Clone, PartialEq)]
pub struct StudyRow {
    pub label: &'static str,
    /// `key=value` overrides (TOML values); empty for full SSPA.
    pub overrides: &'static [&'static str],
    /// The paper's COCO mAP, or the relation it states, e.g. `+5.0 over the baseline`.
    pub paper: &'static str,
}

/// One paper table (or figure).
#[derive(Debug, Clone, PartialEq)]
pub struct StudyTable {
    /// `VI`, `VII`, `VIII`, `IX`, `fig5`, `fig6`, `peers`.
    pub id: &'static str,
    pub title: &'static str,
    pub rows: Vec<StudyRow>,
    /// The paper's claim to compare the demo's ordering with.
    pub claim: &'static str,
}

const FULL: StudyRow = StudyRow { label: "full SSPA", overrides: &[], paper: "88.7" };

/// Every table of the study, in the paper's order, then the peer heads a user would try instead.
pub fn study() -> Vec<StudyTable> {
    vec![
        split_stage(),
        synthesis(),
        alignments(),
        category_centres(),
        branches_and_aggregation(),
        baseline_to_sspa(),
        peers(),
    ]
}

/// A row of a study table.
fn row(label: &'static str, overrides: &'static [&'static str], paper: &'static str) -> StudyRow {
    StudyRow { label, overrides, paper }
}

/// Table VI: the split stage's parts (KAP source, CAP, DSF).
fn split_stage() -> StudyTable {
    StudyTable {
        id: "VI",
        title: "Table VI: split stage (KAP, CAP, DSF)",
        rows: vec![
            row("KAP from the fixed template", &["ablation.kap=\"template\""], "87.9"),
            row("no KAP", &["ablation.kap=\"off\""], "87.7"),
            row("no CAP (KAP only)", &["ablation.cap=false"], "87.5"),
            row("CAP without DSF", &["ablation.dsf=false"], "88.2"),
            FULL,
        ],
        claim: "full SSPA above every row",
    }
}

/// Table VII: how `T_u` is synthesised.
fn synthesis() -> StudyTable {
    StudyTable {
        id: "VII",
        title: "Table VII: synthesis",
        rows: vec![
            row("summation", &["ablation.synthesis=\"sum\""], "87.8"),
            row("concatenation", &["ablation.synthesis=\"concat\""], "87.9"),
            row("MLP", &["ablation.synthesis=\"mlp\""], "88.2"),
            StudyRow { label: "QSM (full SSPA)", ..FULL },
        ],
        claim: "QSM > MLP > concatenation ≥ summation",
    }
}

/// Table VIII: the directions of the gated dual-modal alignment.
fn alignments() -> StudyTable {
    StudyTable {
        id: "VIII",
        title: "Table VIII: gated dual-modal alignments",
        rows: vec![
            row("neither direction", &["ablation.alignment=\"none\""], "87.2"),
            row("V→S only", &["ablation.alignment=\"visual_to_semantic\""], "88.2"),
            row("S→V only", &["ablation.alignment=\"semantic_to_visual\""], "87.8"),
            StudyRow { label: "both (full SSPA)", ..FULL },
        ],
        claim: "both > V→S > S→V > neither",
    }
}

/// Table IX: the category centres (Uni-D, Bi-D with and without the gate).
fn category_centres() -> StudyTable {
    StudyTable {
        id: "IX",
        title: "Table IX: category centres",
        rows: vec![
            row(
                "Uni-D (learned classifier)",
                &["ablation.classifier=\"learned\"", "ablation.alignment=\"semantic_to_visual\""],
                "84.3",
            ),
            row("Bi-D without gate", &["ablation.gate=false"], "88.0"),
            StudyRow { label: "Bi-D with gate (full SSPA)", ..FULL },
        ],
        claim: "Bi-D with gate > Bi-D without gate > Uni-D",
    }
}

/// Fig. 5: one branch or both, and the patch aggregator.
fn branches_and_aggregation() -> StudyTable {
    StudyTable {
        id: "fig5",
        title: "Fig. 5: branches and aggregation",
        rows: vec![
            row("global branch only", &["ablation.branches=\"global\""], "best single branch −3.3"),
            row("regional branch only", &["ablation.branches=\"regional\""], "best single branch −3.3"),
            row("mean aggregation", &["ablation.aggregator=\"mean\""], "below soft"),
            row("hard aggregation", &["ablation.aggregator=\"hard\""], "below mean"),
            StudyRow { label: "both branches, soft (full SSPA)", ..FULL },
        ],
        claim: "both branches beat either; soft > mean > hard",
    }
}

/// Fig. 6: from the fixed-template, global-only baseline to full SSPA.
fn baseline_to_sspa() -> StudyTable {
    StudyTable {
        id: "fig6",
        title: "Fig. 6: from a fixed-template baseline to SSPA",
        rows: vec![
            row(
                "baseline: \"A photo of a {label}.\", global only",
                &[
                    "ablation.kap=\"template\"",
                    "ablation.cap=false",
                    "ablation.branches=\"global\"",
                    "ablation.global_text=\"kap\"",
                ],
                "baseline",
            ),
            row("+ SSP (no GDMA)", &["ablation.alignment=\"none\""], "+5.0 over the baseline"),
            StudyRow { label: "+ GDMA (full SSPA)", paper: "further above + SSP", ..FULL },
        ],
        claim: "baseline < + SSP < + GDMA",
    }
}

/// The peer heads beside full SSPA (not a paper table).
fn peers() -> StudyTable {
    StudyTable {
        id: "peers",
        title: "Peers: other heads on the same frozen features, loss and budget",
        rows: vec![
            row("linear probe (global feature)", &["model.head=\"linear\""], "—"),
            row("two-layer MLP (global + mean patch feature)", &["model.head=\"mlp\""], "—"),
            row("query decoder (ML-Decoder style)", &["model.head=\"query-decoder\""], "—"),
            FULL,
        ],
        claim: "SSPA above every peer (the paper compares with published methods, not with these heads)",
    }
}

/// The tables named in `ids` (case-insensitive; empty: all), in the paper's order.
///
/// # Errors
/// The unknown names and the known ones.
pub fn select(ids: &[String]) -> Result<Vec<StudyTable>, String> {
    let all = study();
    let unknown: Vec<&String> =
        ids.iter().filter(|id| !all.iter().any(|table| table.id.eq_ignore_ascii_case(id))).collect();
    if !unknown.is_empty() {
        let known: Vec<&str> = all.iter().map(|t| t.id).collect();
        return Err(format!(
            "unknown table(s) {} (known: {})",
            unknown.iter().map(|id| format!("`{id}`")).collect::<Vec<_>>().join(", "),
            known.join(", ")
        ));
    }
    Ok(all
        .into_iter()
        .filter(|table| ids.is_empty() || ids.iter().any(|id| table.id.eq_ignore_ascii_case(id)))
        .collect())
}

/// A row's result: the metric's mean and sample std over the seeds that succeeded, of `runs`.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    pub mean: Option<f64>,
    pub std: Option<f64>,
    pub n: u32,
    pub runs: u32,
    pub error: Option<String>,
}

/// Results keyed by the row's overrides as given in [`StudyRow::overrides`], joined by `, `
/// (full SSPA: the empty string).
pub type Results = BTreeMap<String, Cell>;

/// The key of `row` in [`Results`].
pub fn row_key(row: &StudyRow) -> String {
    row.overrides.join(", ")
}

struct Shown {
    label: String,
    value: String,
    delta: String,
    paper: String,
    best: bool,
}

fn shown(table: &StudyTable, results: &Results) -> Vec<Shown> {
    let full = results.get("").and_then(|cell| cell.mean);
    let best = table
        .rows
        .iter()
        .filter_map(|row| results.get(&row_key(row)).and_then(|cell| cell.mean))
        .fold(None, |best: Option<f64>, value| Some(best.map_or(value, |b| b.max(value))));
    table
        .rows
        .iter()
        .map(|row| {
            let cell = results.get(&row_key(row));
            let mean = cell.and_then(|c| c.mean);
            let value = match cell {
                None => "not run".to_owned(),
                Some(Cell { mean: None, error, .. }) => {
                    format!("failed{}", error.as_ref().map(|e| format!(": {e}")).unwrap_or_default())
                }
                Some(Cell { mean: Some(mean), std, n, runs, .. }) => {
                    let spread = std.map(|s| format!(" ± {s:.2}")).unwrap_or_default();
                    format!(
                        "{mean:.2}{spread} (n={n}{})",
                        if n == runs { String::new() } else { format!(" of {runs}") }
                    )
                }
            };
            let delta = match (mean, full, row.overrides.is_empty()) {
                (_, _, true) => "—".to_owned(),
                (Some(mean), Some(full), false) => format!("{:+.2}", mean - full),
                _ => String::new(),
            };
            Shown {
                label: row.label.to_owned(),
                value,
                delta,
                paper: row.paper.to_owned(),
                best: mean.is_some() && mean == best,
            }
        })
        .collect()
}

/// Whether the demo's ordering of the table's rows agrees with the paper's numbers, where the
/// paper gives a number for every row: `Some(true)` when the rows sort the same way.
pub fn ordering_agrees(table: &StudyTable, results: &Results) -> Option<bool> {
    let mut pairs = Vec::new();
    for row in &table.rows {
        let paper: f64 = row.paper.parse().ok()?;
        let ours = results.get(&row_key(row))?.mean?;
        pairs.push((paper, ours));
    }
    let order = |key: fn(&(f64, f64)) -> f64| {
        let mut index: Vec<usize> = (0..pairs.len()).collect();
        index.sort_by(|&a, &b| key(&pairs[b]).total_cmp(&key(&pairs[a])));
        index
    };
    Some(order(|p| p.0) == order(|p| p.1))
}

fn agreement(table: &StudyTable, results: &Results) -> String {
    match ordering_agrees(table, results) {
        Some(true) => "the demo orders the rows as the paper does".to_owned(),
        Some(false) => "the demo orders the rows differently from the paper".to_owned(),
        None => "compare by eye (the paper gives no number for every row, or a row has no result)".to_owned(),
    }
}

/// `ablation.md`: one Markdown table per paper table.
pub fn render_markdown(tables: &[StudyTable], results: &Results, metric: &str, seeds: usize) -> String {
    let mut out = format!(
        "# SSPA ablation study\n\n`{metric}` on the domain's test split, mean ± sample std over {seeds} seed(s); \
         Δ against full SSPA; best row in bold; the paper's COCO mAP beside it.\n"
    );
    for table in tables {
        out += &format!("\n## {}\n\n", table.title);
        let header =
            [("variant", Align::Left), (metric, Align::Left), ("Δ", Align::Left), ("paper (COCO)", Align::Left)];
        let rows = shown(table, results).into_iter().map(|row| {
            let bold = |text: &str| if row.best { format!("**{text}**") } else { text.to_owned() };
            vec![bold(&row.label), bold(&markdown_cell(&row.value)), row.delta.clone(), row.paper.clone()]
        });
        out += &markdown_table(&header, rows);
        out += &format!("\nPaper: {}; {}.\n", table.claim, agreement(table, results));
    }
    out
}

/// `ablation.html`: the same tables as a self-contained page.
pub fn render_html(tables: &[StudyTable], results: &Results, metric: &str, seeds: usize) -> String {
    let mut out = String::from(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>SSPA ablation study</title><style>\
         body{font-family:sans-serif;max-width:60em;margin:2em auto}table{border-collapse:collapse;margin:1em 0}\
         th,td{border:1px solid #ccc;padding:4px 10px;text-align:left}td.num{text-align:right}\
         tr.best td{font-weight:bold}td.paper{color:#555}p.claim{color:#333;font-size:90%}</style></head><body>\n",
    );
    out += &format!(
        "<h1>SSPA ablation study</h1>\n<p><code>{}</code> on the domain's test split, mean ± sample std over {seeds} \
         seed(s); Δ against full SSPA; best row in bold; the paper's COCO mAP beside it. Each chart: one bar per \
         row (its mean), whiskers ± std, the paper's number as a red mark where it gives one.</p>\n",
        escape(metric)
    );
    for table in tables {
        out += &format!("<h2>{}</h2>\n{}", escape(table.title), bar_chart(table, results, metric));
        let rows = shown(table, results).into_iter().map(|row| HtmlRow {
            class: row.best.then_some("best"),
            cells: vec![
                HtmlCell::text(&row.label),
                HtmlCell::text(&row.value).with_class("num"),
                HtmlCell::text(&row.delta).with_class("num"),
                HtmlCell::text(&row.paper).with_class("paper"),
            ],
        });
        out += &html_table(&["variant", &escape(metric), "Δ", "paper (COCO)"], rows);
        out += &format!(
            "<p class=\"claim\">Paper: {}; {}.</p>\n",
            escape(table.claim),
            escape(&agreement(table, results))
        );
    }
    out += "</body></html>\n";
    out
}

/// One planned run: the row's key, its seed, its overrides (the seed last).
pub type Planned = (String, Option<u64>, Vec<Override>);

/// The study's variants: every row of every table × seeds, each row's overrides first.
pub fn variants(tables: &[StudyTable], seeds: &[u64]) -> Result<Vec<Planned>, String> {
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for row in tables.iter().flat_map(|table| &table.rows) {
        let key = row_key(row);
        if !seen.insert(key.clone()) {
            continue;
        }
        let overrides: Vec<Override> = row.overrides.iter().map(|o| o.parse::<Override>()).collect::<Result<_, _>>()?;
        if seeds.is_empty() {
            out.push((key, None, overrides));
        } else {
            for &seed in seeds {
                let mut seeded = overrides.clone();
                seeded.push(format!("train.seed={seed}").parse()?);
                out.push((key.clone(), Some(seed), seeded));
            }
        }
    }
    Ok(out)
}

/// The study's [`Results`] from a finished batch: one run per planned (row, seed), the variant of
/// its config hash (rows that resolve to the same config share it), aggregated over seeds by the
/// experiment table: mean, sample std, n. A run that succeeded without `metric` counts as failed.
pub fn results(planned: &[Planned], outcome: &BatchOutcome, metric: &str) -> Result<Results, ExpError> {
    let by_hash: BTreeMap<&str, &crate::batch::Variant> =
        outcome.experiment.variants.iter().map(|v| (v.config_hash.as_str(), v)).collect();
    let metric_key = format!("evaluate.{metric}");
    let mut runs = Vec::new();
    for ((key, seed, _), hash) in planned.iter().zip(&outcome.hashes) {
        let Some(variant) = by_hash.get(hash.as_str()) else { continue };
        let value = variant.metrics.get(&metric_key).and_then(serde_json::Value::as_f64);
        let status = match variant.status {
            RunStatus::Succeeded if value.is_none() => RunStatus::Failed,
            status => status,
        };
        let error = match (&variant.error, value, variant.status == RunStatus::Succeeded) {
            (Some(error), _, _) => Some(error.clone()),
            (None, None, true) => Some(format!("no `{metric}` in the run's metrics")),
            _ => None,
        };
        runs.push(RunRecord {
            variant: key.clone(),
            params: BTreeMap::new(),
            seed: seed.map(|s| s as i64),
            status,
            error,
            metrics: value.map(|v| BTreeMap::from([(metric.to_owned(), v)])).unwrap_or_default(),
            train_s: None,
        });
    }
    // Aggregated over seeds by the experiment table: mean, sample std, n.
    let options = TableOptions {
        params: ParamColumns::Keys(Vec::new()),
        metrics: vec![metric.to_owned()],
        baseline: None,
        sort_by: None,
    };
    let table = crate::build(&runs, &options)?;
    let parsed = table.to_json()?;
    let mut results = Results::new();
    for row in parsed["rows"].as_array().into_iter().flatten() {
        let number = |name: &str| row[name].as_f64();
        results.insert(
            row["variant"].as_str().unwrap_or_default().to_owned(),
            Cell {
                mean: number(metric),
                std: number(&crate::std_column(metric)),
                n: row["n"].as_u64().unwrap_or(0) as u32,
                runs: row["runs"].as_u64().unwrap_or(0) as u32,
                error: row["error"].as_str().map(str::to_owned),
            },
        );
    }
    Ok(results)
}

/// Width of the label column and of the plot area of [`bar_chart`], and the height of one row.
const CHART_LABELS: f64 = 300.0;
const CHART_PLOT: f64 = 380.0;
const CHART_ROW: f64 = 22.0;

/// `table` as an inline SVG: one horizontal bar per row (its mean), a whisker of ± std, and the
/// paper's number as a red mark where it gives one (at the axis's edge when it is off the axis).
/// The axis spans the results, mean ± std, widened to multiples of 5 (bars from 0 would hide
/// differences of a point). Empty when no row has a value.
fn bar_chart(table: &StudyTable, results: &Results, metric: &str) -> String {
    let rows: Vec<(&str, Option<f64>, f64, Option<f64>)> = table
        .rows
        .iter()
        .map(|row| {
            let cell = results.get(&row_key(row));
            let paper = row.paper.parse::<f64>().ok();
            (row.label, cell.and_then(|c| c.mean), cell.and_then(|c| c.std).unwrap_or(0.0), paper)
        })
        .collect();
    let ends: Vec<f64> =
        rows.iter().flat_map(|&(_, mean, std, _)| [mean.map(|m| m - std), mean.map(|m| m + std)]).flatten().collect();
    if rows.iter().all(|row| row.1.is_none()) {
        return String::new();
    }
    let low = (ends.iter().copied().fold(f64::INFINITY, f64::min) / 5.0).floor() * 5.0;
    let high = ((ends.iter().copied().fold(f64::NEG_INFINITY, f64::max) / 5.0).ceil() * 5.0).max(low + 5.0);
    let x = |value: f64| CHART_LABELS + (value - low) / (high - low) * CHART_PLOT;
    let height = rows.len() as f64 * CHART_ROW + 24.0;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{height}\" role=\"img\" \
         aria-label=\"{} by variant\" font-size=\"12\">\n",
        escape(metric),
        w = CHART_LABELS + CHART_PLOT + 20.0,
    );
    for (index, &(label, mean, std, paper)) in rows.iter().enumerate() {
        let top = index as f64 * CHART_ROW + 4.0;
        let middle = top + 7.0;
        svg += &format!(
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\n",
            CHART_LABELS - 6.0,
            middle + 4.0,
            escape(label)
        );
        if let Some(mean) = mean {
            svg += &format!(
                "<rect x=\"{CHART_LABELS}\" y=\"{top}\" width=\"{:.1}\" height=\"14\" fill=\"#4c78a8\">\
                 <title>{} {mean:.2} ± {std:.2}</title></rect>\n",
                x(mean) - CHART_LABELS,
                escape(label)
            );
            if std > 0.0 {
                let (from, to) = (x(mean - std), x(mean + std));
                svg += &format!(
                    "<path d=\"M{from:.1} {middle}H{to:.1}M{from:.1} {}V{}M{to:.1} {}V{}\" stroke=\"#222\"/>\n",
                    middle - 4.0,
                    middle + 4.0,
                    middle - 4.0,
                    middle + 4.0
                );
            }
        }
        if let Some(paper) = paper {
            // The paper's numbers are COCO's: where one is off this axis, a mark at the edge says so.
            let (at, off) = match paper {
                p if p > high => (CHART_LABELS + CHART_PLOT, " (off the axis, to the right)"),
                p if p < low => (CHART_LABELS, " (off the axis, to the left)"),
                p => (x(p), ""),
            };
            svg += &format!(
                "<path class=\"paper\" d=\"M{at:.1} {top}l4 7l-4 7l-4 -7z\" fill=\"#e45756\"><title>paper (COCO) \
                 {paper}{off}</title></path>\n"
            );
        }
    }
    let axis = rows.len() as f64 * CHART_ROW + 6.0;
    svg += &format!("<path d=\"M{CHART_LABELS} {axis}H{}\" stroke=\"#888\"/>\n", CHART_LABELS + CHART_PLOT);
    let mut tick = low;
    while tick <= high + 1e-9 {
        svg += &format!("<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{tick}</text>\n", x(tick), axis + 14.0);
        tick += 5.0;
    }
    svg + "</svg>\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(mean: f64) -> Cell {
        Cell { mean: Some(mean), std: Some(0.5), n: 3, runs: 3, error: None }
    }

    #[test]
    fn every_table_ends_with_full_sspa_and_rows_are_distinct() {
        for table in study() {
            assert!(table.rows.last().expect("rows").overrides.is_empty(), "{}", table.id);
            let mut keys: Vec<String> = table.rows.iter().map(row_key).collect();
            keys.sort();
            keys.dedup();
            assert_eq!(keys.len(), table.rows.len(), "{}", table.id);
        }
        assert_eq!(select(&["vii".into(), "fig6".into()]).expect("known").len(), 2);
        assert_eq!(select(&[]).expect("all").len(), 7, "the peers table is on by default");
        let error = select(&["X".into()]).expect_err("unknown");
        assert!(error.contains("`X`") && error.contains("VI, VII, VIII, IX, fig5, fig6, peers"), "{error}");
        let peers = select(&["peers".into()]).expect("peers");
        let heads: Vec<&str> = peers[0].rows.iter().flat_map(|row| row.overrides.iter().copied()).collect();
        assert_eq!(heads, ["model.head=\"linear\"", "model.head=\"mlp\"", "model.head=\"query-decoder\""]);
    }

    #[test]
    fn the_report_marks_the_best_row_the_deltas_and_the_agreement() {
        let tables = select(&["VII".into()]).expect("VII");
        let mut results = Results::new();
        results.insert(String::new(), cell(80.0));
        results.insert("ablation.synthesis=\"sum\"".into(), cell(77.0));
        results.insert("ablation.synthesis=\"concat\"".into(), cell(78.0));
        results.insert("ablation.synthesis=\"mlp\"".into(), cell(79.0));
        assert_eq!(ordering_agrees(&tables[0], &results), Some(true));
        let markdown = render_markdown(&tables, &results, "ema.mAP", 3);
        assert!(markdown.contains("| **QSM (full SSPA)** | **80.00 ± 0.50 (n=3)** | — | 88.7 |"), "{markdown}");
        assert!(markdown.contains("| summation | 77.00 ± 0.50 (n=3) | -3.00 | 87.8 |"), "{markdown}");
        assert!(markdown.contains("orders the rows as the paper does"), "{markdown}");

        // MLP beating QSM disagrees with the paper; a failed row says so.
        results.insert("ablation.synthesis=\"mlp\"".into(), cell(81.0));
        results.insert(
            "ablation.synthesis=\"sum\"".into(),
            Cell { mean: None, std: None, n: 0, runs: 3, error: Some("stage `train`: boom".into()) },
        );
        let markdown = render_markdown(&tables, &results, "ema.mAP", 3);
        assert!(markdown.contains("| **MLP** | **81.00 ± 0.50 (n=3)** | +1.00 | 88.2 |"), "{markdown}");
        // Cells go through the one Markdown escaper: an error's backticks stay literal text.
        assert!(markdown.contains("| summation | failed: stage \\`train\\`: boom |"), "{markdown}");
        assert!(markdown.contains("compare by eye"), "{markdown}");
        results.insert("ablation.synthesis=\"sum\"".into(), cell(77.0));
        assert_eq!(ordering_agrees(&tables[0], &results), Some(false));
        let html = render_html(&tables, &results, "ema.mAP", 3);
        assert!(html.contains("<tr class=\"best\"><td>MLP</td>"), "{html}");
        assert!(html.starts_with("<!DOCTYPE html>") && !html.contains("<script"), "self-contained");
        // The chart above the table: a bar per row with a result, the paper's four numbers marked.
        let chart = &html[html.find("<svg").expect("a chart")..html.find("</svg>").expect("closed")];
        assert_eq!(chart.matches("<rect").count(), 4, "{chart}");
        assert_eq!(chart.matches("class=\"paper\"").count(), 4, "{chart}");
        assert!(chart.contains("<title>MLP 81.00 ± 0.50</title>"), "{chart}");
        // Axis from 75 (77 − 0.5, floored to 5) to 85 (81 + 0.5, ceiled): MLP's bar ends at 81;
        // the paper's COCO numbers (87.8–88.7) sit at the right edge, saying they are off the axis.
        let expected = (81.0 - 75.0) / 10.0 * CHART_PLOT;
        assert_eq!(chart.matches("off the axis, to the right").count(), 4, "{chart}");
        assert!(
            chart.contains(&format!("width=\"{expected:.1}\" height=\"14\" fill=\"#4c78a8\"><title>MLP")),
            "{chart}"
        );
        assert!(bar_chart(&tables[0], &Results::new(), "ema.mAP").is_empty(), "nothing to draw");
    }

    #[test]
    fn shared_rows_run_once_per_seed() {
        let tables = select(&["VII".into(), "VIII".into(), "fig6".into()]).expect("tables");
        let planned = variants(&tables, &[0, 1]).expect("variants");
        // VII: 3 + full; VIII: 3 (full shared); fig6: baseline (+ SSP is VIII's "neither").
        assert_eq!(planned.len(), (3 + 1 + 3 + 1) * 2);
        assert_eq!(planned.iter().filter(|(key, _, _)| key.is_empty()).count(), 2);
        let seeded = &planned[1].2;
        assert_eq!(seeded.last().map(|o| o.argument.as_str()), Some("train.seed=1"));
    }
}
