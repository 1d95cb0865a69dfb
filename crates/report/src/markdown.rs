//! `report.md`: the tables of the report; plots and images live in `report.html`.

use std::fmt::Write;

use crate::markup::{Align, markdown_code, markdown_table};
use crate::{ReportData, signed};

pub(crate) use crate::markup::markdown_cell as cell;

/// The text of `report.md`: title, then the metrics, change, per-class AP, training, lineage and maps sections.
pub(crate) fn render(data: &ReportData) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# {}\n", cell(&data.title()));
    let _ = writeln!(md, "Values in percent. Plots, precision-recall curves and maps: `report.html`.\n");
    write_metrics(&mut md, data);
    write_change(&mut md, data);
    write_per_class_ap(&mut md, data);
    write_training(&mut md, data);
    write_lineage(&mut md, data);
    write_maps(&mut md, data);
    md
}

/// The metrics table: one row per metric, one column per model (`—` where a model lacks it).
fn write_metrics(md: &mut String, data: &ReportData) {
    let _ = writeln!(md, "## Metrics\n");
    let names: Vec<String> = data.models.iter().map(|model| cell(&model.name)).collect();
    let mut header = vec![("metric", Align::Left)];
    header.extend(names.iter().map(|name| (name.as_str(), Align::Right)));
    let rows = data.metric_names().into_iter().map(|name| {
        let mut row = vec![cell(name)];
        row.extend(
            data.models.iter().map(|model| model.get(name).map_or("—".to_owned(), |value| format!("{value:.2}"))),
        );
        row
    });
    md.push_str(&markdown_table(&header, rows));
}

/// The change against the previous run, where there is one.
fn write_change(md: &mut String, data: &ReportData) {
    let Some(previous) = &data.previous else { return };
    let _ = writeln!(md, "\n## Change against run {}\n", cell(&previous.run_id));
    let deltas = data.deltas();
    if deltas.is_empty() {
        let _ = writeln!(md, "No metric in common with that run.");
        return;
    }
    let header = [
        ("model", Align::Left),
        ("metric", Align::Left),
        ("previous", Align::Right),
        ("now", Align::Right),
        ("change", Align::Right),
    ];
    let rows = deltas.iter().map(|delta| {
        vec![
            cell(&delta.model),
            cell(&delta.metric),
            format!("{:.2}", delta.previous),
            format!("{:.2}", delta.current),
            signed(delta.current - delta.previous),
        ]
    });
    md.push_str(&markdown_table(&header, rows));
}

/// The chart model's AP per class, ranked, and the classes left out of mAP.
fn write_per_class_ap(md: &mut String, data: &ReportData) {
    let _ = writeln!(md, "\n## Per-class AP ({})\n", cell(&data.chart_model));
    let rows = data.ranked_ap().into_iter().map(|(label, ap)| vec![cell(&label), format!("{ap:.2}")]);
    md.push_str(&markdown_table(&[("label", Align::Left), ("AP", Align::Right)], rows));
    if !data.classes_without_positives.is_empty() {
        let names: Vec<String> = data.classes_without_positives.iter().map(|label| cell(label)).collect();
        let _ = writeln!(md, "\nClasses without positives (not in mAP): {}.", names.join(", "));
    }
}

/// The training curve, one row per epoch, where there is one.
fn write_training(md: &mut String, data: &ReportData) {
    if data.training.is_empty() {
        return;
    }
    let _ = writeln!(md, "\n## Training\n");
    let optional = |value: Option<f64>| value.map_or("—".to_owned(), |value| format!("{value:.2}"));
    let header = [
        ("epoch", Align::Right),
        ("loss", Align::Right),
        ("lr", Align::Right),
        ("val mAP raw", Align::Right),
        ("val mAP EMA", Align::Right),
    ];
    let rows = data.training.iter().map(|epoch| {
        vec![
            epoch.epoch.to_string(),
            format!("{:.4}", epoch.train_loss),
            format!("{:.3e}", epoch.learning_rate),
            optional(epoch.val_map_raw),
            optional(epoch.val_map_ema),
        ]
    });
    md.push_str(&markdown_table(&header, rows));
}

/// The lineage table, and the input files' hashes where there are any.
fn write_lineage(md: &mut String, data: &ReportData) {
    let _ = writeln!(md, "\n## Lineage\n");
    let header = [("input", Align::Left), ("value", Align::Left), ("what it is", Align::Left)];
    let rows = data.lineage.rows().into_iter().map(|(name, value, meaning)| {
        vec![name.to_owned(), value.map_or("—".to_owned(), |value| markdown_code(&value)), meaning.replace('|', "\\|")]
    });
    md.push_str(&markdown_table(&header, rows));
    if !data.lineage.files.is_empty() {
        md.push('\n');
        let rows = data.lineage.files.iter().map(|(path, hash)| vec![cell(path), markdown_code(hash)]);
        md.push_str(&markdown_table(&[("input file", Align::Left), ("BLAKE3", Align::Left)], rows));
    }
}

/// The list of heat-map images (linked where written to a file), where there are any.
fn write_maps(md: &mut String, data: &ReportData) {
    if data.images.is_empty() {
        return;
    }
    let _ = writeln!(md, "\n## Maps\n");
    let _ = writeln!(
        md,
        "Heat maps over the test images (blue lowest, red highest, each map scaled to its own range); also \
         inline in `report.html`.\n"
    );
    for image in &data.images {
        match &image.file {
            Some(file) => {
                let _ = writeln!(md, "- [{}]({})", cell(&image.caption), link_target(file));
            }
            None => {
                let _ = writeln!(md, "- {} (in `report.html`)", cell(&image.caption));
            }
        }
    }
}

/// A relative path as a Markdown link target: percent-encodes what would end or break it.
fn link_target(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for byte in path.bytes() {
        if byte.is_ascii_alphanumeric() || b"/._-~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}
