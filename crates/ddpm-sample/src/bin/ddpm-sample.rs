//! `ddpm-sample`: sample from a checkpoint, or draw the paper's figures.
//!
//! `cargo xtask sample --checkpoint run1 --sampler ddim --steps 50 --eta 0 -n 64 --seed 0 --out DIR`

use anyhow::{Result, bail};
use clap::{Parser, Subcommand};
use ddpm_dist::{Dist, DistEnv, DistOptions};
use ddpm_sample::figure_request::{self, Figure, FigureRequest};
use ddpm_sample::graph::GraphMode;
use ddpm_sample::job::{self, JobOptions};
use ddpm_sample::request::{self, ModelArgs, SampleRequest, SamplerArgs};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(name = "ddpm-sample", version, about = "Sample from trained diffusion models")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Sample n images into --out: grid.png, images/*.png and samples.npz (resumable).
    Sample(SampleArgs),
    /// The paper's figures: progressive generation, interpolation, 2-D trajectories.
    Figures(FigureArgs),
}

#[derive(Debug, clap::Args)]
struct SampleArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    sampler: SamplerArgs,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Number of images.
    #[arg(short = 'n', long, default_value_t = 64)]
    num: usize,
    /// Index of the first image (shards of a job: --start 0 -n 25000, --start 25000 -n 25000).
    #[arg(long, default_value_t = 0)]
    start: u64,
    /// Images per batch (default: 64 on the CPU, the most that fits on a GPU).
    #[arg(long)]
    batch_size: Option<usize>,
    /// Output directory (default: <run>/samples/step<step>[-raw]-<sampler>-<steps>[-<sigmas>][-w<w>][-o<digest>]-seed<seed>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Class of every image (class-conditional models).
    #[arg(long, conflicts_with = "random_classes")]
    class: Option<i64>,
    /// A random class per image (class-conditional models).
    #[arg(long)]
    random_classes: bool,
    /// Start from this x_T: a .npy, an .npz (array "noise", or its only array) or a
    /// .safetensors file (tensor "noise", or its only tensor), shape n x C x H x W.
    #[arg(long)]
    noise: Option<PathBuf>,
    /// Skip the individual PNGs.
    #[arg(long)]
    no_png: bool,
    /// bf16 autocast for the network on CUDA.
    #[arg(long)]
    bf16: bool,
    /// Replay the network call from captured CUDA graphs (CUDA only; one graph per batch shape).
    #[arg(long)]
    cuda_graph: bool,
}

#[derive(Debug, clap::Args)]
struct FigureArgs {
    #[arg(value_enum)]
    figure: Figure,
    #[command(flatten)]
    model: ModelArgs,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output directory (default: the run directory).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Samples (progressive) or points (trajectories).
    #[arg(short = 'n', long)]
    num: Option<usize>,
    /// Ancestral steps (progressive).
    #[arg(long)]
    steps: Option<usize>,
    /// Columns: values of t (progressive, trajectories) or of lambda (interpolate).
    #[arg(long, default_value_t = 10)]
    points: usize,
    /// Data set for interpolate/trajectories (default: the run's data).
    #[arg(long)]
    data: Option<String>,
    /// Indices of the two images to interpolate.
    #[arg(long, num_args = 2, default_values_t = [0u64, 1])]
    pair: Vec<u64>,
    /// Diffusion step to encode to for interpolate (default T/2).
    #[arg(long)]
    t: Option<usize>,
}

fn sample(a: SampleArgs) -> Result<()> {
    // Under torchrun every rank samples its share of the batches into the same --out.
    let env = DistEnv::from_env()?;
    let device = env.device(&a.model.device, "--device").map_err(anyhow::Error::msg)?;
    let (run, model) = a.model.open_on(device)?;
    let sampler = a.sampler.options(&run, &model)?;
    if a.num == 0 {
        bail!("-n must be at least 1");
    }
    if a.batch_size == Some(0) {
        bail!("--batch-size must be at least 1");
    }
    let labels = request::labels(a.class, a.random_classes, a.sampler.guidance, &model)?;
    let req = SampleRequest {
        sampler,
        seed: a.seed,
        start: a.start,
        n: a.num,
        labels,
        noise_file: a.noise,
        bf16: a.bf16,
    };
    let shape = model.net.sample_shape();
    let noise = req.noise_file.as_ref().map(|p| job::load_noise(p, a.num, &shape)).transpose()?;
    let dev = model.vs.device();
    let dist = Dist::init(&env, dev, DistOptions::default())?;
    let out = a.out.unwrap_or_else(|| run.sample_job_dir(&req.job_name(model.step, model.ema)));
    let main = dist.is_main();
    if main {
        let ranks = match dist.backend() {
            Some(b) => format!(", {} ranks over {b}", dist.world_size()),
            None => String::new(),
        };
        tracing::info!(
            "sampling {} images with {} ({} network evaluations each) from {} (step {}, {}) on {dev:?}{ranks}",
            a.num,
            req.sampler.kind().name(),
            req.sampler.network_evaluations(),
            model.checkpoint.display(),
            model.step,
            if model.ema { "EMA" } else { "raw" }
        );
    }
    let bar =
        if main { ddpm_cli::progress_bar(0, "images") } else { ddpm_cli::ProgressBar::hidden() };
    let started = std::time::Instant::now();
    let graph = a.cuda_graph.then_some(GraphMode::Cuda);
    let job = JobOptions { out: out.clone(), pngs: !a.no_png, graph };
    let (npz, manifest) = job::sample_checkpoint(
        &model,
        &req,
        a.batch_size,
        &job,
        noise.as_ref(),
        &dist,
        &mut |done, of| {
            bar.set_length(of as u64);
            bar.set_position(done as u64)
        },
    )?;
    bar.finish_and_clear();
    if main {
        let secs = started.elapsed().as_secs_f64();
        tracing::info!(
            "{} images in {secs:.1} s ({:.2} images/s, batch {}): {}",
            a.num,
            a.num as f64 / secs,
            manifest.batch_size,
            npz.display()
        );
        println!("{}", out.display());
    }
    Ok(())
}

fn figures(a: FigureArgs) -> Result<()> {
    let (run, model) = a.model.open()?;
    let out = a.out.clone().unwrap_or_else(|| run.root.clone());
    let req = FigureRequest {
        figure: a.figure,
        seed: a.seed,
        num: a.num,
        steps: a.steps,
        points: a.points,
        data: a.data,
        pair: [a.pair[0], a.pair[1]],
        t: a.t,
    };
    let path = figure_request::draw(&req, &model, &run, &out)?;
    println!("{}", path.display());
    Ok(())
}

fn main() -> ExitCode {
    ddpm_cli::main(|cli: Cli| match cli.command {
        Command::Sample(a) => sample(a),
        Command::Figures(a) => figures(a),
    })
}
