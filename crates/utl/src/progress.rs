//! Progress of long operations: a bar on a terminal, a plain log line now and then elsewhere.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// How often a plain line is logged when stderr is not a terminal.
const LOG_EVERY: Duration = Duration::from_secs(5);

/// Reports how far an operation got, in bytes or in keys.
pub struct Progress {
    what: &'static str,
    /// What `done` and `total` count, for the log lines.
    unit: &'static str,
    bar: Option<ProgressBar>,
    started: Instant,
    last_log: Instant,
    total: Option<u64>,
}

impl Progress {
    /// `total` bytes (or keys, when `bytes` is false) to go through, when known.
    pub fn new(what: &'static str, total: Option<u64>, bytes: bool) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = match total {
                Some(n) => ProgressBar::new(n),
                None => ProgressBar::new_spinner(),
            };
            let unit = match (bytes, total.is_some()) {
                (true, true) => "{bytes}/{total_bytes} ({bytes_per_sec}, {eta} left)",
                (true, false) => "{bytes} ({bytes_per_sec})",
                (false, true) => "{human_pos}/{human_len} keys ({per_sec}, {eta} left)",
                (false, false) => "{human_pos} keys ({per_sec})",
            };
            let template = format!("{{msg}} [{{elapsed_precise}}] {{wide_bar}} {unit}");
            if let Ok(style) = ProgressStyle::with_template(&template) {
                bar.set_style(style);
            }
            bar.set_message(what);
            bar
        });
        Progress {
            what,
            unit: if bytes { "bytes" } else { "keys" },
            bar,
            started: Instant::now(),
            last_log: Instant::now(),
            total,
        }
    }

    /// `done` so far.
    pub fn set(&mut self, done: u64) {
        match &self.bar {
            Some(bar) => bar.set_position(done),
            None if self.last_log.elapsed() >= LOG_EVERY => {
                self.last_log = Instant::now();
                let secs = self.started.elapsed().as_secs_f64().max(0.001);
                let rate = done as f64 / secs;
                let left = self
                    .total
                    .filter(|_| rate > 0.0)
                    .map(|total| Duration::from_secs_f64(total.saturating_sub(done) as f64 / rate));
                tracing::info!(
                    operation = self.what,
                    unit = self.unit,
                    done,
                    total = self.total,
                    "per-second" = rate as u64,
                    left = ?left,
                    "in progress"
                );
            }
            None => {}
        }
    }

    /// Ends the bar, and logs the totals.
    pub fn finish(self, done: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(done);
            bar.finish_and_clear();
        }
        tracing::info!(
            operation = self.what,
            unit = self.unit,
            done,
            took = ?self.started.elapsed(),
            "finished"
        );
    }
}
