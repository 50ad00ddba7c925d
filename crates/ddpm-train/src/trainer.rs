//! Algorithm 1 of Ho et al. 2020 (arXiv:2006.11239) as a run: set-up, resume, the loop of
//! [`TrainStep`]s with metrics, checkpoints and previews at their intervals, and signals.
//!
//! Reproducibility: every random draw of step s on rank r comes from streams seeded by
//! (seed, r, s) — the timesteps and label dropout from a [`SplitMix64`], the noise eps and
//! dropout masks from libtorch's generator re-seeded per step — and the data order from the
//! loader's (seed, epoch) permutation. So resuming from a checkpoint at step s continues
//! exactly as an uninterrupted run would, bit for bit on the CPU.
//!
//! A failed start leaves nothing behind: the run directory and its `config.toml` are written
//! only once the config, the data and the network have all been checked.
//!
//! Scale-out readiness: data is sharded by rank, only rank 0 writes checkpoints and logs, and
//! seeds derive from the rank. Gradient all-reduce (c10d) is not wired yet, so more than one
//! process is refused rather than silently training unsynchronised replicas.

use crate::config::RunConfig;
use crate::error::{Result, TrainError, io};
use crate::eval_log::{EvalLine, EvalLog};
use crate::evaluate::Evaluator;
use crate::metrics::{Accumulator, MetricsLog};
use crate::optim::learning_rate;
use crate::progress::Progress;
use crate::step::{StepInput, StepOutput, TrainStep};
use crate::tensorboard::TbWriter;
use ddpm_core::rng::{SplitMix64, derive_seed};
use ddpm_core::{TimestepSampler, TimestepSamplerKind};
use ddpm_data::{Dataset, Loader, LoaderOptions, LoaderState};
use ddpm_nets::ModelConfig;
use ddpm_run::{Checkpoint, CheckpointMeta, RunDir};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

const STREAM_TIMESTEPS: u64 = 1;
const STREAM_TORCH: u64 = 2;
const STREAM_DATA: u64 = 4;

/// How a call to [`Trainer::train`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Reached the configured total; a checkpoint at that step exists.
    Finished { step: u64 },
    /// Stopped by a signal (or the caller's flag) after writing a checkpoint.
    Interrupted { step: u64 },
}

pub struct Trainer {
    pub config: RunConfig,
    pub run: RunDir,
    pub device: Device,
    pub rank: usize,
    pub world_size: usize,
    /// Updates taken so far.
    pub step: u64,
    /// The network, EMA, optimiser and diffusion.
    pub model: TrainStep,
    timestep_sampler: TimestepSampler,
    dataset: Arc<Dataset>,
    loader: Loader,
    loader_state: LoaderState,
    last_good_checkpoint: Option<u64>,
    /// The run's metric during training (`train.eval_every`).
    evaluator: Option<Evaluator>,
    /// Rank 0's logs beside metrics.jsonl: TensorBoard and eval.jsonl.
    tb: Option<TbWriter>,
    evals: Option<EvalLog>,
}

impl std::fmt::Debug for Trainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trainer").field("run", &self.run.root).field("step", &self.step).finish()
    }
}

/// The data set's sample shape must be the network's input shape.
fn check_fit(data: &Dataset, model: &ModelConfig, data_name: &str) -> Result<()> {
    let shape = data.sample_shape();
    let want: Vec<usize> = match model {
        ModelConfig::Unet(c) => vec![c.in_channels, c.image_size, c.image_size],
        ModelConfig::Mlp(c) => vec![c.dim],
    };
    if shape != want {
        return Err(TrainError::Mismatch(format!(
            "data {data_name:?} gives samples of shape {shape:?} but the model takes {want:?} \
             (set model.in_channels / model.image_size, or data.image_size / data.channels)"
        )));
    }
    if let Some(n) = model.num_classes() {
        if data.num_classes() == 0 {
            return Err(TrainError::Mismatch(format!(
                "model.num_classes = {n} but data {data_name:?} has no labels"
            )));
        }
        if data.num_classes() > n {
            return Err(TrainError::Mismatch(format!(
                "data {data_name:?} has {} classes but model.num_classes = {n}",
                data.num_classes()
            )));
        }
    }
    Ok(())
}

