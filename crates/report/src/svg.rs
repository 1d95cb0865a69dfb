//! Small SVG plotting: linear scales, "nice" axis ticks, line and bar charts. Text is escaped;
//! the SVG is meant to be inlined into HTML, so it carries no namespace URL.

use std::fmt::Write;

/// Colours of successive series (colour-blind-safe, Okabe–Ito).
const PALETTE: [&str; 8] = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442"];

pub use crate::markup::html as escape;

/// Maps `domain` linearly onto `range` (pixels; `range.0 > range.1` for a y axis).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinearScale {
    pub domain: (f64, f64),
    pub range: (f64, f64),
}

impl LinearScale {
    pub fn map(&self, value: f64) -> f64 {
        let (d0, d1) = self.domain;
        let (r0, r1) = self.range;
        if d1 == d0 {
            return (r0 + r1) / 2.0;
        }
        r0 + (value - d0) / (d1 - d0) * (r1 - r0)
    }
}

/// Tick step of 1, 2 or 5 × 10^k giving about `target` ticks over `[min, max]`.
pub fn nice_step(min: f64, max: f64, target: usize) -> f64 {
    let span = (max - min).abs();
    if span == 0.0 || !span.is_finite() {
        return 1.0;
    }
    let raw = span / target.max(1) as f64;
    let magnitude = 10f64.powf(raw.log10().floor());
    let fraction = raw / magnitude;
    let nice = if fraction <= 1.0 {
        1.0
    } else if fraction <= 2.0 {
        2.0
    } else if fraction <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * magnitude
}

/// Axis bounds widened to whole steps, and the ticks between them.
pub fn nice_ticks(min: f64, max: f64, target: usize) -> (f64, f64, Vec<f64>) {
    let (min, max) = if min == max { (min - 0.5, max + 0.5) } else { (min.min(max), min.max(max)) };
    let step = nice_step(min, max, target);
    let low = (min / step).floor() * step;
    let high = (max / step).ceil() * step;
    let count = ((high - low) / step).round() as usize;
    let ticks = (0..=count).map(|index| low + index as f64 * step).collect();
    (low, high, ticks)
}

/// A tick label with as many decimals as the step needs; tiny or huge steps in `e` notation.
pub fn format_tick(value: f64, step: f64) -> String {
    if value == 0.0 {
        return "0".to_owned();
    }
    if step < 1e-3 || value.abs() >= 1e6 {
        let text = format!("{value:.1e}");
        return text.replace(".0e", "e");
    }
    let decimals = (-step.log10().floor()).max(0.0) as usize;
    format!("{value:.decimals$}")
}

/// One line of a line chart: `(x, y)` points; non-finite `y` break the line.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// A line chart; ranges default to the data's extent.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LineChart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
    pub x_range: Option<(f64, f64)>,
    pub y_range: Option<(f64, f64)>,
}

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 360.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 190.0;
const TOP: f64 = 32.0;
const BOTTOM: f64 = 48.0;

fn extent(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    values.filter(|value| value.is_finite()).fold(None, |range, value| match range {
        None => Some((value, value)),
        Some((low, high)) => Some((f64::min(low, value), f64::max(high, value))),
    })
}

