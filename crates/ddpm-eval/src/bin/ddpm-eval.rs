//! `ddpm-eval`: FID/IS (and the digits classifier distance, and 2-D distances) of a checkpoint
//! or of existing samples; reference statistics of data sets; NLL in bits/dim.
//!
//! `cargo xtask fid --checkpoint run1`, `cargo xtask fid-stats --data DIR --out ref.npz`,
//! `cargo xtask nll --checkpoint run1 --data DIR`.

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use ddpm_data::{DataConfig, Dataset};
use ddpm_dist::{Dist, DistEnv, DistOptions};
use ddpm_eval::inception::default_weights_path;
use ddpm_eval::metrics::{Metrics, reference_from_images};
use ddpm_eval::protocol::{self, EvalOptions, Measure, Protocol};
use ddpm_eval::{FidInception, Samples, images};
use ddpm_run::{DEFAULT_RUNS_DIR, open_model};
use ddpm_sample::job::{self, JobOptions, Labels};
use ddpm_sample::{SampleRequest, SamplerArgs};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tch::Device;

#[derive(Debug, Parser)]
#[command(name = "ddpm-eval", version, about = "Evaluate diffusion models: FID, IS, NLL")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// FID and IS of a checkpoint's samples (sampled now) or of existing samples.
    Fid(FidArgs),
    /// Inception statistics (pytorch-fid .npz: mu, sigma) of a data set or an image folder.
    FidStats(StatsArgs),
    /// The variational bound in bits/dim over a data set.
    Nll(NllArgs),
}

#[derive(Debug, clap::Args)]
struct Common {
    #[arg(long, default_value = DEFAULT_RUNS_DIR)]
    runs_dir: PathBuf,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    device: String,
    /// Converted Inception weights (default: $DDPM_HOME/inception/pt_inception-2015-12-05.safetensors).
    #[arg(long)]
    inception: Option<PathBuf>,
    /// Images per Inception/network batch.
    #[arg(long, default_value_t = 50)]
    batch_size: usize,
}

impl Common {
    fn device(&self) -> Result<Device> {
        if self.batch_size == 0 {
            bail!("--batch-size must be at least 1");
        }
        ddpm_nets::parse_device(&self.device, "--device").map_err(anyhow::Error::msg)
    }

    /// Under torchrun: this rank's device (cuda:LOCAL_RANK for CUDA) and its process group;
    /// otherwise the device and a group of one.
    fn rank(&self) -> Result<(Device, Dist)> {
        if self.batch_size == 0 {
            bail!("--batch-size must be at least 1");
        }
        let env = DistEnv::from_env()?;
        let device = env.device(&self.device, "--device").map_err(anyhow::Error::msg)?;
        Ok((device, Dist::init(&env, device, DistOptions::default())?))
    }

    fn inception(&self) -> PathBuf {
        self.inception.clone().unwrap_or_else(default_weights_path)
    }
}

