//! `ddpm-sample`: sample from a checkpoint, or draw the paper's figures.
//!
//! `cargo xtask sample --checkpoint run1 --sampler ddim --steps 50 --eta 0 -n 64 --seed 0 --out DIR`

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use ddpm_core::ModelVar;
use ddpm_nets::run::{LoadedModel, RunDir, load_model};
use ddpm_sample::job::{self, JobOptions, Labels, Manifest};
use ddpm_sample::{SamplerKind, SamplerOptions, Skip, TimeSteps, figures};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
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
struct ModelArgs {
    /// A run name under --runs-dir, a run directory, or a checkpoint file.
    #[arg(long)]
    checkpoint: String,
    #[arg(long, default_value = "runs")]
    runs_dir: PathBuf,
    /// Use the raw weights instead of the EMA weights.
    #[arg(long)]
    raw: bool,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    device: String,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

#[derive(Debug, clap::Args)]
struct SampleArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[arg(long, value_enum, default_value = "ddpm")]
    sampler: SamplerKind,
    /// Network evaluations (default: T for ddpm, 50 ddim, 20 dpm-solver++, 18 heun steps).
    #[arg(long)]
    steps: Option<usize>,
    /// DDIM's eta (0: deterministic).
    #[arg(long, default_value_t = 0.0)]
    eta: f64,
    /// DDIM's timestep skip.
    #[arg(long, value_enum, default_value = "uniform")]
    skip: Skip,
    /// DPM-Solver++'s time-step placement.
    #[arg(long, value_enum, default_value = "log-snr")]
    time_steps: TimeSteps,
    /// DDPM's variance instead of the model's: fixed_small or fixed_large.
    #[arg(long)]
    variance: Option<String>,
    /// Clip predicted x0 to [-1, 1] (default: on for ddpm/ddim, off for the ODE solvers).
    #[arg(long)]
    clip: Option<bool>,
    /// Number of images.
    #[arg(short = 'n', long, default_value_t = 64)]
    num: usize,
    /// Index of the first image (shards of a job: --start 0 -n 25000, --start 25000 -n 25000).
    #[arg(long, default_value_t = 0)]
    start: u64,
    /// Images per batch (default: 64 on the CPU, the most that fits on a GPU).
    #[arg(long)]
    batch_size: Option<usize>,
    /// Output directory (default: <run>/samples/<sampler>-<steps>-seed<seed>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Class of every image (class-conditional models).
    #[arg(long, conflicts_with = "random_classes")]
    class: Option<i64>,
    /// A random class per image (class-conditional models).
    #[arg(long)]
    random_classes: bool,
    /// Classifier-free guidance scale w (1: none).
    #[arg(long, default_value_t = 1.0)]
    guidance: f64,
    /// Start from this x_T (.npy, .npz with array "noise", or .safetensors), shape n x C x H x W.
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Figure {
    /// Predicted x0 at evenly spaced t while sampling (paper Fig. 6).
    Progressive,
    /// Two data images encoded to x_t, interpolated, decoded (paper Fig. 8).
    Interpolate,
    /// Forward and reverse marginals of 2-D data (the swiss roll figure).
    Trajectories,
}

#[derive(Debug, clap::Args)]
struct FigureArgs {
    #[arg(value_enum)]
    figure: Figure,
    #[command(flatten)]
    model: ModelArgs,
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

fn device(s: &str) -> Result<tch::Device> {
    let d = match s {
        "auto" => tch::Device::cuda_if_available(),
        "cpu" => tch::Device::Cpu,
        "cuda" => tch::Device::Cuda(0),
        _ => {
            tch::Device::Cuda(s.strip_prefix("cuda:").and_then(|n| n.parse().ok()).with_context(
                || format!("--device must be auto, cpu, cuda or cuda:N, got {s:?}"),
            )?)
        }
    };
    if d.is_cuda() && !tch::Cuda::is_available() {
        bail!("--device {s}: CUDA is not available to this binary (see `cargo xtask doctor`)");
    }
    Ok(d)
}

fn load(m: &ModelArgs) -> Result<(RunDir, LoadedModel)> {
    let run = RunDir::resolve(&m.checkpoint, &m.runs_dir)?;
    let model = load_model(&run, device(&m.device)?, !m.raw)
        .with_context(|| format!("loading --checkpoint {}", m.checkpoint))?;
    Ok((run, model))
}

fn sample(a: SampleArgs) -> Result<()> {
    let (run, model) = load(&a.model)?;
    let t = model.diffusion.steps;
    let mut opts = SamplerOptions::new(a.sampler, t);
    opts.steps = a.steps.unwrap_or(opts.steps);
    opts.eta = a.eta;
    opts.skip = a.skip;
    opts.time_steps = a.time_steps;
    opts.guidance_scale = a.guidance;
    opts.clip_x0 = a.clip.unwrap_or(matches!(a.sampler, SamplerKind::Ddpm | SamplerKind::Ddim));
    opts.variance = match a.variance.as_deref() {
        None => None,
        Some("fixed_small") => Some(ModelVar::FixedSmall),
        Some("fixed_large") => Some(ModelVar::FixedLarge),
        Some(other) => bail!("--variance must be fixed_small or fixed_large, got {other:?}"),
    };
    if opts.variance.is_some() && a.sampler != SamplerKind::Ddpm {
        bail!("--variance applies to the ddpm sampler only");
    }
    if opts.variance.is_some() && model.diffusion.model_var.is_learned() {
        bail!("--variance: this model learned its variance ({:?})", model.diffusion.model_var);
    }
    opts.validate(t)?;
    if a.num == 0 {
        bail!("-n must be at least 1");
    }
    let labels = match (a.class, a.random_classes, model.net.num_classes()) {
        (None, false, _) => Labels::None,
        (_, _, None) => bail!(
            "--class/--random-classes need a class-conditional model; this one is unconditional"
        ),
        (Some(c), _, Some(k)) if c < 0 || c as usize >= k => {
            bail!("--class must be in 0..{k}, got {c}")
        }
        (Some(c), _, Some(_)) => Labels::Class(c),
        (None, true, Some(_)) => Labels::Random,
    };
    if a.guidance != 1.0 && model.net.num_classes().is_none() {
        bail!(
            "--guidance {} needs a class-conditional model; this one is unconditional",
            a.guidance
        );
    }
    let shape = model.net.sample_shape();
    let noise = a.noise.as_ref().map(|p| job::load_noise(p, a.num, &shape)).transpose()?;
    let dev = model.vs.device();
    let batch = job::auto_batch(a.batch_size, a.num, &model, dev);
    let out = a.out.clone().unwrap_or_else(|| {
        run.root.join("samples").join(format!(
            "{}-{}-seed{}",
            format!("{:?}", a.sampler).to_lowercase(),
            opts.steps,
            a.model.seed
        ))
    });
    let manifest = Manifest {
        checkpoint: model.checkpoint.display().to_string(),
        checkpoint_step: model.step,
        ema: model.ema,
        sampler: opts.clone(),
        seed: a.model.seed,
        start: a.start,
        n: a.num,
        batch_size: batch,
        labels,
        noise_file: a.noise.as_ref().map(|p| p.display().to_string()),
        sample_shape: shape,
    };
    tracing::info!(
        "sampling {} images with {:?} ({} network evaluations each, batch {batch}) from {} (step {}, {}) on {dev:?}",
        a.num,
        a.sampler,
        opts.network_evaluations(),
        model.checkpoint.display(),
        model.step,
        if model.ema { "EMA" } else { "raw" }
    );
    let bar = ProgressBar::new(a.num as u64);
    if std::io::stderr().is_terminal() {
        bar.set_style(
            ProgressStyle::with_template(
                "{elapsed_precise} [{bar:30}] {pos}/{len} images  {per_sec}  ETA {eta}",
            )
            .unwrap()
            .progress_chars("=> "),
        );
    } else {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let started = std::time::Instant::now();
    let job =
        JobOptions { out: out.clone(), pngs: !a.no_png, bf16: a.bf16, cuda_graph: a.cuda_graph };
    let npz = job::run(&model, &manifest, &job, noise.as_ref(), &mut |done| {
        bar.set_position(done as u64)
    })?;
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    tracing::info!(
        "{} images in {secs:.1} s ({:.2} images/s): {}",
        a.num,
        a.num as f64 / secs,
        npz.display()
    );
    println!("{}", out.display());
    Ok(())
}

fn figures_cmd(a: FigureArgs) -> Result<()> {
    let (run, model) = load(&a.model)?;
    let out = a.out.clone().unwrap_or_else(|| run.root.clone());
    std::fs::create_dir_all(&out)?;
    let t = model.diffusion.steps;
    let shape = model.net.sample_shape();
    let data_config = || -> Result<ddpm_data::DataConfig> {
        match &a.data {
            Some(d) => Ok(ddpm_data::config_from_arg(d)),
            None => {
                let text = std::fs::read_to_string(run.config_path())?;
                let table: toml::Table = toml::from_str(&text)?;
                let data =
                    table.get("data").cloned().unwrap_or(toml::Value::Table(Default::default()));
                Ok(data.try_into()?)
            }
        }
    };
    let path = match a.figure {
        Figure::Progressive => {
            if shape.len() != 3 {
                bail!("progressive needs an image model; use `trajectories` for 2-D data");
            }
            let steps = a.steps.unwrap_or(t);
            if steps == 0 || steps > t {
                bail!("--steps must be in 1..=T = {t}, got {steps}");
            }
            figures::progressive(&model, a.model.seed, a.num.unwrap_or(4), steps, a.points, &out)?
        }
        Figure::Interpolate => {
            if shape.len() != 3 {
                bail!("interpolate needs an image model");
            }
            let (data, _) = ddpm_data::load(&data_config()?)?;
            let n = data.len() as u64;
            if a.pair.iter().any(|&i| i >= n) {
                bail!("--pair indices must be below {n} (the data set's size), got {:?}", a.pair);
            }
            if data.sample_shape().iter().map(|&d| d as i64).collect::<Vec<_>>() != shape {
                bail!(
                    "the data's images {:?} do not fit the model's {:?}",
                    data.sample_shape(),
                    shape
                );
            }
            let img = |i: u64| {
                tch::Tensor::from_slice(&data.sample_f32(i as usize)).view(shape.as_slice())
            };
            let step = a.t.unwrap_or(t / 2);
            if step >= t {
                bail!("--t must be below T = {t}, got {step}");
            }
            figures::interpolate(
                &model,
                a.model.seed,
                &img(a.pair[0]),
                &img(a.pair[1]),
                step,
                a.points,
                &out,
            )?
        }
        Figure::Trajectories => {
            if shape.len() != 1 || shape[0] != 2 {
                bail!("trajectories needs a 2-D model (e.g. configs/swissroll.toml)");
            }
            let (data, _) = ddpm_data::load(&data_config()?)?;
            let pts = data.points_xy(usize::MAX);
            figures::trajectories(
                &model,
                a.model.seed,
                &pts,
                a.num.unwrap_or(2000),
                a.points.min(6),
                &out,
            )?
        }
    };
    println!("{}", path.display());
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
        Command::Sample(a) => sample(a),
        Command::Figures(a) => figures_cmd(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