/// Renders a line chart as an `<svg>` element.
pub fn line_chart(chart: &LineChart) -> String {
    let points = || chart.series.iter().flat_map(|series| series.points.iter());
    let x_extent = chart.x_range.or_else(|| extent(points().map(|point| point.0))).unwrap_or((0.0, 1.0));
    let y_extent = chart.y_range.or_else(|| extent(points().map(|point| point.1))).unwrap_or((0.0, 1.0));
    let (x_low, x_high, x_ticks) = nice_ticks(x_extent.0, x_extent.1, 6);
    let (y_low, y_high, y_ticks) = nice_ticks(y_extent.0, y_extent.1, 5);
    let x = LinearScale { domain: (x_low, x_high), range: (LEFT, WIDTH - RIGHT) };
    let y = LinearScale { domain: (y_low, y_high), range: (HEIGHT - BOTTOM, TOP) };

    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="chart line-chart" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{title}"><title>{title}</title>"#,
        title = escape(&chart.title)
    );
    let _ = write!(svg, r#"<text x="{LEFT}" y="20" class="chart-title">{}</text>"#, escape(&chart.title));
    axes(&mut svg, &x, &y, &x_ticks, &y_ticks);
    let _ = write!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="middle" class="axis-label">{}</text>"#,
        (LEFT + WIDTH - RIGHT) / 2.0,
        HEIGHT - 8.0,
        escape(&chart.x_label)
    );
    let _ = write!(
        svg,
        r#"<text transform="translate(14 {}) rotate(-90)" text-anchor="middle" class="axis-label">{}</text>"#,
        (TOP + HEIGHT - BOTTOM) / 2.0,
        escape(&chart.y_label)
    );
    for (index, series) in chart.series.iter().enumerate() {
        let colour = PALETTE[index % PALETTE.len()];
        for run in series.points.split(|point| !point.0.is_finite() || !point.1.is_finite()) {
            if run.is_empty() {
                continue;
            }
            let coordinates: Vec<String> =
                run.iter().map(|&(px, py)| format!("{:.1},{:.1}", x.map(px), y.map(py))).collect();
            if run.len() == 1 {
                let _ = write!(
                    svg,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="2.5" fill="{colour}"><title>{}</title></circle>"#,
                    x.map(run[0].0),
                    y.map(run[0].1),
                    escape(&series.name)
                );
            } else {
                let _ = write!(
                    svg,
                    r#"<polyline fill="none" stroke="{colour}" stroke-width="1.8" points="{}"><title>{}</title></polyline>"#,
                    coordinates.join(" "),
                    escape(&series.name)
                );
            }
        }
        let legend_y = TOP + 8.0 + 18.0 * index as f64;
        let legend_x = WIDTH - RIGHT + 12.0;
        let _ = write!(
            svg,
            r#"<rect x="{legend_x}" y="{}" width="14" height="4" fill="{colour}"/><text x="{}" y="{}" class="legend">{}</text>"#,
            legend_y - 4.0,
            legend_x + 20.0,
            legend_y + 2.0,
            escape(&truncate(&series.name, 26))
        );
    }
    svg.push_str("</svg>");
    svg
}

fn axes(svg: &mut String, x: &LinearScale, y: &LinearScale, x_ticks: &[f64], y_ticks: &[f64]) {
    let x_step = x_ticks.get(1).zip(x_ticks.first()).map_or(1.0, |(b, a)| b - a);
    let y_step = y_ticks.get(1).zip(y_ticks.first()).map_or(1.0, |(b, a)| b - a);
    let (left, right) = x.range;
    let (bottom, top) = y.range;
    for &tick in y_ticks {
        let position = y.map(tick);
        let _ = write!(
            svg,
            r##"<line x1="{left}" x2="{right}" y1="{position:.1}" y2="{position:.1}" stroke="#e4e4e4"/><text x="{}" y="{:.1}" text-anchor="end" class="tick">{}</text>"##,
            left - 6.0,
            position + 4.0,
            format_tick(tick, y_step)
        );
    }
    for &tick in x_ticks {
        let position = x.map(tick);
        let _ = write!(
            svg,
            r##"<line x1="{position:.1}" x2="{position:.1}" y1="{bottom}" y2="{}" stroke="#888"/><text x="{position:.1}" y="{}" text-anchor="middle" class="tick">{}</text>"##,
            bottom + 5.0,
            bottom + 18.0,
            format_tick(tick, x_step)
        );
    }
    let _ = write!(
        svg,
        r##"<line class="axis" x1="{left}" x2="{right}" y1="{bottom}" y2="{bottom}" stroke="#444"/><line class="axis" x1="{left}" x2="{left}" y1="{bottom}" y2="{top}" stroke="#444"/>"##
    );
}