impl Trainer {
    /// Prepares the run `runs_dir/<config.name>`: a new one, or the existing one resumed from
    /// its latest good checkpoint. Everything is checked before anything is written.
    pub fn new(config: RunConfig, runs_dir: &Path, device: Device) -> Result<Self> {
        config.validate()?;
        let world_size: usize =
            std::env::var("WORLD_SIZE").ok().and_then(|v| v.parse().ok()).unwrap_or(1);
        let rank: usize = std::env::var("RANK").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
        if world_size > 1 {
            return Err(TrainError::Unsupported(format!(
                "WORLD_SIZE={world_size}: multi-process training (c10d all-reduce) is not available yet; run one process"
            )));
        }
        if config.train.threads > 0 {
            tch::set_num_threads(config.train.threads as i32);
        }
        let run = RunDir::new(runs_dir.join(&config.name));
        let config_path = run.config_path();
        if config_path.exists() {
            let old = RunConfig::load(&config_path)?;
            if let Some(differs) = config.difference(&old) {
                return Err(TrainError::RunConflict { dir: run.root.clone(), differs });
            }
        }

        let (dataset, report) = ddpm_data::load(&config.data)?;
        if report.skipped > 0 {
            tracing::warn!(
                "skipped {} unreadable image(s), e.g. {:?}",
                report.skipped,
                report.skipped_examples.first()
            );
        }
        check_fit(&dataset, &config.model, &config.data.dataset)?;
        let dataset = Arc::new(dataset);
        let model = TrainStep::new(&config, device)?;
        let evaluator = Evaluator::for_run(&config, device)?;
        let timestep_sampler = TimestepSampler::new(
            config.diffusion.timestep_sampler,
            model.diffusion.num_timesteps(),
        );
        if device.is_cuda() {
            ddpm_shim::set_cuda_math(config.train.tf32, true)
                .map_err(|e| TrainError::Unsupported(e.to_string()))?;
        }
        if config.train.deterministic {
            ddpm_shim::set_deterministic(true)
                .map_err(|e| TrainError::Unsupported(e.to_string()))?;
        }
        let loader = Loader::new(
            dataset.clone(),
            Self::loader_options(&config, rank, world_size),
            LoaderState::default(),
        )?;
        let mut trainer = Self {
            loader,
            loader_state: LoaderState::default(),
            config,
            run,
            device,
            rank,
            world_size,
            step: 0,
            model,
            timestep_sampler,
            dataset,
            last_good_checkpoint: None,
            evaluator,
            tb: None,
            evals: None,
        };
        trainer.resume()?;
        if rank == 0 {
            let run = &trainer.run;
            let dir = run.checkpoints_dir();
            std::fs::create_dir_all(&dir).map_err(io(dir))?;
            run.write_config(&trainer.config.to_toml())?;
            // A resumed run drops what its logs hold beyond the checkpoint.
            trainer.evals =
                Some(EvalLog::open(run, trainer.step).map_err(io(run.eval_log_path()))?);
            trainer.tb = match TbWriter::for_run(run, trainer.step) {
                Ok(w) => Some(w),
                Err(e) => {
                    tracing::warn!("no TensorBoard events for this run: {e}");
                    None
                }
            };
        }
        Ok(trainer)
    }

    fn loader_options(config: &RunConfig, rank: usize, world_size: usize) -> LoaderOptions {
        LoaderOptions {
            batch_size: config.optim.batch_size / world_size,
            seed: derive_seed(config.seed, &[STREAM_DATA]),
            rank,
            world_size,
            random_flip: config.data.random_flip_default(),
            drop_last: true,
            prefetch: 4,
        }
    }

