//! Progress of long work: an indicatif bar on a terminal (step, loss, lr,
//! tokens/s, ETA), log lines when stderr is not one (CI logs, `nohup`), nothing
//! when quiet. Fine-tuning, pre-training and the experiment runner's grid use it;
//! a run's bar sits beneath the grid's when both are shown.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Where progress goes.
#[derive(Clone, Default)]
pub enum ProgressTarget {
    /// A bar on stderr (log lines if stderr is not a terminal).
    #[default]
    Stderr,
    /// A bar beneath others (the runner's grid); log lines off a terminal.
    Under(MultiProgress),
    /// Nothing.
    Quiet,
}

pub struct Progress {
    bar: ProgressBar,
    /// Off a terminal: a line every `log_every` positions and at the end.
    log_lines: bool,
    log_every: u64,
    total: u64,
    start: Instant,
    /// Where this process started counting (a resumed run starts past 0).
    first: AtomicU64,
}

impl Progress {
    /// A bar over `total` positions of `unit` (e.g. "steps", "runs").
    pub fn new(total: u64, unit: &str, target: &ProgressTarget) -> Self {
        let (bar, log_lines) = match target {
            ProgressTarget::Quiet => (ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::hidden()), false),
            ProgressTarget::Stderr => {
                let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
                let hidden = bar.is_hidden();
                (bar, hidden)
            }
            ProgressTarget::Under(multi) => {
                let hidden = multi.is_hidden();
                (multi.add(ProgressBar::new(total)), hidden)
            }
        };
        bar.set_style(
            ProgressStyle::with_template(&format!(
                "{{prefix}} {{bar:28}} {{pos}}/{{len}} {unit} [{{elapsed_precise}} < {{eta_precise}}] {{msg}}"
            ))
            .expect("valid template")
            .progress_chars("=> "),
        );
        Self { bar, log_lines, log_every: (total / 10).max(1), total, start: Instant::now(), first: AtomicU64::new(0) }
    }

    /// Log a line every `n` positions when off a terminal (default: a tenth of the total).
    pub fn log_every(mut self, n: u64) -> Self {
        self.log_every = n.max(1);
        self
    }

    pub fn set_prefix(&self, prefix: impl Into<String>) {
        self.bar.set_prefix(prefix.into());
    }

    /// Moves to `position` with `message` (loss, lr, tokens/s...).
    pub fn update(&self, position: u64, message: String) {
        self.bar.set_position(position);
        if self.log_lines && (position.is_multiple_of(self.log_every) || position == self.total) {
            let prefix = self.bar.prefix();
            let eta = self.eta_seconds(position);
            eprintln!(
                "{prefix}{}{position}/{} {message} elapsed {:.0} s{}",
                if prefix.is_empty() { "" } else { " " },
                self.total,
                self.start.elapsed().as_secs_f64(),
                eta.map(|s| format!(", ETA {s:.0} s")).unwrap_or_default()
            );
        }
        self.bar.set_message(message);
    }

    /// From this process's own pace: steps a resumed run skipped took no time here.
    fn eta_seconds(&self, position: u64) -> Option<f64> {
        let done = position.saturating_sub(self.first.load(Ordering::Relaxed));
        (done > 0 && position < self.total).then(|| self.start.elapsed().as_secs_f64() / done as f64 * (self.total - position) as f64)
    }

    /// A line above the bar (or a log line).
    pub fn println(&self, line: impl AsRef<str>) {
        if self.log_lines {
            eprintln!("{}", line.as_ref());
        } else if !self.bar.is_hidden() {
            self.bar.println(line.as_ref());
        }
    }

    /// The position the bar starts from (a resumed run).
    pub fn set_position(&self, position: u64) {
        self.bar.set_position(position);
        self.bar.reset_eta();
        self.first.store(position, Ordering::Relaxed);
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }

    /// Leaves the bar as it is (a run stopped on request).
    pub fn abandon(&self) {
        self.bar.abandon();
    }
}
