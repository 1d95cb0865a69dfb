//! `report.html` as a browser draws it: headless Chromium, network blocked, takes a screenshot and
//! dumps the DOM of a report built from synthetic data. Checks that the page is not blank, that
//! the bar chart's colour and the heat maps' colours are on screen, and that the SVG plots and
//! the inline PNGs made it into the DOM.
//!
//! Needs `chromium` (Debian package; `scripts/setup` installs it, CI runs that). Without it the
//! test fails, naming `scripts/setup`; `SSPA_CHROMIUM` names another binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sspa_metrics::{EvalData, EvalOptions, best_and_worst_curves, evaluate_data};
use sspa_report::heatmap::{PatchMap, RgbImage, overlay_png};
use sspa_report::{EpochRecord, Lineage, ModelMetrics, ReportData, ReportImage, render};

/// The bar chart's fill, `#0072B2` (`svg::PALETTE[0]`).
const BAR: [u8; 3] = [0x00, 0x72, 0xb2];
const WIDTH: u32 = 1200;
const HEIGHT: u32 = 4000;
const TIMEOUT: Duration = Duration::from_secs(90);

fn chromium() -> PathBuf {
    if let Some(path) = std::env::var_os("SSPA_CHROMIUM") {
        return PathBuf::from(path);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!(
        "chromium is not installed: run `scripts/setup` (it installs the Debian package `chromium`; CI runs it), \
         or point SSPA_CHROMIUM at a Chromium binary"
    );
}

/// What a Chromium run printed.
struct Printed {
    stdout: String,
}

/// Runs headless Chromium on `page` with the network blocked; kills it after [`TIMEOUT`]. Output
/// goes to files (a piped stderr full of D-Bus complaints would block it).
fn run_chromium(page: &Path, profile: &Path, extra: &[String]) -> Printed {
    let stdout_path = profile.with_extension("stdout");
    let stderr_path = profile.with_extension("stderr");
    let mut command = Command::new(chromium());
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--force-color-profile=srgb",
            "--force-device-scale-factor=1",
            &format!("--window-size={WIDTH},{HEIGHT}"),
            // No network: unresolvable host names, a dead proxy for everything, no background traffic.
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--proxy-server=http://127.0.0.1:9",
            "--proxy-bypass-list=<-loopback>",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-domain-reliability",
            "--disable-sync",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--mute-audio",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout_path).expect("stdout file"))
        .stderr(std::fs::File::create(&stderr_path).expect("stderr file"));
    let mut child = command.spawn().unwrap_or_else(|e| panic!("starting {:?}: {e} (see scripts/setup)", chromium()));
    let started = Instant::now();
    let stderr = || std::fs::read_to_string(&stderr_path).unwrap_or_default();
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for chromium") {
            break status;
        }
        if started.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium ran over {TIMEOUT:?}; stderr:\n{}", stderr());
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "chromium failed ({status}):\n{}", stderr());
    Printed { stdout: std::fs::read_to_string(&stdout_path).expect("chromium stdout") }
}

/// A grey 112² image with a lighter square, and a 4×4 map peaking in cell (1, 2).
fn heat_map() -> Vec<u8> {
    let side = 112u32;
    let mut pixels = vec![90u8; (side * side * 3) as usize];
    for y in 30..80 {
        for x in 40..90 {
            let at = ((y * side + x) * 3) as usize;
            pixels[at..at + 3].copy_from_slice(&[200, 200, 200]);
        }
    }
    let mut values = vec![0.01f32; 16];
    values[4 + 2] = 0.6;
    values[4 + 1] = 0.2;
    overlay_png(
        &RgbImage { width: side, height: side, pixels: &pixels },
        &PatchMap { rows: 4, columns: 4, values: &values },
    )
    .expect("png")
}

fn report() -> ReportData {
    let labels: Vec<String> = (0..8).map(|index| format!("class {index}")).collect();
    let images = 64;
    let (mut scores, mut targets) = (Vec::new(), Vec::new());
    for image in 0..images {
        for class in 0..labels.len() {
            let positive = (image * 7 + class * 3) % 5 < 2;
            let noise = ((image * 31 + class * 17) % 13) as f32 / 13.0;
            targets.push(i8::from(positive));
            scores.push(if positive { 0.4 + 0.6 * noise } else { 0.7 * noise });
        }
    }
    let ids = (0..images).map(|index| format!("img{index}.jpg")).collect();
    let data = EvalData::from_row_major(ids, labels, &scores, &targets).expect("data");
    let metrics = evaluate_data(&data, &EvalOptions::default()).expect("metrics");
    let png = heat_map();
    ReportData {
        domain: "render-test".into(),
        run_id: "run-1".into(),
        models: vec![ModelMetrics::from_report("raw", &metrics)],
        per_class_ap: metrics.per_class_ap.clone(),
        chart_model: "raw".into(),
        classes_without_positives: Vec::new(),
        pr_curves: best_and_worst_curves(&data, &metrics, 2, 100),
        training: (1..=6)
            .map(|epoch| EpochRecord {
                epoch,
                train_loss: 1.0 / f64::from(epoch),
                learning_rate: 1e-3 / f64::from(epoch),
                val_map_raw: Some(50.0 + f64::from(epoch)),
                val_map_ema: Some(49.0 + f64::from(epoch)),
            })
            .collect(),
        previous: None,
        lineage: Lineage { config_hash: Some("0123".into()), ..Lineage::default() },
        images: vec![
            ReportImage { caption: "image 1, `class 0`".into(), file: None, png: png.clone() },
            ReportImage { caption: "image 1, gate".into(), file: None, png },
        ],
    }
}

