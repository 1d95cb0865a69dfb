//! Rendering of report.md and report.html from a full `ReportData`.

use sspa_metrics::{EvalData, EvalOptions, best_and_worst_curves, evaluate_data};
use sspa_report::{
    DescriptionTokens, EpochRecord, Lineage, ModelMetrics, PreviousRun, ReportData, ReportImage, render,
};

const HOSTILE: &str = "<script>alert('x')</script>";

/// The PNG signature and an IHDR start: enough to check the data URL.
const PNG: &[u8] = &[0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13, b'I', b'H', b'D', b'R'];

fn sample() -> ReportData {
    let labels: Vec<String> = vec!["person".into(), "a|b".into(), HOSTILE.into(), "never".into()];
    let images: Vec<String> = (0..6).map(|index| format!("img{index}")).collect();
    #[rustfmt::skip]
    let scores = [
        0.9, 0.2, 0.7, 0.1,
        0.8, 0.6, 0.1, 0.2,
        0.3, 0.4, 0.9, 0.3,
        0.2, 0.9, 0.3, 0.1,
        0.6, 0.1, 0.6, 0.6,
        0.1, 0.3, 0.2, 0.4,
    ];
    #[rustfmt::skip]
    let targets = [
        1, 0, 1, 0,
        1, 1, 0, 0,
        0, 0, 1, 0,
        0, 1, 0, -1,
        1, 0, 0, 0,
        0, 1, 1, 0,
    ];
    let data = EvalData::from_row_major(images, labels, &scores, &targets).expect("data");
    let report = evaluate_data(&data, &EvalOptions::default()).expect("report");
    let mut ema = ModelMetrics::from_report("EMA", &report);
    for (_, value) in &mut ema.metrics {
        *value = (*value + 1.0).min(100.0);
    }
    let previous = serde_json::json!({"mAP": 50.0, "CP": 40.0, "top3": {"CP": 30.0}, "per_class_ap": {"person": 10.0}});
    ReportData {
        domain: "demo".into(),
        run_id: "2026-11-27T02-00-00Z".into(),
        models: vec![ModelMetrics::from_report("raw", &report), ema],
        per_class_ap: report.per_class_ap.clone(),
        chart_model: "raw".into(),
        classes_without_positives: report.classes_without_positives.clone(),
        pr_curves: best_and_worst_curves(&data, &report, 2, 50),
        training: (1..=5)
            .map(|epoch| EpochRecord {
                epoch,
                train_loss: 2.0 / f64::from(epoch),
                learning_rate: 1e-4 * f64::from(6 - epoch) / 5.0,
                val_map_raw: (epoch % 2 == 1).then(|| 40.0 + f64::from(epoch)),
                val_map_ema: Some(42.0 + f64::from(epoch)),
            })
            .collect(),
        previous: Some(PreviousRun { run_id: "run-1".into(), models: vec![ModelMetrics::from_json("raw", &previous)] }),
        lineage: Lineage {
            config_hash: Some("blake3:abc".into()),
            manifest_hash: Some("blake3:def".into()),
            description_cache_hash: None,
            description_tokens: Some(DescriptionTokens {
                prompt_tokens: 1234,
                completion_tokens: 567,
                answers: 10,
                answers_without_usage: 2,
            }),
            model_preset: Some("clip-rn50 <448>".into()),
            weights_hash: Some("sha256:0123".into()),
            git_commit: Some("deadbeef".into()),
            files: vec![("data_manifest/x|y.toml".into(), "0123abcd".into())],
        },
        images: vec![ReportImage {
            caption: format!("gate map {HOSTILE}"),
            file: Some("maps/0 gate.png".into()),
            png: PNG.to_vec(),
        }],
    }
}

