//! `ddpm-eval`: FID/IS (and the digits classifier distance, and 2-D distances) of a checkpoint
//! or of existing samples; reference statistics of data sets; NLL in bits/dim.
//!
//! `cargo xtask fid --checkpoint run1`, `cargo xtask fid-stats --data DIR --out ref.npz`,
//! `cargo xtask nll --checkpoint run1 --data DIR`.

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use ddpm_data::{DataConfig, Dataset};
use ddpm_eval::digits_classifier::DigitsClassifier;
use ddpm_eval::features::inception_features;
use ddpm_eval::inception::default_weights_path;
use ddpm_eval::inception_score::inception_score;
use ddpm_eval::{FidInception, Stats, distance2d, frechet_distance, images, sha256_file};
use ddpm_nets::run::{LoadedModel, RunDir, load_model};
use ddpm_sample::job::{self, JobOptions, Labels, Manifest};
use ddpm_sample::{SamplerKind, SamplerOptions, Skip, TimeSteps};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tch::{Device, Tensor};

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
    #[arg(long, default_value = "runs")]
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
    /// Number of samples (default: 50,000, the standard protocol; for the digits the size of
    /// the data half the classifier distance compares with; 2,000 points for 2-D data).
    #[arg(short = 'n', long)]
    num: Option<usize>,
    #[arg(long, value_enum, default_value = "ddpm")]
    sampler: SamplerKind,
    #[arg(long)]
    steps: Option<usize>,
    #[arg(long, default_value_t = 0.0)]
    eta: f64,
    #[arg(long, value_enum, default_value = "uniform")]
    skip: Skip,
    #[arg(long, value_enum, default_value = "log-snr")]
    time_steps: TimeSteps,
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
    #[arg(long)]
    out: PathBuf,
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

fn device(s: &str) -> Result<Device> {
    let d =
        match s {
            "auto" => Device::cuda_if_available(),
            "cpu" => Device::Cpu,
            "cuda" => Device::Cuda(0),
            _ => Device::Cuda(s.strip_prefix("cuda:").and_then(|n| n.parse().ok()).with_context(
                || format!("--device must be auto, cpu, cuda or cuda:N, got {s:?}"),
            )?),
        };
    if d.is_cuda() && !tch::Cuda::is_available() {
        bail!("--device {s}: CUDA is not available to this binary (see `cargo xtask doctor`)");
    }
    Ok(d)
}

fn bar(len: usize, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len as u64);
    if std::io::stderr().is_terminal() {
        pb.set_style(
            ProgressStyle::with_template(&format!(
                "{{elapsed_precise}} [{{bar:30}}] {{pos}}/{{len}} {what}  {{per_sec}}  ETA {{eta}}"
            ))
            .unwrap()
            .progress_chars("=> "),
        );
    } else {
        pb.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    pb
}

/// The run's `[data]` table.
fn run_data(run: &RunDir) -> Result<DataConfig> {
    let text = std::fs::read_to_string(run.config_path())?;
    let table: toml::Table = toml::from_str(&text)?;
    Ok(table.get("data").cloned().unwrap_or(toml::Value::Table(Default::default())).try_into()?)
}

fn inception_path(c: &Common) -> PathBuf {
    c.inception.clone().unwrap_or_else(default_weights_path)
}

