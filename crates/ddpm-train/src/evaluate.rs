//! Evaluation during training (`train.eval_every`): the run's own metric on the EMA weights,
//! measured as `ddpm-eval fid` measures it ([`ddpm_eval::protocol`]) on samples drawn in
//! memory with the configured sampler — the digits classifier distance for the digits, FD and
//! KID in classifier features for Fashion-MNIST (beside their floor), the sliced Wasserstein
//! distance for 2-D data, FID and IS for image sets (with Inception weights
//! and a reference). Each evaluation becomes lines of `eval.jsonl`.

use crate::config::RunConfig;
use crate::error::{Result, TrainError};
use crate::eval_log::EvalLine;
use ddpm_core::tensor::TensorDiffusion;
use ddpm_dist::Dist;
use ddpm_eval::FidRequest;
use ddpm_eval::inception::default_weights_path;
use ddpm_eval::protocol::{EvalOptions, FidReport, Protocol};
use ddpm_nets::Denoiser;
use ddpm_sample::batch::BatchSampler;
use ddpm_sample::job::Labels;
use ddpm_sample::samplers::SamplerOptions;
use std::time::Instant;

/// Images per Inception batch.
const INCEPTION_BATCH: usize = 50;

/// What an evaluation measures and with which sampler, fixed for the run.
#[derive(Debug, Clone)]
pub struct Evaluator {
    /// The measurement, chosen as `ddpm-eval fid --checkpoint` chooses it for this run.
    pub request: FidRequest,
    pub sampler: SamplerOptions,
    batch: usize,
    seed: u64,
}

impl Evaluator {
    /// The run's evaluator, or None when `train.eval_every` is 0. Everything the metric needs
    /// (Inception weights and a reference for image sets) is checked now, not at the first
    /// evaluation hours later.
    pub fn for_run(config: &RunConfig, device: tch::Device) -> Result<Option<Self>> {
        let t = &config.train;
        if t.eval_every == 0 {
            return Ok(None);
        }
        let inception = t.eval_inception.clone().unwrap_or_else(default_weights_path);
        let options = EvalOptions {
            device,
            inception,
            reference: t.eval_ref.clone(),
            batch_size: INCEPTION_BATCH,
            metrics: ddpm_eval::Metrics::default(),
            ref_features: None,
            fashion: Default::default(),
        };
        let n = (t.eval_samples > 0).then_some(t.eval_samples);
        // The request checks the measure's inputs (the Inception weights, a reference .npz);
        // its error is the user's to read with the key that asked for it.
        let request = FidRequest::for_data(&config.data, n, options).map_err(|e| {
            TrainError::Config(crate::config::ConfigError(format!(
                "train.eval_every: {e}; or set eval_every = 0"
            )))
        })?;
        let mut sampler = SamplerOptions::new(t.eval_sampler, config.diffusion.steps);
        sampler.steps = t.eval_steps;
        Ok(Some(Self {
            request,
            sampler,
            batch: t.eval_batch_size,
            seed: crate::streams::Stream::Eval.seed(config.seed, &[]),
        }))
    }

    /// A short description for log lines.
    pub fn describe(&self) -> String {
        format!(
            "{} samples, {} {} steps",
            self.request.n,
            self.sampler.kind().name(),
            self.sampler.steps
        )
    }

    /// Samples from `net` (the EMA network) and measures them, as one rank of `dist` (every
    /// rank calls it): each rank samples its share of the images (image i's noise and class
    /// depend on (seed, i) alone, so the set is one process's), the shares are gathered, and
    /// the measure runs as `ddpm-eval fid` runs it under torchrun (the Inception work shared
    /// out). So no rank waits in a collective while another samples alone: an evaluation
    /// longer than the group's timeout does not end the job, and no GPU idles. Rank 0 gets one
    /// line per metric, the other ranks none.
    pub fn evaluate(
        &self,
        net: &Denoiser,
        diffusion: &TensorDiffusion,
        step: u64,
        dist: &Dist,
    ) -> Result<Vec<EvalLine>> {
        let started = Instant::now();
        let labels = if net.num_classes().is_some() { Labels::Random } else { Labels::None };
        let mut sampler = BatchSampler::new(
            net,
            diffusion,
            self.sampler.clone(),
            self.seed,
            labels,
            false,
            None,
        )?;
        let n = self.request.n;
        let range = dist.shard(n);
        let mine = sampler.sample_range(range.clone(), self.batch, &mut |_| {})?;
        // Images are measured in [0, 1], as pytorch-fid takes them; points as they are. Each
        // rank keeps its own share: the Inception pass reads each rank's own batches.
        let local = if mine.dim() == 4 { (mine + 1.0) / 2.0 } else { mine };
        let samples = ddpm_eval::Samples::Shard { local, range, n };
        let report = self.request.measure(&samples, Protocol::default(), dist, &mut |_, _| {})?;
        // Rank 0 computed the distances alone (seconds); the others wait here, not in the
        // next training step's collectives.
        dist.barrier()?;
        let seconds = started.elapsed().as_secs_f64();
        Ok(report.map(|r| self.lines(&r, step, seconds)).unwrap_or_default())
    }

    fn lines(&self, r: &FidReport, step: u64, seconds: f64) -> Vec<EvalLine> {
        r.headlines()
            .into_iter()
            .map(|h| EvalLine {
                baseline: h.floor,
                higher_is_better: h.higher_is_better,
                samples: Some(self.request.n),
                sampler: Some(self.sampler.kind().name().to_string()),
                sampler_steps: Some(self.sampler.steps),
                seconds: Some(seconds),
                ..EvalLine::new(step, h.metric, h.value)
            })
            .collect()
    }
}