fn near(pixel: [u8; 3], colour: [u8; 3], tolerance: u8) -> bool {
    pixel.iter().zip(colour).all(|(&a, b)| a.abs_diff(b) <= tolerance)
}

#[test]
fn chromium_draws_the_plots_and_maps() {
    let directory = tempfile::tempdir().expect("temp dir");
    let page = directory.path().join("report.html");
    let (_, html) = render(&report());
    std::fs::write(&page, html).expect("write report.html");
    let profile = directory.path().join("profile");
    std::fs::create_dir_all(&profile).expect("profile dir");

    // The DOM as parsed: five SVG plots (AP bars, PR curves, three training charts), the bars, two images.
    let dom = run_chromium(&page, &profile, &["--dump-dom".into()]).stdout;
    assert_eq!(dom.matches("<svg").count(), 5, "svg elements in the DOM:\n{dom}");
    assert_eq!(dom.matches("<rect class=\"bar\"").count(), 8, "one bar a class");
    assert!(dom.matches("<polyline").count() >= 5);
    assert_eq!(dom.matches("<img alt=").count(), 2);
    assert!(dom.contains("src=\"data:image/png;base64,"));

    // The screenshot: not blank, bars and heat maps on screen.
    let screenshot = directory.path().join("screenshot.png");
    run_chromium(&page, &profile, &[format!("--screenshot={}", screenshot.display())]);
    let shot = image::open(&screenshot).expect("screenshot is a PNG").to_rgb8();
    assert_eq!(shot.dimensions(), (WIDTH, HEIGHT));
    let pixels: Vec<[u8; 3]> = shot.pixels().map(|pixel| pixel.0).collect();
    let white = pixels.iter().filter(|pixel| near(**pixel, [255, 255, 255], 2)).count();
    assert!(white < pixels.len(), "the screenshot is blank");
    let distinct: std::collections::HashSet<[u8; 3]> = pixels.iter().copied().collect();
    assert!(distinct.len() > 50, "only {} colours on screen", distinct.len());
    let bars = pixels.iter().filter(|pixel| near(**pixel, BAR, 3)).count();
    assert!(bars > 2_000, "{bars} pixels of the bar colour");
    // Heat-map colours: the colour scale blended over the image's two greys. Most of both maps'
    // pixels, and the hot end (t ≥ 0.75, yellow to red) around the peak.
    let alpha = sspa_report::heatmap::OPACITY;
    let blend =
        |grey: f32, colour: [u8; 3]| colour.map(|c| ((1.0 - alpha) * grey + alpha * f32::from(c)).round() as u8);
    // Every colour within 3 levels of the blended scale → its highest `t` (a lookup table: the
    // screenshot has millions of pixels and tests run unoptimised).
    let mut scale: std::collections::HashMap<[u8; 3], f32> = std::collections::HashMap::new();
    for step in 0..=200 {
        let t = step as f32 / 200.0;
        for grey in [90.0, 200.0] {
            let colour = blend(grey, sspa_report::heatmap::colormap(t));
            for dr in -3i16..=3 {
                for dg in -3i16..=3 {
                    for db in -3i16..=3 {
                        let shifted = [(colour[0], dr), (colour[1], dg), (colour[2], db)]
                            .map(|(c, d)| (i16::from(c) + d).clamp(0, 255) as u8);
                        let entry = scale.entry(shifted).or_insert(t);
                        *entry = entry.max(t);
                    }
                }
            }
        }
    }
    let on_scale: Vec<f32> = pixels.iter().filter_map(|pixel| scale.get(pixel).copied()).collect();
    let side = 112 * sspa_report::heatmap::scale_factor(112, 112) as usize;
    assert!(on_scale.len() > side * side, "{} heat-map pixels, expected two {side}² maps", on_scale.len());
    let hot = on_scale.iter().filter(|&&t| t >= 0.75).count();
    assert!(hot > 200, "{hot} pixels of the heat map's hot end");
}
