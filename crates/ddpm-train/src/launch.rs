//! A training run as the `ddpm-train` command starts it: the device checked, SIGINT/SIGTERM
//! turned into "checkpoint and stop", progress on the terminal, a closing line naming what the
//! run wrote.

use crate::config::RunConfig;
use crate::error::{Result, TrainError};
use crate::trainer::{Outcome, Trainer};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

/// Trains (or resumes) `config`'s run under `runs_dir` until it finishes or a signal stops it.
pub fn train(config: RunConfig, runs_dir: &Path) -> Result<Outcome> {
    let device = ddpm_nets::parse_device(&config.train.device, "--device")
        .map_err(|e| TrainError::Config(crate::config::ConfigError(e)))?;
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // A second signal while the checkpoint is being written exits at once.
        let io = |e| TrainError::Io { path: "<signal handler>".into(), source: e };
        signal_hook::flag::register_conditional_shutdown(sig, 130, stop.clone()).map_err(io)?;
        signal_hook::flag::register(sig, stop.clone()).map_err(io)?;
    }
    let name = config.name.clone();
    let total = config.train.total_steps;
    let mut trainer = Trainer::new(config, runs_dir, device)?;
    tracing::info!(
        "run {} on {device:?}: step {} of {total}",
        trainer.run.root.display(),
        trainer.step
    );
    let started = std::time::Instant::now();
    let mut progress = crate::progress::for_terminal(total);
    let outcome = trainer.train(&stop, progress.as_mut())?;
    match outcome {
        Outcome::Finished { step } => {
            let run = &trainer.run;
            let made: Vec<String> = [
                run.latest_preview_path("png"),
                run.latest_preview_path("svg"),
                run.metrics_path(),
                run.loss_plot_path(),
            ]
            .into_iter()
            .filter(|p| p.exists())
            .filter_map(|p| p.file_name().map(|f| f.to_string_lossy().into_owned()))
            .collect();
            tracing::info!(
                "finished {name} at step {step} in {}: {} ({})",
                ddpm_cli::fmt_duration(started.elapsed().as_secs_f64()),
                run.root.display(),
                made.join(", ")
            );
        }
        Outcome::Interrupted { step } => tracing::info!(
            "interrupted at step {step}; checkpoint written. Run the same command to resume."
        ),
    }
    Ok(outcome)
}
