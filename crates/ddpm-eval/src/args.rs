//! The arguments of `ddpm-eval`'s commands and what each runs: `fid` (a [`FidRequest`] for a
//! checkpoint or for existing samples), `fid-stats` (reference statistics through the one
//! Inception pass) and `nll` (the variational bound of a checkpoint over a data set).

use crate::error::{EvalError, Result};
use crate::fid_request::{CheckpointSampling, FidRequest};
use crate::inception::default_weights_path;
use crate::metrics::{Metrics, Reference, reference_from_images};
use crate::nll::NllResult;
use crate::protocol::{EvalOptions, FidReport, Protocol};
use crate::reference::load_images;
use crate::{FidInception, Samples, images};
use ddpm_data::Dataset;
use ddpm_dist::{Dist, DistEnv, DistOptions};
use ddpm_run::{DEFAULT_RUNS_DIR, LoadedModel, RunDir, open_model};
use ddpm_sample::SamplerArgs;
use std::path::{Path, PathBuf};
use tch::Device;

/// A run's model, an error naming `--checkpoint`.
pub(crate) fn open(
    ckpt: &str,
    runs: &Path,
    device: Device,
    raw: bool,
) -> Result<(RunDir, LoadedModel)> {
    open_model(ckpt, runs, device, raw)
        .map_err(|e| EvalError::Arg(format!("loading --checkpoint {ckpt}: {e}")))
}

/// What every command takes.
#[derive(Debug, clap::Args)]
pub struct Common {
    #[arg(long, default_value = DEFAULT_RUNS_DIR)]
    pub runs_dir: PathBuf,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Converted Inception weights (default: $DDPM_HOME/inception/pt_inception-2015-12-05.safetensors).
    #[arg(long)]
    pub inception: Option<PathBuf>,
    /// Images per Inception/network batch.
    #[arg(long, default_value_t = 50)]
    pub batch_size: usize,
}

impl Common {
    /// The device of a one-process command.
    pub fn device(&self) -> Result<Device> {
        self.check()?;
        ddpm_nets::parse_device(&self.device, "--device").map_err(EvalError::Arg)
    }

    /// Under torchrun: this rank's device (cuda:LOCAL_RANK for CUDA) and its process group;
    /// otherwise the device and a group of one.
    pub fn rank(&self) -> Result<(Device, Dist)> {
        self.check()?;
        let env = DistEnv::from_env()?;
        let device = env.device(&self.device, "--device").map_err(EvalError::Arg)?;
        Ok((device, Dist::init(&env, device, DistOptions::default())?))
    }

    fn check(&self) -> Result<()> {
        match self.batch_size {
            0 => Err(EvalError::Arg("--batch-size must be at least 1".into())),
            _ => Ok(()),
        }
    }

    pub fn inception(&self) -> PathBuf {
        self.inception.clone().unwrap_or_else(default_weights_path)
    }
}