    /// Loads the latest good checkpoint, if any: weights, EMA, Adam moments, step, data order,
    /// timestep-sampler history.
    fn resume(&mut self) -> Result<()> {
        let mut skipped = Vec::new();
        let found = self.run.latest_checkpoint(&mut skipped);
        for e in &skipped {
            tracing::warn!("passing over a damaged checkpoint: {e}");
        }
        let Some(file) = found else { return Ok(()) };
        file.load_weights(&self.model.vs, false)?;
        file.load_weights(&self.model.ema_vs, true)?;
        self.model.adam.load_state(&file)?;
        self.loader_state = file.meta.loader;
        if self.timestep_sampler.kind == TimestepSamplerKind::LossSecondMoment {
            self.timestep_sampler =
                file.meta.timestep_sampler.clone().ok_or_else(|| ddpm_run::RunError::Invalid {
                    path: file.path().clone(),
                    reason: "no timestep_sampler state for loss-second-moment sampling".into(),
                })?;
        }
        self.loader = Loader::new(
            self.dataset.clone(),
            Self::loader_options(&self.config, self.rank, self.world_size),
            self.loader_state,
        )?;
        self.step = file.step();
        self.last_good_checkpoint = Some(self.step);
        tracing::info!("resumed {} from step {}", self.run.root.display(), self.step);
        Ok(())
    }

    /// Writes `ckpt-<step>.safetensors` atomically and prunes all but the newest `keep_checkpoints`.
    pub fn save_checkpoint(&mut self) -> Result<PathBuf> {
        let path = self.run.checkpoint_path(self.step);
        if self.rank != 0 {
            return Ok(path);
        }
        let m = &self.model;
        Checkpoint::write(&path, &m.vs, &m.ema_vs, Some(m.adam.moments()), &self.meta())?;
        self.last_good_checkpoint = Some(self.step);
        self.run.prune_checkpoints(self.config.train.keep_checkpoints);
        Ok(path)
    }

    /// What a checkpoint of the current state records besides tensors.
    fn meta(&self) -> CheckpointMeta {
        CheckpointMeta {
            step: self.step,
            loader: self.loader_state,
            timestep_sampler: Some(self.timestep_sampler.clone()),
            config: Some(self.config.to_toml()),
            source: None,
        }
    }

    /// Draws step `self.step`'s batch and timesteps and takes one [`TrainStep`]; returns its
    /// outputs (on the device) and the timesteps.
    fn train_step(&mut self) -> (StepOutput, Tensor) {
        let (seed, rank) = (self.config.seed, self.rank as u64);
        let batch = self.loader.next_batch();
        self.loader_state = batch.state_after;
        let shape: Vec<i64> = batch.shape.iter().map(|&d| d as i64).collect();
        let b = shape[0] as usize;
        let x0 = Tensor::from_slice(&batch.x).view(shape.as_slice()).to_device(self.device);

        let mut rng = SplitMix64::derived(seed, &[STREAM_TIMESTEPS, rank, self.step]);
        let (ts, weights) = self.timestep_sampler.sample(b, &mut rng);
        let y = match (self.model.net.num_classes(), &batch.labels) {
            (Some(null), Some(labels)) => {
                let p = self.config.train.class_dropout;
                let dropped: Vec<i64> = labels
                    .iter()
                    .map(|&l| if rng.next_f64() < p { null as i64 } else { l })
                    .collect();
                Some(Tensor::from_slice(&dropped).to_device(self.device))
            }
            _ => None,
        };
        let t = Tensor::from_slice(&ts.iter().map(|&t| t as i64).collect::<Vec<_>>())
            .to_device(self.device);
        let w = Tensor::from_slice(&weights).to_kind(Kind::Float).to_device(self.device);
        let lr = learning_rate(&self.config.optim, self.config.train.total_steps, self.step);
        let input = StepInput { x0: &x0, t: &t, weights: Some(&w), y: y.as_ref() };
        let out = self.model.run(&input, derive_seed(seed, &[STREAM_TORCH, rank, self.step]), lr);
        if self.timestep_sampler.kind == TimestepSamplerKind::LossSecondMoment {
            // Importance sampling learns from every step's losses (a host read per step, as in
            // improved-diffusion's LossSecondMomentResampler).
            let losses =
                Vec::<f64>::try_from(out.per_example.to_kind(Kind::Double).to_device(Device::Cpu))
                    .expect("f64 losses");
            self.timestep_sampler.update(&ts, &losses);
        }
        self.step += 1;
        (out, t)
    }

