//! The one progress set-up of every stage attempt: an indicatif bar, drawn when stderr is a
//! terminal; otherwise (cron logs, CI) a log line per running attempt at most and at least every
//! [`LINE_EVERY`] — stage, done/total, rate, the attempt's message — so that a long stage shows it
//! is alive where no bar is drawn.

use crate::stage::Progress;
use std::time::{Duration, Instant};

/// Between two progress lines of one attempt when no bar is drawn.
pub(super) const LINE_EVERY: Duration = Duration::from_secs(10);

/// Bars of the running attempts.
pub(super) struct Bars {
    multi: indicatif::MultiProgress,
    style: indicatif::ProgressStyle,
    /// Bars are drawn (stderr is a terminal): no progress lines.
    drawn: bool,
}

impl Bars {
    pub(super) fn new(drawn: bool) -> Self {
        let multi = if drawn {
            indicatif::MultiProgress::new()
        } else {
            indicatif::MultiProgress::with_draw_target(indicatif::ProgressDrawTarget::hidden())
        };
        let style = indicatif::ProgressStyle::with_template(
            "{prefix:>10.bold} {spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
        Self { multi, style, drawn }
    }

    /// A bar for one attempt of `stage`, showing `label` until the attempt says more.
    pub(super) fn add(&self, stage: &str, label: String) -> Shown {
        let bar =
            self.multi.add(indicatif::ProgressBar::new(0).with_style(self.style.clone()).with_prefix(stage.to_owned()));
        if self.drawn {
            bar.enable_steady_tick(Duration::from_millis(200));
        }
        bar.set_message(label);
        let now = Instant::now();
        Shown { stage: stage.to_owned(), bar, started: now, last_line: now, lines: !self.drawn }
    }
}

/// One running attempt's bar.
pub(super) struct Shown {
    stage: String,
    bar: indicatif::ProgressBar,
    started: Instant,
    last_line: Instant,
    /// Log progress lines (no bar is drawn).
    lines: bool,
}

impl Shown {
    /// The handle the attempt updates.
    pub(super) fn progress(&self) -> Progress {
        Progress::new(self.bar.clone())
    }

    /// Logs a progress line when one is due at `now` (no bar drawn, [`LINE_EVERY`] since the
    /// attempt started or since its last line).
    pub(super) fn tick(&mut self, now: Instant) {
        if let Some(line) = self.due_line(now, LINE_EVERY) {
            tracing::info!(stage = %self.stage, "{line}");
        }
    }

    fn due_line(&mut self, now: Instant, every: Duration) -> Option<String> {
        if !self.lines || now.saturating_duration_since(self.last_line) < every {
            return None;
        }
        self.last_line = now;
        Some(line(
            self.bar.position(),
            self.bar.length().unwrap_or(0),
            self.bar.per_sec(),
            &self.bar.message(),
            now.saturating_duration_since(self.started),
        ))
    }

    pub(super) fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// `progress 120/400 (35.2/s) after 40 s: <message>`; without a known total, `running for 40 s:
/// <message>`.
fn line(done: u64, total: u64, per_sec: f64, message: &str, elapsed: Duration) -> String {
    let elapsed = elapsed.as_secs();
    let head = if total > 0 {
        format!("progress {done}/{total} ({}/s) after {elapsed} s", rate(per_sec))
    } else {
        format!("running for {elapsed} s")
    };
    if message.is_empty() { head } else { format!("{head}: {message}") }
}

/// Three significant digits, at most.
fn rate(per_sec: f64) -> String {
    match per_sec {
        r if !r.is_finite() || r <= 0.0 => "0".into(),
        r if r >= 100.0 => format!("{r:.0}"),
        r if r >= 10.0 => format!("{r:.1}"),
        r => format!("{r:.2}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_says_done_total_rate_and_message() {
        let second = Duration::from_secs(1);
        assert_eq!(line(120, 400, 35.23, "epoch 3", 40 * second), "progress 120/400 (35.2/s) after 40 s: epoch 3");
        assert_eq!(line(0, 0, 0.0, "slurm job 12 (log)", 12 * second), "running for 12 s: slurm job 12 (log)");
        assert_eq!(line(3, 8, 0.004, "", 11 * second), "progress 3/8 (0.00/s) after 11 s");
        assert_eq!(rate(1234.5), "1234");
    }

    #[test]
    fn lines_come_every_interval_only_where_no_bar_is_drawn() {
        let bars = Bars::new(false);
        let mut shown = bars.add("train", "starting".into());
        let progress = shown.progress();
        progress.update(5, 20);
        let every = Duration::from_millis(100);
        let start = shown.started;
        assert_eq!(shown.due_line(start + Duration::from_millis(50), every), None, "not yet due");
        let first = shown.due_line(start + Duration::from_millis(120), every).expect("due");
        assert!(first.starts_with("progress 5/20 ("), "{first}");
        assert!(first.ends_with(": starting"), "{first}");
        assert_eq!(shown.due_line(start + Duration::from_millis(180), every), None, "at most once per interval");
        progress.set_message("epoch 2/8");
        let second = shown.due_line(start + Duration::from_millis(230), every).expect("due again");
        assert!(second.ends_with(": epoch 2/8"), "{second}");

        // With bars drawn on a terminal, no lines.
        let drawn = Bars { drawn: true, ..Bars::new(false) };
        let mut shown = drawn.add("train", String::new());
        assert_eq!(shown.due_line(shown.started + Duration::from_secs(60), every), None);
        shown.finish();
    }
}