#[derive(Debug, clap::Args)]
struct FidArgs {
    #[command(flatten)]
    common: Common,
    /// A run (name under --runs-dir, directory, or checkpoint file) to sample from.
    #[arg(long, required_unless_present = "samples", conflicts_with = "samples")]
    checkpoint: Option<String>,
    /// Evaluate existing samples: a samples.npz (array "samples" in [-1, 1]) or an image folder.
    #[arg(long)]
    samples: Option<PathBuf>,
    /// Reference: a statistics .npz, an image folder, or a data set (default: the run's data).
    #[arg(long = "ref")]
    reference: Option<String>,
    /// Inception metrics, comma-separated: fid, is, sfid, pr (precision/recall, k = 3).
    #[arg(long, default_value = "fid,is")]
    metrics: String,
    /// The reference's pool3 features (.npz from `fid-stats --features`), for pr with a
    /// statistics .npz as --ref.
    #[arg(long)]
    ref_features: Option<PathBuf>,
    /// Number of samples (default: 50,000, the standard protocol; for the digits the size of
    /// the data half the classifier distance compares with; 2,000 points for 2-D data).
    #[arg(short = 'n', long)]
    num: Option<usize>,
    #[command(flatten)]
    sampler: SamplerArgs,
    /// Images per sampling batch (default: 64 on the CPU, on CUDA the largest that fits). Each
    /// rank of a torchrun job samples whole batches.
    #[arg(long)]
    sample_batch_size: Option<usize>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Sample with the raw weights instead of the EMA weights.
    #[arg(long)]
    raw: bool,
    /// Where samples and fid.json go (default: <run>/fid/<sampler>-<steps>-n<n>-seed<seed>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print the result object as JSON on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
struct StatsArgs {
    #[command(flatten)]
    common: Common,
    /// A data set name (digits, ...), a CIFAR-10/MNIST directory, or an image folder.
    #[arg(long)]
    data: String,
    /// The statistics file: pytorch-fid's mu and sigma, plus sFID's mu_s and sigma_s.
    #[arg(long)]
    out: PathBuf,
    /// Also store the pool3 features (float16, 2048 x 2 bytes per image: 205 MB for 50,000)
    /// that precision/recall need as the reference side.
    #[arg(long)]
    features: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct NllArgs {
    #[command(flatten)]
    common: Common,
    #[arg(long)]
    checkpoint: String,
    /// Data (default: the run's data set).
    #[arg(long)]
    data: Option<String>,
    /// Evaluate the first n images (default: all).
    #[arg(short = 'n', long)]
    num: Option<usize>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long)]
    raw: bool,
    #[arg(long)]
    json: bool,
}

/// A progress callback over (done, of) images drawing one bar (hidden on ranks other than 0).
fn bar_progress(
    what: &'static str,
    shown: bool,
) -> (ddpm_cli::ProgressBar, impl FnMut(usize, usize)) {
    let pb = if shown { ddpm_cli::progress_bar(0, what) } else { ddpm_cli::ProgressBar::hidden() };
    let handle = pb.clone();
    (pb, move |done: usize, of: usize| {
        handle.set_length(of as u64);
        handle.set_position(done as u64);
    })
}

fn fid(a: FidArgs) -> Result<()> {
    // Under torchrun the ranks share the sampling and the Inception work; rank 0 reports.
    let (dev, dist) = a.common.rank()?;
    let main = dist.is_main();
    let (pb, mut progress) = bar_progress("images", main);
    let (samples, measure, protocol, out_dir, reference) = match (&a.checkpoint, &a.samples) {
        (Some(ckpt), _) => {
            let (run, model) = open_model(ckpt, &a.common.runs_dir, dev, a.raw)
                .with_context(|| format!("loading --checkpoint {ckpt}"))?;
            let sampler = a.sampler.options(&run, &model)?;
            let data: DataConfig = run.section("data")?;
            let measure = Measure::for_data(&data);
            let n = match a.num {
                Some(0) => bail!("-n must be at least 1"),
                Some(n) => n,
                None => measure.default_num()?,
            };
            let labels =
                if model.net.num_classes().is_some() { Labels::Random } else { Labels::None };
            let req = SampleRequest {
                sampler,
                seed: a.seed,
                start: 0,
                n,
                labels,
                noise_file: None,
                bf16: false,
            };
            let reference = a.reference.clone().or_else(|| {
                Some(
                    data.path
                        .as_ref()
                        .map(|p| p.display().to_string())
                        .unwrap_or(data.dataset.clone()),
                )
            });
            measure.check_inputs(&a.common.inception(), reference.as_deref())?;
            let out = a.out.clone().unwrap_or_else(|| run.fid_dir(&req.fid_job_name()));
            if a.sample_batch_size == Some(0) {
                bail!("--sample-batch-size must be at least 1");
            }
            if main {
                tracing::info!("sampling {n} images with {} ({})", req.job_name(), out.display());
            }
            let job = JobOptions { out: out.clone(), pngs: false, graph: None };
            let (npz, _) = job::sample_checkpoint(
                &model,
                &req,
                a.sample_batch_size,
                &job,
                None,
                &dist,
                &mut progress,
            )?;
            let protocol = Protocol {
                checkpoint: Some(model.checkpoint.display().to_string()),
                checkpoint_step: Some(model.step),
                weights: Some(if model.ema { "ema" } else { "raw" }.into()),
                sampler: Some(req.sampler.clone()),
                seed: Some(a.seed),
                samples: npz.display().to_string(),
                ..Protocol::default()
            };
            (Samples::from_npz(&npz)?, measure, protocol, out, reference)
        }
        (None, Some(p)) => {
            let s = if p.is_dir() {
                Samples::Memory(images::from_folder(p)?)
            } else {
                Samples::from_npz(p)?
            };
            let measure = Measure::for_samples(&s, a.reference.as_deref())?;
            let protocol = Protocol { samples: p.display().to_string(), ..Protocol::default() };
            let out = a.out.clone().unwrap_or_else(|| {
                if p.is_dir() { p.clone() } else { p.parent().unwrap_or(Path::new(".")).into() }
            });
            (s, measure, protocol, out, a.reference.clone())
        }
        (None, None) => unreachable!("clap requires one"),
    };
    let opts = EvalOptions {
        device: dev,
        inception: a.common.inception(),
        reference,
        batch_size: a.common.batch_size,
        metrics: a.metrics.parse()?,
        ref_features: a.ref_features.clone(),
    };
    let report =
        protocol::evaluate_sharded(&samples, &measure, &opts, protocol, &dist, &mut progress)?;
    pb.finish_and_clear();
    let Some(report) = report else { return Ok(()) };
    for line in report.summary() {
        println!("{line}");
    }
    let path = report.write(&out_dir)?;
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!("{}", path.display());
    }
    Ok(())
}