    /// Trains until the configured total or until `stop` is set (then checkpoints and returns).
    pub fn train(&mut self, stop: &AtomicBool, progress: &mut dyn Progress) -> Result<Outcome> {
        let total = self.config.train.total_steps;
        let t = &self.config.train;
        let (log_every, sample_every, ckpt_every) =
            (t.log_every, t.sample_every, t.checkpoint_every);
        let ckpt_minutes = t.checkpoint_minutes;
        let mut metrics = MetricsLog::open(&self.run, self.step)?;
        let mut acc = Accumulator::new(self.device);
        let start = Instant::now();
        let mut interval_start = Instant::now();
        let mut last_ckpt = Instant::now();
        progress.start(self.step, total);
        if self.step >= total {
            progress.line(&format!(
                "run already at step {} of {total}; pass --steps N to train longer",
                self.step
            ));
        }
        while self.step < total {
            let (out, t) = self.train_step();
            let steps = self.model.diffusion.num_timesteps();
            acc.add(self.step, &out.loss, &out.per_example, &t, steps, &out.grad_norm);
            let step = self.step;
            let at_end = step == total;
            if step.is_multiple_of(log_every) || at_end {
                self.stop_if_not_finite(&acc, None)?;
                let lr = learning_rate(&self.config.optim, total, step - 1);
                let line = acc.take(
                    step,
                    lr,
                    interval_start.elapsed().as_secs_f64(),
                    start.elapsed().as_secs_f64(),
                );
                interval_start = Instant::now();
                progress.advance(step, Some(line.loss));
                let remaining = (total - step) as f64 * self.config.optim.batch_size as f64
                    / line.images_per_s.max(1e-9);
                progress.line(&format!(
                    "step {step}/{total}  loss {:.5}  grad norm {:.3}  lr {:.2e}  {:.1} img/s  ETA {}",
                    line.loss,
                    line.grad_norm,
                    line.lr,
                    line.images_per_s,
                    ddpm_cli::fmt_duration(remaining)
                ));
                if self.rank == 0 {
                    if let Some(tb) = &mut self.tb
                        && let Err(e) = tb.add_metrics(&line)
                    {
                        tracing::warn!("TensorBoard: {e}");
                    }
                    metrics.append(line)?;
                    self.refresh_report();
                }
            } else {
                progress.advance(step, None);
            }
            let interrupted = stop.load(Ordering::SeqCst);
            let timed = last_ckpt.elapsed().as_secs_f64() >= ckpt_minutes * 60.0;
            if step.is_multiple_of(ckpt_every) || at_end || interrupted || timed {
                // Never write a checkpoint over a non-finite loss or non-finite weights.
                self.stop_if_not_finite(&acc, Some(step))?;
                let path = self.save_checkpoint()?;
                last_ckpt = Instant::now();
                progress.line(&format!("checkpoint {}", path.display()));
            }
            if (sample_every > 0 && step.is_multiple_of(sample_every)) || at_end {
                progress.line(&format!(
                    "sampling the preview: {} images, {} {} steps",
                    self.config.train.sample_count,
                    self.config.train.sample_sampler.name(),
                    self.config.train.sample_steps
                ));
                let preview = self.preview()?;
                if let (Some(tb), Some(png)) = (&mut self.tb, &preview.png)
                    && let Err(e) = tb.add_image_png("samples", step, png)
                {
                    tracing::warn!("TensorBoard: {e}");
                }
                progress.line(&format!("samples {}", preview.path.display()));
                self.refresh_report();
            }
            let eval_every = self.config.train.eval_every;
            if eval_every > 0 && (step.is_multiple_of(eval_every) || at_end) {
                self.evaluate(progress)?;
            }
            if interrupted && !at_end {
                progress.finish();
                return Ok(Outcome::Interrupted { step });
            }
        }
        progress.finish();
        self.refresh_report();
        Ok(Outcome::Finished { step: self.step })
    }