fn truncate(text: &str, characters: usize) -> String {
    if text.chars().count() <= characters {
        text.to_owned()
    } else {
        let mut short: String = text.chars().take(characters - 1).collect();
        short.push('…');
        short
    }
}

/// Vertical bars, one a `(label, value)` in the given order, on a `[0, y_max]` axis. Labels are
/// written under the bars up to 100 bars; every bar carries its label and value as a tooltip.
pub fn bar_chart(title: &str, y_label: &str, bars: &[(String, f64)], y_max: f64) -> String {
    // Bars fill the default width; past about 40 classes the chart grows (and scrolls).
    let count = bars.len().max(1) as f64;
    let bar = ((WIDTH - LEFT - 20.0) / count).clamp(4.0, 40.0).max(if bars.len() <= 100 { 14.0 } else { 4.0 });
    let labelled = bars.len() <= 100;
    let bottom = if labelled { 120.0 } else { BOTTOM };
    let width = (LEFT + 20.0 + bar * count).max(WIDTH);
    let height = TOP + 240.0 + bottom;
    let (_, high, ticks) = nice_ticks(0.0, y_max, 5);
    let x = LinearScale { domain: (0.0, count), range: (LEFT, LEFT + bar * count) };

    let y = LinearScale { domain: (0.0, high), range: (height - bottom, TOP) };
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="chart bar-chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="{title}"><title>{title}</title><text x="{LEFT}" y="20" class="chart-title">{title}</text>"#,
        title = escape(title)
    );
    let step = ticks.get(1).map_or(1.0, |second| second - ticks[0]);
    for &tick in &ticks {
        let position = y.map(tick);
        let _ = write!(
            svg,
            r##"<line x1="{LEFT}" x2="{:.1}" y1="{position:.1}" y2="{position:.1}" stroke="#e4e4e4"/><text x="{}" y="{:.1}" text-anchor="end" class="tick">{}</text>"##,
            x.range.1,
            LEFT - 6.0,
            position + 4.0,
            format_tick(tick, step)
        );
    }
    let _ = write!(
        svg,
        r#"<text transform="translate(14 {}) rotate(-90)" text-anchor="middle" class="axis-label">{}</text>"#,
        (TOP + height - bottom) / 2.0,
        escape(y_label)
    );
    let base = y.map(0.0);
    for (index, (label, value)) in bars.iter().enumerate() {
        let left = x.map(index as f64) + 1.0;
        let top = y.map(value.clamp(0.0, high));
        let _ = write!(
            svg,
            r#"<rect class="bar" x="{left:.1}" y="{top:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{}: {value:.2}</title></rect>"#,
            bar - 2.0,
            base - top,
            PALETTE[0],
            escape(label)
        );
        if labelled {
            let centre = left + (bar - 2.0) / 2.0;
            let _ = write!(
                svg,
                r#"<text transform="translate({centre:.1} {:.1}) rotate(-60)" text-anchor="end" class="bar-label">{}</text>"#,
                base + 8.0,
                escape(&truncate(label, 20))
            );
        }
    }
    let _ = write!(
        svg,
        r##"<line class="axis" x1="{LEFT}" x2="{:.1}" y1="{base:.1}" y2="{base:.1}" stroke="#444"/><line class="axis" x1="{LEFT}" x2="{LEFT}" y1="{base:.1}" y2="{TOP}" stroke="#444"/></svg>"##,
        x.range.1
    );
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_maps_ends_and_middle_and_flips() {
        let scale = LinearScale { domain: (0.0, 10.0), range: (300.0, 100.0) };
        assert_eq!(scale.map(0.0), 300.0);
        assert_eq!(scale.map(10.0), 100.0);
        assert_eq!(scale.map(5.0), 200.0);
        let flat = LinearScale { domain: (3.0, 3.0), range: (0.0, 10.0) };
        assert_eq!(flat.map(3.0), 5.0);
    }

    #[test]
    fn ticks_are_one_two_five_steps_covering_the_data() {
        assert_eq!(nice_step(0.0, 100.0, 5), 20.0);
        assert_eq!(nice_step(0.0, 1.0, 5), 0.2);
        assert_eq!(nice_step(0.0, 7.0, 6), 2.0);
        assert!((nice_step(0.0, 0.0003, 5) - 0.0001).abs() < 1e-15);
        let (low, high, ticks) = nice_ticks(0.13, 0.87, 5);
        assert!((low - 0.0).abs() < 1e-12 && (high - 1.0).abs() < 1e-12, "{low} {high}");
        assert_eq!(ticks.len(), 6);
        let (low, high, ticks) = nice_ticks(2.5, 2.5, 5);
        assert!(low <= 2.0 && high >= 3.0 && ticks.len() >= 2);
        let (low, high, _) = nice_ticks(-3.0, 41.0, 5);
        assert_eq!((low, high), (-10.0, 50.0));
    }

    #[test]
    fn tick_labels_use_the_step_precision() {
        assert_eq!(format_tick(0.4, 0.2), "0.4");
        assert_eq!(format_tick(60.0, 20.0), "60");
        assert_eq!(format_tick(0.25, 0.05), "0.25");
        assert_eq!(format_tick(0.0002, 0.0001), "2e-4");
        assert_eq!(format_tick(0.0, 0.0001), "0");
    }

    #[test]
    fn line_chart_draws_escaped_series_and_breaks_at_gaps() {
        let chart = LineChart {
            title: "loss <train>".into(),
            x_label: "epoch".into(),
            y_label: "loss".into(),
            series: vec![
                Series {
                    name: "a&b".into(),
                    points: vec![(1.0, 3.0), (2.0, 2.0), (3.0, f64::NAN), (4.0, 1.0), (5.0, 0.5)],
                },
                Series { name: "single".into(), points: vec![(1.0, 1.0)] },
            ],
            ..LineChart::default()
        };
        let svg = line_chart(&chart);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 2, "the NaN splits the line");
        assert_eq!(svg.matches("<circle").count(), 1);
        assert!(svg.contains("loss &lt;train&gt;") && svg.contains("a&amp;b"));
        assert!(!svg.contains("a&b") && !svg.contains("<train>"));
        assert!(!svg.contains("NaN"));
    }

    #[test]
    fn points_land_inside_the_plot_area() {
        let chart = LineChart {
            series: vec![Series { name: "s".into(), points: vec![(0.0, 0.0), (1.0, 1.0)] }],
            x_range: Some((0.0, 1.0)),
            y_range: Some((0.0, 1.0)),
            ..LineChart::default()
        };
        let svg = line_chart(&chart);
        let expected = format!("points=\"{:.1},{:.1} {:.1},{:.1}\"", LEFT, HEIGHT - BOTTOM, WIDTH - RIGHT, TOP);
        assert!(svg.contains(&expected), "{svg}");
    }

    #[test]
    fn bar_chart_has_a_bar_and_tooltip_per_class() {
        let bars = vec![("cat".to_owned(), 90.0), ("<dog>".to_owned(), 45.5)];
        let svg = bar_chart("AP", "AP (%)", &bars, 100.0);
        assert_eq!(svg.matches("<rect class=\"bar\"").count(), 2);
        assert!(svg.contains("<title>&lt;dog&gt;: 45.50</title>"));
        let many: Vec<(String, f64)> = (0..300).map(|index| (format!("c{index}"), index as f64 / 3.0)).collect();
        let svg = bar_chart("AP", "AP (%)", &many, 100.0);
        assert_eq!(svg.matches("<rect class=\"bar\"").count(), 300);
        assert_eq!(svg.matches("class=\"bar-label\"").count(), 0, "too many bars to label");
    }
}