#[derive(Debug, clap::Args)]
pub struct FidArgs {
    #[command(flatten)]
    pub common: Common,
    /// A run (name under --runs-dir, directory, or checkpoint file) to sample from.
    #[arg(long, required_unless_present = "samples", conflicts_with = "samples")]
    pub checkpoint: Option<String>,
    /// Evaluate existing samples: a samples.npz (array "samples" in [-1, 1]) or an image folder.
    #[arg(long)]
    pub samples: Option<PathBuf>,
    /// Reference: a statistics .npz, an image folder, or a data set (default: the run's data).
    #[arg(long = "ref")]
    pub reference: Option<String>,
    /// Inception metrics, comma-separated: fid, is, sfid, pr (precision/recall, k = 3).
    #[arg(long, default_value = "fid,is")]
    pub metrics: String,
    /// The reference's pool3 features (.npz from `fid-stats --features`), for pr with a
    /// statistics .npz as --ref.
    #[arg(long)]
    pub ref_features: Option<PathBuf>,
    /// Number of samples (default: 50,000, the standard protocol; for the digits the size of
    /// the data half the classifier distance compares with; 2,000 points for 2-D data).
    #[arg(short = 'n', long)]
    pub num: Option<usize>,
    #[command(flatten)]
    pub sampler: SamplerArgs,
    /// Images per sampling batch (default: 64 on the CPU, on CUDA the largest that fits). Each
    /// rank of a torchrun job samples whole batches.
    #[arg(long)]
    pub sample_batch_size: Option<usize>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Sample with the raw weights instead of the EMA weights.
    #[arg(long)]
    pub raw: bool,
    /// Where samples and fid.json go (default: <run>/fid/step<step>[-raw]-<sampler>-<steps>[-<sigmas>][-w<w>][-o<digest>]-n<n>-seed<seed>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print the result object as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

impl FidArgs {
    /// Samples the checkpoint (or reads `--samples`) and measures, as one rank of `dist`
    /// (every rank calls it): rank 0 gets the report and the folder `fid.json` goes to.
    pub fn run(
        &self,
        device: Device,
        dist: &Dist,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Option<(FidReport, PathBuf)>> {
        let options = EvalOptions {
            device,
            inception: self.common.inception(),
            reference: self.reference.clone(),
            batch_size: self.common.batch_size,
            metrics: self.metrics.parse()?,
            ref_features: self.ref_features.clone(),
            fashion: Default::default(),
        };
        if let Some(ckpt) = &self.checkpoint {
            let (run, model) = open(ckpt, &self.common.runs_dir, device, self.raw)?;
            let request = FidRequest::for_data(&run.section("data")?, self.num, options)?;
            let sampling = CheckpointSampling {
                sampler: self.sampler.options(&run, &model)?,
                seed: self.seed,
                batch_size: self.sample_batch_size,
                out: self.out.clone(),
            };
            return request.of_checkpoint(&run, &model, &sampling, dist, progress);
        }
        let p = self.samples.as_ref().expect("clap requires --checkpoint or --samples");
        let samples = match p.is_dir() {
            true => Samples::Memory(images::from_folder(p)?),
            false => Samples::from_npz(p)?,
        };
        let request = FidRequest::for_samples(&samples, options)?;
        let protocol = Protocol { samples: p.display().to_string(), ..Protocol::default() };
        let out = self.out.clone().unwrap_or_else(|| match p.is_dir() {
            true => p.clone(),
            false => p.parent().unwrap_or(Path::new(".")).into(),
        });
        Ok(request.measure(&samples, protocol, dist, progress)?.map(|r| (r, out)))
    }
}

#[derive(Debug, clap::Args)]
pub struct StatsArgs {
    #[command(flatten)]
    pub common: Common,
    /// A data set name (digits, ...), a CIFAR-10/MNIST directory, or an image folder.
    #[arg(long)]
    pub data: String,
    /// The statistics file: pytorch-fid's mu and sigma, plus sFID's mu_s and sigma_s.
    #[arg(long)]
    pub out: PathBuf,
    /// Also store the pool3 features (float16, 2048 x 2 bytes per image: 205 MB for 50,000)
    /// that precision/recall need as the reference side.
    #[arg(long)]
    pub features: Option<PathBuf>,
}

impl StatsArgs {
    /// The statistics of `--data`, written to `--out` (and `--features`); returns the image
    /// count.
    pub fn run(&self, progress: &mut dyn FnMut(usize, usize)) -> Result<usize> {
        let net = FidInception::load(&self.common.inception(), self.common.device()?)?;
        let images = load_images(&self.data)?;
        let metrics = Metrics { fid: true, is: false, sfid: true, pr: self.features.is_some() };
        let n = images.size()[0] as usize;
        let r: Reference =
            reference_from_images(&net, &images, self.common.batch_size, metrics, &mut |d| {
                progress(d, n)
            })?;
        r.save(&self.out, self.features.as_deref())?;
        Ok(n)
    }
}

#[derive(Debug, clap::Args)]
pub struct NllArgs {
    #[command(flatten)]
    pub common: Common,
    #[arg(long)]
    pub checkpoint: String,
    /// Data (default: the run's data set).
    #[arg(long)]
    pub data: Option<String>,
    /// The split of the data: train or test (Fashion-MNIST, MNIST, CIFAR-10; default: the
    /// run's, or train for --data). `--split test` measures the run's own data set's test
    /// images, at the run's size.
    #[arg(long)]
    pub split: Option<String>,
    /// Evaluate the first n images (default: all).
    #[arg(short = 'n', long)]
    pub num: Option<usize>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long)]
    pub raw: bool,
    #[arg(long)]
    pub json: bool,
}

/// What `nll` measured, and over what.
#[derive(Debug)]
pub struct NllRun {
    pub result: NllResult,
    pub n: usize,
    /// A note on data that is not 8-bit (the bound assumes 256 levels).
    pub note: Option<String>,
}

impl NllArgs {
    /// The bound in bits/dim over the first `-n` images of `--data` (or the run's data).
    pub fn run(&self, progress: &mut dyn FnMut(usize, usize)) -> Result<NllRun> {
        let dev = self.common.device()?;
        let (run, model) = open(&self.checkpoint, &self.common.runs_dir, dev, self.raw)?;
        let mut cfg = match &self.data {
            Some(d) => ddpm_data::config_from_arg(d),
            None => run.section("data")?,
        };
        if let Some(split) = &self.split {
            cfg.split = split.clone();
        }
        let Dataset::Images(set) = ddpm_data::load(&cfg)?.0 else {
            return Err(EvalError::Arg("NLL in bits/dim needs image data".into()));
        };
        let want: Vec<i64> = model.net.sample_shape();
        let (c, h, w) = (set.channels, set.height, set.width);
        if [c as i64, h as i64, w as i64] != want[..] {
            return Err(EvalError::Arg(format!(
                "--data gives {c}x{h}x{w} images; the model takes {want:?}"
            )));
        }
        if self.num == Some(0) {
            return Err(EvalError::Arg("-n must be at least 1".into()));
        }
        let n = self.num.unwrap_or(set.n).min(set.n);
        let data = images::from_dataset(&set).narrow(0, 0, n as i64) * 2.0 - 1.0;
        tracing::info!("variational bound over {n} images, {} steps each", model.diffusion.steps);
        let batch = self.common.batch_size;
        let result = crate::nll::nll(&model, &data, batch, self.seed, &mut |d| progress(d, n))?;
        let note = (set.max_value != 255).then(|| {
            let levels = set.max_value as u32 + 1;
            format!("note: the bound assumes 8-bit data; {} has {levels} levels", cfg.dataset)
        });
        Ok(NllRun { result, n, note })
    }
}