fn fid_stats(a: StatsArgs) -> Result<()> {
    let dev = a.common.device()?;
    let weights = a.common.inception();
    let net = FidInception::load(&weights, dev)?;
    let images = protocol::load_images(&a.data)?;
    let metrics = Metrics { fid: true, is: false, sfid: true, pr: a.features.is_some() };
    let (pb, mut progress) = bar_progress("images", true);
    let n = images.size()[0] as usize;
    let r = reference_from_images(&net, &images, a.common.batch_size, metrics, &mut |d| {
        progress(d, n)
    })?;
    pb.finish_and_clear();
    r.save(&a.out, a.features.as_deref())?;
    println!("{} ({n} images of {})", a.out.display(), a.data);
    if let Some(f) = &a.features {
        println!("{}", f.display());
    }
    Ok(())
}

fn nll(a: NllArgs) -> Result<()> {
    let dev = a.common.device()?;
    let (run, model) = open_model(&a.checkpoint, &a.common.runs_dir, dev, a.raw)
        .with_context(|| format!("loading --checkpoint {}", a.checkpoint))?;
    let cfg = match &a.data {
        Some(d) => ddpm_data::config_from_arg(d),
        None => run.section("data")?,
    };
    let Dataset::Images(set) = ddpm_data::load(&cfg)?.0 else {
        bail!("NLL in bits/dim needs image data")
    };
    let want: Vec<i64> = model.net.sample_shape();
    if [set.channels as i64, set.height as i64, set.width as i64] != want[..] {
        bail!(
            "--data gives {}x{}x{} images; the model takes {want:?}",
            set.channels,
            set.height,
            set.width
        );
    }
    if a.num == Some(0) {
        bail!("-n must be at least 1");
    }
    let n = a.num.unwrap_or(set.n).min(set.n);
    let data = images::from_dataset(&set).narrow(0, 0, n as i64) * 2.0 - 1.0;
    tracing::info!("variational bound over {n} images, {} steps each", model.diffusion.steps);
    let (pb, mut progress) = bar_progress("images", true);
    let r =
        ddpm_eval::nll::nll(&model, &data, a.common.batch_size, a.seed, &mut |d| progress(d, n))?;
    pb.finish_and_clear();
    if a.json {
        println!("{}", serde_json::to_string(&r)?);
        return Ok(());
    }
    println!("{}", r.summary(n));
    if set.max_value != 255 {
        println!(
            "note: the bound assumes 8-bit data; {} has {} levels",
            cfg.dataset,
            set.max_value as u32 + 1
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    ddpm_cli::main(|cli: Cli| match cli.command {
        Command::Fid(a) => fid(a),
        Command::FidStats(a) => fid_stats(a),
        Command::Nll(a) => nll(a),
    })
}
