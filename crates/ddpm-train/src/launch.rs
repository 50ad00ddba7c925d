//! A training run as the `ddpm-train` command starts it: the launcher's environment read
//! (torchrun's RANK, WORLD_SIZE, ... for data parallelism), the device checked, the process
//! group joined, SIGINT/SIGTERM turned into "checkpoint and stop", progress on the terminal
//! (rank 0), a closing line naming what the run wrote.

use crate::config::{ConfigError, RunConfig};
use crate::error::{Result, TrainError};
use crate::trainer::{Outcome, Trainer};
use ddpm_dist::{Dist, DistEnv, DistOptions};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

/// Trains (or resumes) `config`'s run under `runs_dir` until it finishes or a signal stops it.
/// Under torchrun (`torchrun --nproc-per-node N --no-python ddpm-train train ...`) this process
/// is one rank of a data-parallel job.
pub fn train(config: RunConfig, runs_dir: &Path) -> Result<Outcome> {
    config.validate()?;
    let env = DistEnv::from_env().map_err(ddpm_dist::DistError::from)?;
    let device = env
        .device(&config.train.device, "train.device (--device)")
        .map_err(|e| TrainError::Config(ConfigError(e)))?;
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // A second signal while the checkpoint is being written exits at once.
        let io = |e| TrainError::Io { path: "<signal handler>".into(), source: e };
        signal_hook::flag::register_conditional_shutdown(sig, 130, stop.clone()).map_err(io)?;
        signal_hook::flag::register(sig, stop.clone()).map_err(io)?;
    }
    let name = config.name.clone();
    let total = config.train.total_steps;
    let options = DistOptions {
        timeout: std::time::Duration::from_secs_f64(config.train.dist_timeout_minutes * 60.0),
        ..DistOptions::default()
    };
    let dist = Dist::init(&env, device, options)?;
    let main = dist.is_main();
    let mut trainer = Trainer::with_dist(config, runs_dir, dist)?;
    if main {
        let ranks = match trainer.dist().backend() {
            Some(b) => format!(" ({} ranks, {b})", trainer.world_size),
            None => String::new(),
        };
        tracing::info!(
            "run {} on {device:?}{ranks}: step {} of {total}",
            trainer.run.root.display(),
            trainer.step
        );
    }
    let started = std::time::Instant::now();
    let mut progress: Box<dyn crate::progress::Progress> = if main {
        crate::progress::for_terminal(total)
    } else {
        Box::new(crate::progress::NoProgress)
    };
    let outcome = trainer.train(&stop, progress.as_mut())?;
    if !main {
        return Ok(outcome);
    }
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