    /// Measures the EMA weights with the run's metric (rank 0), logs the values, and keeps the
    /// best checkpoint by the first metric as `checkpoints/best.safetensors`.
    fn evaluate(&mut self, progress: &mut dyn Progress) -> Result<()> {
        let Some(evaluator) = &self.evaluator else { return Ok(()) };
        if self.rank != 0 {
            return Ok(());
        }
        progress.line(&format!("evaluating the EMA weights: {}", evaluator.describe()));
        let lines = evaluator.evaluate(&self.model.ema_net, &self.model.diffusion, self.step)?;
        let Some(first) = lines.first().cloned() else { return Ok(()) };
        let best = self.evals.as_ref().is_some_and(|log| log.is_best(&first));
        for line in &lines {
            if let Some(log) = &mut self.evals {
                log.append(line.clone()).map_err(io(self.run.eval_log_path()))?;
            }
            if let Some(tb) = &mut self.tb
                && let Err(e) = tb.add_eval(line)
            {
                tracing::warn!("TensorBoard: {e}");
            }
            progress.line(&eval_summary(line));
        }
        if best {
            let path = self.run.best_checkpoint_path();
            let m = &self.model;
            Checkpoint::write(&path, &m.vs, &m.ema_vs, Some(m.adam.moments()), &self.meta())?;
            progress.line(&format!("best {} so far: {}", first.metric, path.display()));
        }
        self.refresh_report();
        Ok(())
    }

    /// The evaluations logged so far (rank 0).
    pub fn evaluations(&self) -> &[EvalLine] {
        self.evals.as_ref().map(|l| l.lines()).unwrap_or_default()
    }

    /// Rewrites `report.html` (rank 0); a failure is a warning, never the end of training.
    fn refresh_report(&self) {
        if self.rank == 0
            && let Err(e) = crate::report::write_report(&self.run)
        {
            tracing::warn!("report: {e}");
        }
    }

    /// The run stops, naming the step, at a non-finite loss or gradient norm; with `weights_at`,
    /// also when the weights themselves stopped being finite (checked before checkpoints).
    fn stop_if_not_finite(&self, acc: &Accumulator, weights_at: Option<u64>) -> Result<()> {
        let last_good = self.last_good_checkpoint;
        if let Some(step) = acc.first_bad_step() {
            return Err(TrainError::NonFinite { step, last_good });
        }
        match weights_at {
            Some(step) if !self.model.weights_finite() => {
                Err(TrainError::NonFinite { step, last_good })
            }
            _ => Ok(()),
        }
    }

    /// The preview of the current step from the EMA model (see [`crate::preview`]).
    pub fn preview(&self) -> Result<crate::preview::Preview> {
        crate::preview::write_preview(
            &self.config,
            &self.run,
            &self.model.ema_net,
            &self.model.diffusion,
            &self.dataset,
            self.step,
        )
    }

    /// The network's trainable parameters and the EMA's, for tests and benchmarks.
    pub fn var_stores(&self) -> (&tch::nn::VarStore, &tch::nn::VarStore) {
        (&self.model.vs, &self.model.ema_vs)
    }
}

/// "digits_fd 3.912 (data halves 3.180, 1.23x) in 41.2 s".
fn eval_summary(l: &EvalLine) -> String {
    let base = l
        .baseline
        .map(|b| format!(" (data vs data {b:.4}, {:.2}x)", l.value / b))
        .unwrap_or_default();
    let secs = l.seconds.map(|s| format!(" in {s:.1} s")).unwrap_or_default();
    format!("step {} {} {:.4}{base}{secs}", l.step, l.metric, l.value)
}
