//! `ddpm-train`: train a diffusion model, import a diffusers checkpoint as a run, or export a
//! run as a diffusers pipeline folder.
//!
//! `cargo xtask train` (the embedded digits job), or
//! `cargo xtask train --config configs/cifar10.toml --data DIR --name run1`.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use ddpm_run::DEFAULT_RUNS_DIR;
use ddpm_train::RunConfig;
use ddpm_train::config::Overrides;
use std::path::PathBuf;
use std::process::ExitCode;

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
    /// Write a run as a diffusers DDPMPipeline folder (unet/, scheduler/, model_index.json, README.md).
    Export(ExportArgs),
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
    #[arg(long, default_value = DEFAULT_RUNS_DIR)]
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
    #[arg(long, default_value = DEFAULT_RUNS_DIR)]
    runs_dir: PathBuf,
}

#[derive(Debug, clap::Args)]
struct ExportArgs {
    /// A run under --runs-dir, a run directory, or a checkpoint file.
    #[arg(long)]
    checkpoint: String,
    /// The folder to create; it must not exist.
    #[arg(long)]
    diffusers: PathBuf,
    /// Export the trained weights instead of the EMA weights.
    #[arg(long)]
    raw: bool,
    /// The checkpoint of this step instead of the latest.
    #[arg(long)]
    step: Option<u64>,
    #[arg(long, default_value = DEFAULT_RUNS_DIR)]
    runs_dir: PathBuf,
}

fn train(a: TrainArgs) -> Result<()> {
    let config = match &a.config {
        Some(p) => RunConfig::load(p)?,
        None => RunConfig::from_toml(DIGITS_CONFIG, "configs/digits.toml (embedded)")?,
    };
    let overrides = Overrides {
        data: a.data,
        name: a.name,
        steps: a.steps,
        device: a.device,
        batch_size: a.batch_size,
        seed: a.seed,
    };
    let config = config.with_overrides(&overrides)?;
    let name = config.name.clone();
    ddpm_train::launch::train(config, &a.runs_dir)
        .with_context(|| format!("run {name:?} in {}", a.runs_dir.display()))?;
    Ok(())
}

fn import(a: ImportArgs) -> Result<()> {
    let imported = ddpm_train::import::import_diffusers(&a.diffusers, &a.name, &a.runs_dir)?;
    println!(
        "imported {} ({} parameters) as {}; use --checkpoint {}",
        a.diffusers.display(),
        imported.parameters,
        imported.run.root.display(),
        a.name
    );
    Ok(())
}

fn export(a: ExportArgs) -> Result<()> {
    let e = ddpm_train::export::export_diffusers(
        &a.checkpoint,
        &a.runs_dir,
        &a.diffusers,
        a.raw,
        a.step,
    )?;
    println!(
        "exported {} weights of step {} ({} parameters) to {}; diffusers: DDPMPipeline.from_pretrained({:?})",
        if e.ema { "EMA" } else { "trained" },
        e.step,
        e.parameters,
        e.out.display(),
        e.out.display().to_string()
    );
    Ok(())
}

fn main() -> ExitCode {
    ddpm_cli::main(|cli: Cli| match cli.command {
        Command::Train(a) => train(a),
        Command::Import(a) => import(a),
        Command::Export(a) => export(a),
    })
}
