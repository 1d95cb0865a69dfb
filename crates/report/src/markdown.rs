//! `report.md`: the tables of the report; plots and images live in `report.html`.

use std::fmt::Write;

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
    let mut header = String::from("| metric |");
    let mut rule = String::from("|---|");
    for model in &data.models {
        let _ = write!(header, " {} |", cell(&model.name));
        rule.push_str("---:|");
    }
    let _ = writeln!(md, "{header}\n{rule}");
    for name in data.metric_names() {
        let _ = write!(md, "| {} |", cell(name));
        for model in &data.models {
            match model.get(name) {
                Some(value) => {
                    let _ = write!(md, " {value:.2} |");
                }
                None => md.push_str(" — |"),
            }
        }
        md.push('\n');
    }
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
    let _ = writeln!(md, "| model | metric | previous | now | change |\n|---|---|---:|---:|---:|");
    for delta in deltas {
        let _ = writeln!(
            md,
            "| {} | {} | {:.2} | {:.2} | {} |",
            cell(&delta.model),
            cell(&delta.metric),
            delta.previous,
            delta.current,
            signed(delta.current - delta.previous)
        );
    }
}

/// The chart model's AP per class, ranked, and the classes left out of mAP.
fn write_per_class_ap(md: &mut String, data: &ReportData) {
    let _ = writeln!(md, "\n## Per-class AP ({})\n", cell(&data.chart_model));
    let _ = writeln!(md, "| label | AP |\n|---|---:|");
    for (label, ap) in data.ranked_ap() {
        let _ = writeln!(md, "| {} | {ap:.2} |", cell(&label));
    }
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
    let _ = writeln!(md, "| epoch | loss | lr | val mAP raw | val mAP EMA |\n|---:|---:|---:|---:|---:|");
    let optional = |value: Option<f64>| value.map_or("—".to_owned(), |value| format!("{value:.2}"));
    for epoch in &data.training {
        let _ = writeln!(
            md,
            "| {} | {:.4} | {:.3e} | {} | {} |",
            epoch.epoch,
            epoch.train_loss,
            epoch.learning_rate,
            optional(epoch.val_map_raw),
            optional(epoch.val_map_ema)
        );
    }
}

/// The lineage table, and the input files' hashes where there are any.
fn write_lineage(md: &mut String, data: &ReportData) {
    let _ = writeln!(md, "\n## Lineage\n\n| input | value | what it is |\n|---|---|---|");
    for (name, value, meaning) in data.lineage.rows() {
        let _ = writeln!(
            md,
            "| {name} | {} | {} |",
            value.map_or("—".to_owned(), |value| format!("`{}`", value.replace('`', "'").replace('|', "\\|"))),
            meaning.replace('|', "\\|")
        );
    }
    if !data.lineage.files.is_empty() {
        let _ = writeln!(md, "\n| input file | BLAKE3 |\n|---|---|");
        for (path, hash) in &data.lineage.files {
            let _ = writeln!(md, "| {} | `{}` |", cell(path), hash.replace('`', "'").replace('|', "\\|"));
        }
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