/// Open and close tags balance (void elements and `/>` aside): a cheap well-formedness check.
fn assert_balanced(html: &str) {
    const VOID: [&str; 6] = ["meta", "img", "br", "hr", "link", "input"];
    let mut stack: Vec<String> = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find('<') {
        let end = rest[start..].find('>').expect("unclosed tag") + start;
        let tag = &rest[start + 1..end];
        rest = &rest[end + 1..];
        if tag.starts_with('!') || tag.ends_with('/') {
            continue;
        }
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(stack.pop().as_deref(), Some(name), "mismatched </{name}>");
            continue;
        }
        let name = tag.split_whitespace().next().expect("tag name").to_owned();
        if !VOID.contains(&name.as_str()) {
            stack.push(name);
        }
    }
    assert!(stack.is_empty(), "unclosed: {stack:?}");
}

#[test]
fn html_has_every_section_and_plot() {
    let (_, html) = render(&sample());
    assert!(html.starts_with("<!DOCTYPE html>"));
    for id in ["metrics", "delta", "class-ap", "pr-curves", "training", "maps", "lineage"] {
        assert!(html.contains(&format!("<section id=\"{id}\">")), "section {id}");
    }
    // Bar chart, PR chart and three training charts.
    assert_eq!(html.matches("<svg").count(), 5);
    assert_eq!(html.matches("<rect class=\"bar\"").count(), 3, "one bar a class with positives");
    assert!(html.matches("<polyline").count() >= 5);
    assert!(html.contains("data:image/png;base64,iVBORw0KGgoAAAANSUhEUg=="));
    assert_balanced(&html);
}

#[test]
fn html_escapes_every_label() {
    let (_, html) = render(&sample());
    assert!(!html.contains("<script"), "raw label leaked");
    assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"));
    assert!(html.contains("clip-rn50 &lt;448&gt;"));
}

#[test]
fn html_is_self_contained() {
    let (_, html) = render(&sample());
    assert!(!html.contains("http://") && !html.contains("https://"), "external reference");
    let mut data = sample();
    data.per_class_ap[0].0 = "https://example.com/x.png".into();
    data.images[0].caption = "\" src=\"https://example.com/y.png".into();
    let (_, html) = render(&data);
    for attribute in ["src=\"http", "href=\"http", "url(http", "@import"] {
        assert!(!html.contains(attribute), "{attribute} in html");
    }
}

#[test]
fn html_shows_the_delta_against_the_previous_run() {
    let data = sample();
    let (_, html) = render(&data);
    let map = data.models[0].get("mAP").expect("mAP");
    let change = map - 50.0;
    let sign = if change >= 0.0 { "+" } else { "" };
    assert!(html.contains(&format!("<td class=\"number\">50.00</td><td class=\"number\">{map:.2}</td>")));
    assert!(html.contains(&format!("{sign}{change:.2}</td>")));
    // Only the raw model exists in the previous run; `top3 CP` is matched through the nesting.
    assert!(html.contains("<td>top3 CP</td><td class=\"number\">30.00</td>"));
    assert!(!html.contains("<td>EMA</td><td>mAP</td>"));
}

#[test]
fn markdown_tables_are_escaped_and_complete() {
    let data = sample();
    let (md, _) = render(&data);
    assert!(md.starts_with("# sspa-pipe report: demo (run 2026-11-27T02-00-00Z)"));
    assert!(md.contains("| metric | raw | EMA |\n|---|---:|---:|\n"));
    let raw = data.models[0].get("mAP").expect("mAP");
    let ema = data.models[1].get("mAP").expect("mAP");
    assert!(md.contains(&format!("| mAP | {raw:.2} | {ema:.2} |")), "{md}");
    assert!(md.contains("| a\\|b |"), "pipe in a label must not split the row");
    assert!(md.contains("&lt;script&gt;"));
    assert!(!md.contains("<script"));
    assert!(md.contains("## Change against run run-1"));
    assert!(md.contains("Classes without positives (not in mAP): never."));
    assert!(md.contains("| 2 | 1.0000 | 8.000e-5 | — | 44.00 |"), "{md}");
    assert!(md.contains("| description-cache hash | — |"));
    // Every table row has as many cells as its header.
    for table in md.split("\n\n").filter(|block| block.starts_with('|')) {
        let cells = |line: &str| line.replace("\\|", "").matches('|').count();
        let mut lines = table.lines();
        let width = cells(lines.next().expect("header"));
        for line in lines {
            assert_eq!(cells(line), width, "row `{line}`");
        }
    }
}

