//! `ddpm-train`: train a diffusion model, or import a diffusers checkpoint as a run.
//!
//! `cargo xtask train` (the embedded digits job), or
//! `cargo xtask train --config configs/cifar10.toml --data DIR --name run1`.

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use ddpm_train::trainer::{Progress, fmt_duration};
use ddpm_train::{Outcome, TrainConfig, Trainer, parse_device};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

/// The default job: the real 8x8 handwritten digits, small enough for a laptop CPU.
const DIGITS_CONFIG: &str = include_str!("../../../../configs/digits.toml");

#[derive(Debug, Parser)]
#[command(
    name = "ddpm-train",
    version,
    about = "Train denoising diffusion models (Ho et al. 2020)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Train (or resume) a run. Rerunning the same command resumes from the latest checkpoint.
    Train(TrainArgs),
    /// Turn a diffusers UNet2DModel folder into a run directory usable as --checkpoint NAME.
    Import(ImportArgs),
}

#[derive(Debug, clap::Args)]
struct TrainArgs {
    /// Run config (TOML); default: the embedded digits job (configs/digits.toml).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Data: an embedded data set (digits, swissroll, gaussians8, moons) or a directory
    /// (CIFAR-10 binary batches, MNIST IDX files, or a folder of images).
    #[arg(long)]
    data: Option<String>,
    /// Run name; the run lives in <runs-dir>/<name>.
    #[arg(long)]
    name: Option<String>,
    /// Total number of training steps (a finished run is extended by asking for more).
    #[arg(long)]
    steps: Option<u64>,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long)]
    device: Option<String>,
    /// Global batch size.
    #[arg(long)]
    batch_size: Option<usize>,
    #[arg(long)]
    seed: Option<u64>,
    #[arg(long, default_value = "runs")]
    runs_dir: PathBuf,
}

#[derive(Debug, clap::Args)]
struct ImportArgs {
    /// A diffusers model folder (config.json + diffusion_pytorch_model.safetensors), or a
    /// pipeline folder with unet/ and scheduler/.
    #[arg(long)]
    diffusers: PathBuf,
    /// Name of the run to create.
    #[arg(long)]
    name: String,
    #[arg(long, default_value = "runs")]
    runs_dir: PathBuf,
}

/// A progress bar on a terminal (rate and ETA), plain log lines otherwise.
struct Bar(Option<ProgressBar>);

impl Progress for Bar {
    fn start(&mut self, step: u64, total: u64) {
        if let Some(pb) = &self.0 {
            pb.set_length(total);
            pb.set_position(step);
            pb.reset_eta();
        }
    }
    fn advance(&mut self, step: u64, loss: Option<f64>) {
        if let Some(pb) = &self.0 {
            pb.set_position(step);
            if let Some(l) = loss {
                pb.set_message(format!("loss {l:.4}"));
            }
        }
    }
    fn line(&mut self, msg: &str) {
        match &self.0 {
            Some(pb) => pb.suspend(|| tracing::info!("{msg}")),
            None => tracing::info!("{msg}"),
        }
    }
    fn finish(&mut self) {
        if let Some(pb) = &self.0 {
            pb.finish_and_clear();
        }
    }
}

fn load_config(args: &TrainArgs) -> Result<TrainConfig> {
    let mut config = match &args.config {
        Some(p) => TrainConfig::load(p)?,
        None => TrainConfig::from_toml(DIGITS_CONFIG, "configs/digits.toml (embedded)")?,
    };
    if let Some(d) = &args.data {
        let from_arg = ddpm_data::config_from_arg(d);
        config.data.dataset = from_arg.dataset;
        config.data.path = from_arg.path;
    }
    if let Some(n) = &args.name {
        config.name = n.clone();
    }
    if let Some(s) = args.steps {
        config.train.total_steps = s;
    }
    if let Some(d) = &args.device {
        config.train.device = d.clone();
    }
    if let Some(b) = args.batch_size {
        config.optim.batch_size = b;
    }
    if let Some(s) = args.seed {
        config.seed = s;
    }
    config.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(config)
}

fn train(args: TrainArgs) -> Result<()> {
    let config = load_config(&args)?;
    let device =
        parse_device(&config.train.device).map_err(|e| anyhow::anyhow!("--device: {e}"))?;
    if device.is_cuda() && !tch::Cuda::is_available() {
        bail!(
            "--device {}: CUDA is not available to this binary (see `cargo xtask doctor`)",
            config.train.device
        );
    }
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // A second signal while the checkpoint is being written exits at once.
        signal_hook::flag::register_conditional_shutdown(sig, 130, stop.clone())?;
        signal_hook::flag::register(sig, stop.clone())?;
    }
    let name = config.name.clone();
    let total = config.train.total_steps;
    let mut trainer = Trainer::new(config, &args.runs_dir, device)
        .with_context(|| format!("preparing run {name:?} in {}", args.runs_dir.display()))?;
    tracing::info!(
        "run {} on {:?}: step {} of {total}",
        trainer.run.root.display(),
        device,
        trainer.step
    );
    let bar = std::io::stderr().is_terminal().then(|| {
        let pb = ProgressBar::new(total);
        pb.set_style(
            ProgressStyle::with_template(
                "{elapsed_precise} [{bar:30}] {pos}/{len} steps  {per_sec}  ETA {eta}  {msg}",
            )
            .unwrap()
            .progress_chars("=> "),
        );
        pb
    });
    let started = std::time::Instant::now();
    match trainer.train(&stop, &mut Bar(bar))? {
        Outcome::Finished { step } => {
            let root = &trainer.run.root;
            let made: Vec<&str> = ["samples.png", "samples.svg", "metrics.jsonl", "loss.svg"]
                .into_iter()
                .filter(|f| root.join(f).exists())
                .collect();
            tracing::info!(
                "finished {name} at step {step} in {}: {} ({})",
                fmt_duration(started.elapsed().as_secs_f64()),
                root.display(),
                made.join(", ")
            );
        }
        Outcome::Interrupted { step } => {
            tracing::info!(
                "interrupted at step {step}; checkpoint written. Run the same command to resume."
            );
        }
    }
    Ok(())
}

fn import(args: ImportArgs) -> Result<()> {
    let imported =
        ddpm_train::import::import_diffusers(&args.diffusers, &args.name, &args.runs_dir)?;
    println!(
        "imported {} ({} parameters) as {}; use --checkpoint {}",
        args.diffusers.display(),
        imported.parameters,
        imported.run.root.display(),
        args.name
    );
    Ok(())
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_target(false)
        .with_writer(std::io::stderr)
        .init();
    let cli: Cli = ddpm_core::cli::parse_or_exit();
    let result = match cli.command {
        Command::Train(a) => train(a),
        Command::Import(a) => import(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