/// Inception statistics of a data set or folder, cached under $DDPM_HOME/fid-stats by a hash of
/// what they were computed from and of the weights.
fn reference_stats(
    spec: &str,
    net: &FidInception,
    weights_sha: &str,
    batch: usize,
) -> Result<(Stats, String, Option<String>)> {
    let path = Path::new(spec);
    if path.extension().is_some_and(|e| e == "npz") {
        let stats = Stats::load(path)?;
        if stats.dim() != 2048 {
            bail!(
                "--ref {spec}: statistics of {} features; FID uses the 2048-d pool features",
                stats.dim()
            );
        }
        return Ok((stats, spec.to_string(), Some(sha256_file(path)?)));
    }
    let key_src = format!(
        "{spec}|{}|{weights_sha}",
        std::fs::canonicalize(path).map(|p| p.display().to_string()).unwrap_or_default()
    );
    let key: String = {
        use sha2::Digest;
        sha2::Sha256::digest(key_src.as_bytes())
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    let cache = ddpm_data::digits::ddpm_home()
        .unwrap_or_else(|| ".ddpm".into())
        .join("fid-stats")
        .join(format!("{key}.npz"));
    if cache.exists() {
        let sha = sha256_file(&cache)?;
        return Ok((
            Stats::load(&cache)?,
            format!("{spec} (cached {})", cache.display()),
            Some(sha),
        ));
    }
    let imgs = load_images(spec)?;
    tracing::info!("reference statistics of {spec}: {} images through Inception", imgs.size()[0]);
    let pb = bar(imgs.size()[0] as usize, "images");
    let f = inception_features(net, &imgs, batch, &mut |d| pb.set_position(d as u64));
    pb.finish_and_clear();
    let stats = Stats::from_features(&f.pool3)?;
    stats.save(&cache)?;
    Ok((stats, format!("{spec} (cached {})", cache.display()), Some(sha256_file(&cache)?)))
}

/// Images in [0, 1] from an npz, a folder, or a data set.
fn load_images(spec: &str) -> Result<Tensor> {
    let p = Path::new(spec);
    if p.extension().is_some_and(|e| e == "npz" || e == "npy") {
        return Ok(images::from_npz(p)?);
    }
    let cfg = ddpm_data::config_from_arg(spec);
    if cfg.dataset == "folder" {
        return Ok(images::from_folder(p)?);
    }
    match ddpm_data::load(&cfg)?.0 {
        Dataset::Images(set) => Ok(images::from_dataset(&set)),
        Dataset::Points(_) => bail!("{spec} holds 2-D points, not images"),
    }
}

/// The default sample count for a model whose samples have `shape`.
fn default_num(shape: &[i64]) -> Result<usize> {
    Ok(match shape {
        // The digits' classifier distance compares with one half of the data.
        [1, 8, 8] => ddpm_data::load(&DataConfig::default())?.0.len() / 2,
        [2] => 2000,
        _ => 50_000,
    })
}

fn fid(a: FidArgs) -> Result<()> {
    let dev = device(&a.common.device)?;
    let mut protocol = json!({});
    // 1. The samples, in [0, 1] (images) or raw (points).
    let (samples, run, out_dir, model_data): (Tensor, Option<RunDir>, PathBuf, Option<DataConfig>) =
        match (&a.checkpoint, &a.samples) {
            (Some(ckpt), _) => {
                let run = RunDir::resolve(ckpt, &a.common.runs_dir)?;
                let model: LoadedModel = load_model(&run, dev, !a.raw)
                    .with_context(|| format!("loading --checkpoint {ckpt}"))?;
                let mut opts = SamplerOptions::new(a.sampler, model.diffusion.steps);
                opts.steps = a.steps.unwrap_or(opts.steps);
                opts.eta = a.eta;
                opts.skip = a.skip;
                opts.time_steps = a.time_steps;
                opts.clip_x0 = matches!(a.sampler, SamplerKind::Ddpm | SamplerKind::Ddim);
                opts.validate(model.diffusion.steps)?;
                let shape = model.net.sample_shape();
                let num = match a.num {
                    Some(0) => bail!("-n must be at least 1"),
                    Some(n) => n,
                    None => default_num(&shape)?,
                };
                let out = a.out.clone().unwrap_or_else(|| {
                    run.root.join("fid").join(format!(
                        "{}-{}-n{}-seed{}",
                        format!("{:?}", a.sampler).to_lowercase(),
                        opts.steps,
                        num,
                        a.seed
                    ))
                });
                let manifest = Manifest {
                    checkpoint: model.checkpoint.display().to_string(),
                    checkpoint_step: model.step,
                    ema: model.ema,
                    sampler: opts.clone(),
                    seed: a.seed,
                    start: 0,
                    n: num,
                    batch_size: job::auto_batch(None, num, &model, dev),
                    labels: if model.net.num_classes().is_some() {
                        Labels::Random
                    } else {
                        Labels::None
                    },
                    noise_file: None,
                    sample_shape: shape.clone(),
                };
                tracing::info!(
                    "sampling {} images with {:?}, {} steps ({})",
                    num,
                    a.sampler,
                    opts.steps,
                    out.display()
                );
                let pb = bar(num, "images");
                let npz = job::run(
                    &model,
                    &manifest,
                    &JobOptions { out: out.clone(), pngs: false, bf16: false, cuda_graph: false },
                    None,
                    &mut |d| pb.set_position(d as u64),
                )?;
                pb.finish_and_clear();
                protocol = json!({
                    "checkpoint": model.checkpoint.display().to_string(), "checkpoint_step": model.step,
                    "weights": if model.ema { "ema" } else { "raw" }, "sampler": opts, "seed": a.seed, "n": num,
                    "samples": npz.display().to_string(),
                });
                let (shape_v, values) = ddpm_sample::npy::read_array(&npz, "samples")?;
                let dims: Vec<i64> = shape_v.iter().map(|&d| d as i64).collect();
                let raw = Tensor::from_slice(&values).view(dims.as_slice());
                let data = run_data(&run).ok();
                let samples = if shape.len() == 3 { (raw + 1.0) / 2.0 } else { raw };
                (samples, Some(run), out, data)
            }
            (None, Some(p)) => {
                let s = if p.is_dir() { images::from_folder(p)? } else { images::from_npz(p)? };
                protocol = json!({ "samples": p.display().to_string(), "n": s.size()[0] });
                let out = a.out.clone().unwrap_or_else(|| {
                    if p.is_dir() {
                        p.clone()
                    } else {
                        p.parent().unwrap_or(Path::new(".")).to_path_buf()
                    }
                });
                (s, None, out, None)
            }
            (None, None) => unreachable!("clap requires one"),
        };
    let n = samples.size()[0];
    let mut result = json!({ "protocol": protocol });

    // 2-D points: sliced Wasserstein against the data, with a data-vs-data baseline.
    if samples.dim() == 2 {
        let cfg = match (&a.reference, &model_data) {
            (Some(r), _) => ddpm_data::config_from_arg(r),
            (None, Some(d)) => d.clone(),
            (None, None) => bail!("--ref: name the 2-D data set to compare with"),
        };
        let data = ddpm_data::load(&DataConfig {
            num_points: 2 * n as usize,
            seed: 12345,
            ..cfg.clone()
        })?
        .0
        .points_xy(usize::MAX);
        let pts: Vec<[f32; 2]> = Vec::<f32>::try_from(samples.flatten(0, -1))
            .unwrap()
            .chunks(2)
            .map(|c| [c[0], c[1]])
            .collect();
        let half = data.len() / 2;
        let sw = distance2d::sliced_wasserstein(&pts, &data[..half], 200, 0);
        let base = distance2d::sliced_wasserstein(&data[half..], &data[..half], 200, 0);
        result["sliced_wasserstein"] = json!(sw);
        result["sliced_wasserstein_data_vs_data"] = json!(base);
        result["protocol"]["ref"] = json!(cfg.dataset);
        println!("sliced W2 to the data: {sw:.4} (two independent data draws: {base:.4})");
        return finish(&a, &out_dir, result);
    }

    // Digits: the classifier Frechet distance, with a data-vs-data baseline.
    let is_digits_shape = samples.size()[1..] == [1, 8, 8];
    if is_digits_shape {
        let Dataset::Images(digits) = ddpm_data::load(&DataConfig::default())?.0 else {
            unreachable!()
        };
        let clf = DigitsClassifier::trained(&digits, dev)?;
        let _g = tch::no_grad_guard();
        let data_feats = clf.features(&images::from_dataset(&digits)).to_device(Device::Cpu);
        // A seeded random split: the file is grouped by writer, so its halves differ in style.
        let mut order: Vec<i64> = (0..data_feats.size()[0]).collect();
        ddpm_core::rng::SplitMix64::new(17).shuffle(&mut order);
        let data_feats = data_feats.index_select(0, &Tensor::from_slice(&order));
        let sample_feats = clf.features(&samples).to_device(Device::Cpu);
        // Like with like: FD is biased upwards at small n, so the samples and the baseline (one
        // half of the data) are both compared with the other half, at the same size.
        let half = data_feats.size()[0] / 2;
        let m = half.min(sample_feats.size()[0]);
        let ref_half =
            Stats::from_features(&data_feats.narrow(0, half, data_feats.size()[0] - half))?;
        let fd =
            frechet_distance(&Stats::from_features(&sample_feats.narrow(0, 0, m))?, &ref_half)?;
        let base =
            frechet_distance(&Stats::from_features(&data_feats.narrow(0, 0, m))?, &ref_half)?;
        result["digits_fd_images"] = json!(m);
        result["digits_fd"] = json!(fd);
        result["digits_fd_data_halves"] = json!(base);
        result["digits_classifier_accuracy"] = json!(clf.held_out_accuracy);
        println!(
            "digits FD (classifier features), {m} samples vs half the data: {fd:.3} (the other half of the data: {base:.3}; classifier held-out accuracy {:.1} %)",
            100.0 * clf.held_out_accuracy
        );
    }

    // FID and IS through Inception.
    let weights = inception_path(&a.common);
    let net = match FidInception::load(&weights, dev) {
        Ok(n) => n,
        Err(ddpm_eval::EvalError::MissingWeights(p)) if is_digits_shape => {
            println!("FID/IS skipped: {}", ddpm_eval::EvalError::MissingWeights(p));
            return finish(&a, &out_dir, result);
        }
        Err(e) => return Err(e.into()),
    };
    let weights_sha = sha256_file(&weights)?;
    let reference = match (&a.reference, &run) {
        (Some(r), _) => r.clone(),
        (None, Some(run)) => {
            let d = run_data(run)?;
            d.path.as_ref().map(|p| p.display().to_string()).unwrap_or(d.dataset)
        }
        (None, None) => {
            bail!("--ref: give reference statistics (.npz), an image folder or a data set")
        }
    };
    let (ref_stats, ref_desc, ref_sha) =
        reference_stats(&reference, &net, &weights_sha, a.common.batch_size)?;
    tracing::info!("Inception features of {n} samples");
    let pb = bar(n as usize, "images");
    let started = std::time::Instant::now();
    let f =
        inception_features(&net, &samples, a.common.batch_size, &mut |d| pb.set_position(d as u64));
    pb.finish_and_clear();
    let rate = n as f64 / started.elapsed().as_secs_f64();
    let fid = frechet_distance(&Stats::from_features(&f.pool3)?, &ref_stats)?;
    let (is_mean, is_std) = inception_score(&f.logits, 10);
    result["fid"] = json!(fid);
    result["is_mean"] = json!(is_mean);
    result["is_std"] = json!(is_std);
    let p = &mut result["protocol"];
    p["ref"] = json!(ref_desc);
    p["ref_sha256"] = json!(ref_sha);
    p["inception"] = json!(weights.display().to_string());
    p["inception_sha256"] = json!(weights_sha);
    p["features"] = json!(
        "pool3, 2048-d; bilinear resize to 299 (align_corners=false); float samples, not re-quantised"
    );
    p["is_splits"] = json!(10);
    p["inception_images_per_s"] = json!(rate);
    println!("FID {fid:.4}  IS {is_mean:.3} +- {is_std:.3}  ({n} samples vs {ref_desc})");
    if n < 50_000 {
        println!(
            "note: {n} samples; published FIDs use 50,000 (FID is biased upwards at smaller n)"
        );
    }
    finish(&a, &out_dir, result)
}

fn finish(a: &FidArgs, out_dir: &Path, result: Value) -> Result<()> {
    std::fs::create_dir_all(out_dir)?;
    let path = out_dir.join("fid.json");
    let tmp = out_dir.join("fid.json.tmp");
    std::fs::write(&tmp, serde_json::to_string_pretty(&result)?)?;
    std::fs::rename(&tmp, &path)?;
    if a.json {
        println!("{}", serde_json::to_string(&result)?);
    } else {
        println!("{}", path.display());
    }
    Ok(())
}

fn fid_stats(a: StatsArgs) -> Result<()> {
    let dev = device(&a.common.device)?;
    let weights = inception_path(&a.common);
    let net = FidInception::load(&weights, dev)?;
    let sha = sha256_file(&weights)?;
    let (stats, desc, _) = reference_stats(&a.data, &net, &sha, a.common.batch_size)?;
    stats.save(&a.out)?;
    println!("{} ({desc})", a.out.display());
    Ok(())
}

fn nll(a: NllArgs) -> Result<()> {
    let dev = device(&a.common.device)?;
    let run = RunDir::resolve(&a.checkpoint, &a.common.runs_dir)?;
    let model = load_model(&run, dev, !a.raw)
        .with_context(|| format!("loading --checkpoint {}", a.checkpoint))?;
    let cfg = match &a.data {
        Some(d) => ddpm_data::config_from_arg(d),
        None => run_data(&run)?,
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
    let n = a.num.unwrap_or(set.n).min(set.n);
    let data = images::from_dataset(&set).narrow(0, 0, n as i64) * 2.0 - 1.0;
    tracing::info!("variational bound over {n} images, {} steps each", model.diffusion.steps);
    let pb = bar(n, "images");
    let r = ddpm_eval::nll::nll(&model, &data, a.common.batch_size, a.seed, &mut |d| {
        pb.set_position(d as u64)
    })?;
    pb.finish_and_clear();
    if a.json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        let t = r.terms_bpd.len();
        println!(
            "NLL <= {:.4} bits/dim over {n} images (prior L_T {:.2e}, decoder L_0 {:.4}, L_1..L_{} sum {:.4})",
            r.bpd,
            r.prior_bpd,
            r.terms_bpd[0],
            t - 1,
            r.terms_bpd[1..].iter().sum::<f64>()
        );
        if set.max_value != 255 {
            println!(
                "note: the bound assumes 8-bit data; {} has {} levels",
                cfg.dataset,
                set.max_value as u32 + 1
            );
        }
    }
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
    let r = match cli.command {
        Command::Fid(a) => fid(a),
        Command::FidStats(a) => fid_stats(a),
        Command::Nll(a) => nll(a),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