#[test]
fn a_report_without_optional_parts_renders() {
    let mut data = sample();
    data.previous = None;
    data.training.clear();
    data.images.clear();
    data.pr_curves.clear();
    let (md, html) = render(&data);
    assert!(!html.contains("id=\"delta\"") && !html.contains("id=\"training\"") && !html.contains("id=\"maps\""));
    assert!(!md.contains("## Training"));
    assert_eq!(html.matches("<svg").count(), 1);
    assert_balanced(&html);
}

#[test]
fn markdown_links_the_map_files_and_explains_the_lineage() {
    let (md, html) = render(&sample());
    assert!(md.contains("- [gate map &lt;script&gt;alert('x')&lt;/script&gt;](maps/0%20gate.png)"), "{md}");
    assert!(md.contains("| config hash | `blake3:abc` | BLAKE3 of the canonical JSON"), "{md}");
    assert!(md.contains("| data\\_manifest/x\\|y.toml | `0123abcd` |"), "{md}");
    assert!(html.contains("<tr><th>input</th><th>value</th><th>what it is</th></tr>"));
    assert!(html.contains("BLAKE3 of the describe stage&#39;s <code>descriptions.parquet</code>"), "{html}");
    // Token totals sit right after the description-cache hash, in both formats.
    let tokens = "1234 prompt + 567 completion (10 answers); 2 without usage, not counted";
    assert!(md.contains("| description-cache hash | — |"), "{md}");
    let row = md.find("| description-cache hash |").expect("hash row");
    let next = &md[row..].lines().nth(1).expect("row after the hash");
    assert!(next.starts_with(&format!("| description tokens | `{tokens}` | prompt and completion tokens")), "{next}");
    assert!(html.contains(&format!("<tr><th>description tokens</th><td><code>{tokens}</code></td>")), "{html}");
    assert!(html.contains("<td><code>data_manifest/x|y.toml</code></td><td><code>0123abcd</code></td>"));
    assert!(html.contains("class=\"colour-scale\""));
}

#[test]
fn real_heat_maps_are_inlined_as_decodable_pngs() {
    let pixels = vec![100u8; 64 * 64 * 3];
    let values = [0.0, 0.1, 0.2, 0.9];
    let png = sspa_report::heatmap::overlay_png(
        &sspa_report::heatmap::RgbImage { width: 64, height: 64, pixels: &pixels },
        &sspa_report::heatmap::PatchMap { rows: 2, columns: 2, values: &values },
    )
    .expect("png");
    let mut data = sample();
    data.images = vec![ReportImage { caption: "image 1".into(), file: Some("maps/image1-a.png".into()), png }];
    let (md, html) = render(&data);
    assert!(md.contains("- [image 1](maps/image1-a.png)"));
    let start = html.find("src=\"data:image/png;base64,").expect("inline png") + "src=\"data:image/png;base64,".len();
    let encoded = &html[start..start + html[start..].find('"').expect("end of src")];
    let bytes = decode_base64(encoded);
    let image = image::load_from_memory_with_format(&bytes, image::ImageFormat::Png).expect("decodes").to_rgb8();
    // 64 px is enlarged to 256; the bottom-right cell holds the peak.
    assert_eq!(image.dimensions(), (256, 256));
    let peak = image.get_pixel(192, 192).0;
    assert!(peak[0] > 150 && peak[2] < 80, "{peak:?}");
}

/// Standard padded base64, for reading the data URL back.
fn decode_base64(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let value = |byte: u8| ALPHABET.iter().position(|&c| c == byte).expect("base64 character") as u32;
    let mut out = Vec::new();
    for chunk in text.as_bytes().chunks(4) {
        let digits: Vec<u32> = chunk.iter().filter(|&&c| c != b'=').map(|&c| value(c)).collect();
        let mut triple = 0u32;
        for (index, digit) in digits.iter().enumerate() {
            triple |= digit << (18 - 6 * index);
        }
        out.extend(triple.to_be_bytes()[1..digits.len()].iter());
    }
    out
}
