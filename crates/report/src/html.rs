//! `report.html`: one file, no external resources — inline CSS, inline SVG, `data:` PNGs.

use std::fmt::Write;

use crate::markup::{HtmlCell, HtmlRow, html_table};
use crate::svg::{LineChart, Series, bar_chart, escape, line_chart};
use crate::{ReportData, base64, signed};

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}\
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .6em}\
td.number{text-align:right;font-variant-numeric:tabular-nums}th{background:#f4f4f4}\
.up{color:#067d17}.down{color:#b3261e}.scroll{overflow-x:auto}code{font-size:.9em}\
svg text{font-family:system-ui,sans-serif}.chart-title{font-size:14px;font-weight:600}\
.tick,.bar-label{font-size:10px;fill:#444}.axis-label,.legend{font-size:12px}\
figure{display:inline-block;margin:.5em;vertical-align:top}figure img{width:224px;image-rendering:pixelated}\
figcaption{max-width:224px;font-size:12px}\
.colour-scale{display:inline-block;width:120px;height:.8em;vertical-align:middle;\
background:linear-gradient(to right,#0000ff,#00ffff,#00ff00,#ffff00,#ff0000)}";

pub(crate) fn render(data: &ReportData) -> String {
    let title = escape(&data.title());
    let mut html = String::new();
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{title}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>{title}</h1>\n<p>Values in percent.</p>\n"
    );
    metrics_table(&mut html, data);
    delta_table(&mut html, data);
    class_ap(&mut html, data);
    pr_curves(&mut html, data);
    training(&mut html, data);
    images(&mut html, data);
    lineage(&mut html, data);
    html.push_str("</body>\n</html>\n");
    html
}

fn metrics_table(html: &mut String, data: &ReportData) {
    html.push_str("<section id=\"metrics\">\n<h2>Metrics</h2>\n");
    let names: Vec<String> = data.models.iter().map(|model| escape(&model.name)).collect();
    let mut header = vec!["metric"];
    header.extend(names.iter().map(String::as_str));
    let rows = data.metric_names().into_iter().map(|name| {
        let mut cells = vec![HtmlCell::text(name)];
        cells.extend(data.models.iter().map(|model| {
            HtmlCell::markup(model.get(name).map_or("—".to_owned(), |value| format!("{value:.2}"))).with_class("number")
        }));
        HtmlRow { class: None, cells }
    });
    html.push_str(&html_table(&header, rows));
    html.push_str("</section>\n");
}

fn delta_table(html: &mut String, data: &ReportData) {
    let Some(previous) = &data.previous else { return };
    let _ = write!(html, "<section id=\"delta\">\n<h2>Change against run {}</h2>\n", escape(&previous.run_id));
    let deltas = data.deltas();
    if deltas.is_empty() {
        html.push_str("<p>No metric in common with that run.</p>\n</section>\n");
        return;
    }
    let rows = deltas.iter().map(|delta| {
        let change = delta.current - delta.previous;
        let direction = if change > 0.0 {
            "up"
        } else if change < 0.0 {
            "down"
        } else {
            "same"
        };
        let number = |text: String| HtmlCell::markup(text).with_class("number");
        let cells = vec![
            HtmlCell::text(&delta.model),
            HtmlCell::text(&delta.metric),
            number(format!("{:.2}", delta.previous)),
            number(format!("{:.2}", delta.current)),
            HtmlCell::markup(signed(change)).with_class(format!("number {direction}")),
        ];
        HtmlRow { class: None, cells }
    });
    html.push_str(&html_table(&["model", "metric", "previous", "now", "change"], rows));
    html.push_str("</section>\n");
}

fn class_ap(html: &mut String, data: &ReportData) {
    let _ = write!(html, "<section id=\"class-ap\">\n<h2>Per-class AP ({})</h2>\n", escape(&data.chart_model));
    let ranked = data.ranked_ap();
    if ranked.is_empty() {
        html.push_str("<p>No class has positives.</p>\n");
    } else {
        let _ = writeln!(
            html,
            "<div class=\"scroll\">{}</div>",
            bar_chart("AP per class, best first", "AP (%)", &ranked, 100.0)
        );
    }
    if !data.classes_without_positives.is_empty() {
        let names: Vec<String> =
            data.classes_without_positives.iter().map(|label| format!("<code>{}</code>", escape(label))).collect();
        let _ = writeln!(html, "<p>Classes without positives (not in mAP): {}.</p>", names.join(", "));
    }
    html.push_str("</section>\n");
}

fn pr_curves(html: &mut String, data: &ReportData) {
    if data.pr_curves.is_empty() {
        return;
    }
    let series = data
        .pr_curves
        .iter()
        .map(|curve| Series {
            name: format!("{} (AP {:.1})", curve.label, curve.average_precision),
            points: curve.points.iter().map(|point| (point.recall, point.precision)).collect(),
        })
        .collect();
    let chart = LineChart {
        title: format!("Precision-recall, best and worst classes ({})", data.chart_model),
        x_label: "recall".into(),
        y_label: "precision".into(),
        series,
        x_range: Some((0.0, 1.0)),
        y_range: Some((0.0, 1.0)),
    };
    let _ = write!(
        html,
        "<section id=\"pr-curves\">\n<h2>Precision-recall curves</h2>\n{}\n</section>\n",
        line_chart(&chart)
    );
}

fn training(html: &mut String, data: &ReportData) {
    if data.training.is_empty() {
        return;
    }
    let epochs = &data.training;
    let curve = |name: &str, value: &dyn Fn(&crate::EpochRecord) -> Option<f64>| Series {
        name: name.to_owned(),
        points: epochs.iter().map(|epoch| (f64::from(epoch.epoch), value(epoch).unwrap_or(f64::NAN))).collect(),
    };
    let charts = [
        LineChart {
            title: "Training loss".into(),
            x_label: "epoch".into(),
            y_label: "loss".into(),
            series: vec![curve("train loss", &|epoch| Some(epoch.train_loss))],
            ..LineChart::default()
        },
        LineChart {
            title: "Learning rate".into(),
            x_label: "epoch".into(),
            y_label: "lr".into(),
            series: vec![curve("lr", &|epoch| Some(epoch.learning_rate))],
            ..LineChart::default()
        },
        LineChart {
            title: "Validation mAP".into(),
            x_label: "epoch".into(),
            y_label: "mAP (%)".into(),
            series: vec![curve("raw", &|epoch| epoch.val_map_raw), curve("EMA", &|epoch| epoch.val_map_ema)],
            ..LineChart::default()
        },
    ];
    html.push_str("<section id=\"training\">\n<h2>Training</h2>\n");
    for chart in &charts {
        html.push_str(&line_chart(chart));
        html.push('\n');
    }
    html.push_str("</section>\n");
}

fn images(html: &mut String, data: &ReportData) {
    if data.images.is_empty() {
        return;
    }
    html.push_str("<section id=\"maps\">\n<h2>Attention and gate maps</h2>\n");
    html.push_str(
        "<p>Each map is drawn over its image as a heat map, upsampled from the patch grid and scaled to its own \
         range (shown in the caption): <span class=\"colour-scale\"></span> lowest (blue) to highest (red).</p>\n",
    );
    for image in &data.images {
        let caption = escape(&image.caption);
        let _ = writeln!(
            html,
            "<figure><img alt=\"{caption}\" src=\"data:image/png;base64,{}\"><figcaption>{caption}</figcaption></figure>",
            base64::encode(&image.png)
        );
    }
    html.push_str("</section>\n");
}

fn lineage(html: &mut String, data: &ReportData) {
    html.push_str("<section id=\"lineage\">\n<h2>Lineage</h2>\n");
    let rows = data.lineage.rows().into_iter().map(|(name, value, meaning)| {
        let value = value.map_or("—".to_owned(), |value| format!("<code>{}</code>", escape(&value)));
        let cells = vec![
            HtmlCell::markup(name.to_owned()).as_header(),
            HtmlCell::markup(value),
            HtmlCell::markup(code_spans(meaning)),
        ];
        HtmlRow { class: None, cells }
    });
    html.push_str(&html_table(&["input", "value", "what it is"], rows));
    if !data.lineage.files.is_empty() {
        let code = |text: &str| HtmlCell::markup(format!("<code>{}</code>", escape(text)));
        let rows =
            data.lineage.files.iter().map(|(path, hash)| HtmlRow { class: None, cells: vec![code(path), code(hash)] });
        html.push_str(&html_table(&["input file", "BLAKE3"], rows));
    }
    html.push_str("</section>\n");
}

/// Escapes `text` and turns Markdown-style `` `code` `` spans into `<code>`.
fn code_spans(text: &str) -> String {
    let mut out = String::new();
    for (index, part) in text.split('`').enumerate() {
        if index % 2 == 1 {
            let _ = write!(out, "<code>{}</code>", escape(part));
        } else {
            out.push_str(&escape(part));
        }
    }
    out
}
