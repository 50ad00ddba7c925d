//! How training shows its progress: a bar with rate and ETA on a terminal ([`BarProgress`]),
//! log lines through tracing otherwise ([`LogProgress`]). Both log the trainer's lines.

use indicatif::ProgressBar;

/// What the trainer reports as it goes.
pub trait Progress {
    fn start(&mut self, step: u64, total: u64);
    fn advance(&mut self, step: u64, loss: Option<f64>);
    fn line(&mut self, msg: &str);
    fn finish(&mut self);
}

/// Progress that only logs through tracing.
#[derive(Debug, Default)]
pub struct LogProgress;

impl Progress for LogProgress {
    fn start(&mut self, _: u64, _: u64) {}
    fn advance(&mut self, _: u64, _: Option<f64>) {}
    fn line(&mut self, msg: &str) {
        tracing::info!("{msg}");
    }
    fn finish(&mut self) {}
}

/// No progress at all: the ranks other than 0 of a data-parallel run, whose lines would repeat
/// rank 0's.
#[derive(Debug, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&mut self, _: u64, _: u64) {}
    fn advance(&mut self, _: u64, _: Option<f64>) {}
    fn line(&mut self, _: &str) {}
    fn finish(&mut self) {}
}

/// A progress bar over the steps (rate, ETA, the last logged loss), log lines above it.
#[derive(Debug)]
pub struct BarProgress(ProgressBar);

impl BarProgress {
    pub fn new(total: u64) -> Self {
        Self(ddpm_cli::progress_bar(total, "steps"))
    }
}

impl Progress for BarProgress {
    fn start(&mut self, step: u64, total: u64) {
        self.0.set_length(total);
        self.0.set_position(step);
        self.0.reset_eta();
    }
    fn advance(&mut self, step: u64, loss: Option<f64>) {
        self.0.set_position(step);
        if let Some(l) = loss {
            self.0.set_message(format!("loss {l:.4}"));
        }
    }
    fn line(&mut self, msg: &str) {
        self.0.suspend(|| tracing::info!("{msg}"));
    }
    fn finish(&mut self) {
        self.0.finish_and_clear();
    }
}

/// A bar on a terminal, plain log lines otherwise.
pub fn for_terminal(total: u64) -> Box<dyn Progress> {
    use std::io::IsTerminal;
    if std::io::stderr().is_terminal() {
        Box::new(BarProgress::new(total))
    } else {
        Box::new(LogProgress)
    }
}
