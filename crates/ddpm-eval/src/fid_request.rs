//! One FID measurement, the one way `ddpm-eval fid` and training's evaluation choose it: the
//! [`Measure`] (from the run's data, or for existing samples from `--ref`), how many samples
//! (the measure's standard number unless asked), the reference (the run's own data unless
//! given), and what measures them ([`EvalOptions`]). Its inputs are checked when it is built,
//! before any sample is drawn.

use crate::error::{EvalError, Result};
use crate::protocol::{EvalOptions, FidReport, Measure, Protocol, evaluate_sharded};
use crate::samples::Samples;
use ddpm_data::DataConfig;
use ddpm_dist::Dist;
use ddpm_run::{LoadedModel, RunDir};
use ddpm_sample::job::{self, JobOptions, Labels};
use ddpm_sample::{SampleRequest, SamplerOptions};
use std::path::PathBuf;

/// What to measure, how many, against what and with what.
#[derive(Debug, Clone)]
pub struct FidRequest {
    pub measure: Measure,
    /// Samples measured.
    pub n: usize,
    /// Weights, reference (always set), metrics and batch.
    pub options: EvalOptions,
}

/// How a checkpoint's samples for a [`FidRequest`] are drawn.
#[derive(Debug, Clone)]
pub struct CheckpointSampling {
    pub sampler: SamplerOptions,
    pub seed: u64,
    /// Images per sampling batch (default: [`job::sample_checkpoint`]'s choice).
    pub batch_size: Option<usize>,
    /// Where samples and `fid.json` go (default:
    /// `<run>/fid/step<step>[-raw]-<sampler>-<steps>[-<sigmas>][-w<w>][-o<digest>]-n<n>-seed<seed>`).
    pub out: Option<PathBuf>,
}

/// The reference a model trained on `data` is compared with: its data's path, or its name.
pub fn default_reference(data: &DataConfig) -> String {
    match &data.path {
        Some(p) => p.display().to_string(),
        None => data.dataset.clone(),
    }
}

impl FidRequest {
    /// The measurement of samples from a model trained on `data`: `n` samples (`None`: the
    /// measure's standard number, see [`Measure::default_num`]; 0 is refused), against
    /// `options.reference` or else the data itself. The Inception weights and a reference
    /// `.npz` are checked now.
    pub fn for_data(data: &DataConfig, n: Option<usize>, mut options: EvalOptions) -> Result<Self> {
        let measure = Measure::for_data(data);
        let n = match n {
            Some(0) => return Err(EvalError::Arg("-n must be at least 1".into())),
            Some(n) => n,
            None => measure.default_num()?,
        };
        options.reference.get_or_insert_with(|| default_reference(data));
        measure.check_inputs(&options.inception, options.reference.as_deref())?;
        Ok(Self { measure, n, options })
    }

    /// The measurement of existing `samples`, all of them, against `options.reference`.
    pub fn for_samples(samples: &Samples, options: EvalOptions) -> Result<Self> {
        let measure = Measure::for_samples(samples, options.reference.as_deref())?;
        Ok(Self { measure, n: samples.len(), options })
    }

    /// Measures `samples` as one rank of `dist` (every rank calls it; see
    /// [`evaluate_sharded`]): rank 0 gets the report, the other ranks `None`.
    pub fn measure(
        &self,
        samples: &Samples,
        protocol: Protocol,
        dist: &Dist,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Option<FidReport>> {
        evaluate_sharded(samples, &self.measure, &self.options, protocol, dist, progress)
    }

    /// Samples `self.n` images from `model` (of `run`) into a resumable job
    /// ([`job::sample_checkpoint`], shared by the ranks of `dist`), then measures them from
    /// its `samples.npz`, each rank reading only its batches. Rank 0 gets the report and the
    /// job's folder (where `fid.json` belongs), the other ranks `None`.
    pub fn of_checkpoint(
        &self,
        run: &RunDir,
        model: &LoadedModel,
        sampling: &CheckpointSampling,
        dist: &Dist,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Option<(FidReport, PathBuf)>> {
        if sampling.batch_size == Some(0) {
            return Err(EvalError::Arg("--sample-batch-size must be at least 1".into()));
        }
        let labels = if model.net.num_classes().is_some() { Labels::Random } else { Labels::None };
        let req = SampleRequest {
            sampler: sampling.sampler.clone(),
            seed: sampling.seed,
            start: 0,
            n: self.n,
            labels,
            noise_file: None,
            bf16: false,
        };
        let out = sampling
            .out
            .clone()
            .unwrap_or_else(|| run.fid_dir(&req.fid_job_name(model.step, model.ema)));
        if dist.is_main() {
            tracing::info!(
                "sampling {} images with {} ({})",
                self.n,
                req.job_name(model.step, model.ema),
                out.display()
            );
        }
        let job = JobOptions { out: out.clone(), pngs: false, graph: None };
        let (npz, _) =
            job::sample_checkpoint(model, &req, sampling.batch_size, &job, None, dist, progress)?;
        let protocol = Protocol {
            checkpoint: Some(model.checkpoint.display().to_string()),
            checkpoint_step: Some(model.step),
            weights: Some(if model.ema { "ema" } else { "raw" }.into()),
            sampler: Some(req.sampler),
            seed: Some(sampling.seed),
            samples: npz.display().to_string(),
            ..Protocol::default()
        };
        let samples = Samples::from_npz(&npz)?;
        let mut report = self.measure(&samples, protocol, dist, progress)?;
        // Samples asked for classes: how many of them the feature network takes for the class
        // asked for (the guidance paper's trade: this beside the distance, at each w).
        if let (Some(r), Measure::Fashion(dir), Some(k)) =
            (report.as_mut(), &self.measure, model.net.num_classes())
        {
            let indices: Vec<u64> = (0..self.n as u64).collect();
            if let (Some(f), Some(classes)) =
                (r.fashion.as_mut(), req.labels.classes(sampling.seed, &indices, k))
            {
                let reference = self.options.fashion.get(dir.as_deref(), self.options.device)?;
                let batch = self.options.batch_size;
                f.class_accuracy = Some(reference.class_accuracy_of(&samples, &classes, batch)?);
            }
        }
        Ok(report.map(|r| (r, out)))
    }
}
