//! Algorithm 1 of Ho et al. 2020 (arXiv:2006.11239) as a run: set-up, resume, the loop of
//! [`TrainStep`]s with metrics, checkpoints and previews at their intervals, and signals.
//!
//! Reproducibility: every random draw of step s comes from streams seeded by (seed, s) — the
//! timesteps and label dropout from a [`SplitMix64`], the noise eps from per-row counter-based
//! streams, the dropout masks from libtorch's generator re-seeded per step — and the data order
//! from the loader's (seed, epoch) permutation; the ids are in [`crate::streams`]. So
//! resuming from a checkpoint at step s continues exactly as an
//! uninterrupted run would, bit for bit on the CPU.
//!
//! A failed start leaves nothing behind: the run directory and its `config.toml` are written
//! only once the config, the data and the network have all been checked.
//!
//! Data parallelism over W ranks (torchrun, see [`Trainer::with_dist`]): the global batch
//! `optim.batch_size` is split into W equal shards (the loader gives rank r rows r, r + W, ...
//! of the global batch); the timesteps, importance weights, label dropout and eps are drawn
//! for the whole global batch from the global streams (those of one process) and each rank
//! keeps its rows, so W ranks take the same steps as one process with the same global batch,
//! up to the order of floating-point sums (dropout masks aside, see [`crate::step`]). Rank 0's
//! state (fresh or resumed) is broadcast at start; gradients are averaged in every step;
//! metrics are summed over ranks at logging intervals only; rank 0 alone writes the run
//! directory (checkpoints, previews, evaluations, metrics, TensorBoard, the report) after a
//! barrier. A stop request (SIGINT/SIGTERM on any rank) and the timed checkpoint are agreed
//! through one small all-reduce at logging and checkpoint steps (not in every step: each
//! agreement is a host read), so every rank stops at the same step boundary, the next
//! logging step after the signal.
//! The loader's state counts global batches, so a run resumes under any world size with the
//! same global batch.

use crate::config::RunConfig;
use crate::error::{Result, TrainError, io};
use crate::eval_log::{EvalLine, EvalLog};
use crate::evaluate::Evaluator;
use crate::importance::learn_across_ranks;
use crate::intervals::Intervals;
use crate::metrics::{Accumulator, MetricsLog};
use crate::optim::learning_rate;
use crate::progress::Progress;
use crate::step::{StepInput, StepOutput, TrainStep};
use crate::streams::{GLOBAL, Stream};
use crate::tensorboard::TbWriter;
use ddpm_core::rng::SplitMix64;
use ddpm_core::{TimestepSampler, TimestepSamplerKind};
use ddpm_data::loader::global_row;
use ddpm_data::{Dataset, Loader, LoaderOptions, LoaderState};
use ddpm_dist::Dist;
use ddpm_nets::ModelConfig;
use ddpm_run::{Checkpoint, CheckpointMeta, RunDir};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

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
    /// Built once, when the resume state is known (see [`Trainer::with_dist`]).
    loader: Option<Loader>,
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
    /// Prepares the run `runs_dir/<config.name>` for one process: a new one, or the existing
    /// one resumed from its latest good checkpoint. Everything is checked before anything is
    /// written.
    pub fn new(config: RunConfig, runs_dir: &Path, device: Device) -> Result<Self> {
        Self::with_dist(config, runs_dir, Dist::single(device))
    }

    /// As [`Trainer::new`], as one rank of `dist`'s group (on `dist.device()`): every rank
    /// checks the config and data and builds the network; rank 0 alone reads the latest
    /// checkpoint, and its state (weights, EMA, Adam, step, data order, timestep-sampler
    /// history) is broadcast to every rank; rank 0 alone writes the run directory.
    pub fn with_dist(config: RunConfig, runs_dir: &Path, dist: Dist) -> Result<Self> {
        config.validate()?;
        let (rank, world_size, device) = (dist.rank(), dist.world_size(), dist.device());
        if !config.optim.batch_size.is_multiple_of(world_size) {
            return Err(TrainError::Config(crate::config::ConfigError(format!(
                "optim.batch_size = {} is the global batch, split over WORLD_SIZE = {world_size} \
                 ranks: it must be a multiple of {world_size}",
                config.optim.batch_size
            ))));
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
        if report.skipped > 0 && rank == 0 {
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
        let mut trainer = Self {
            loader: None,
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
        if rank == 0 {
            trainer.resume()?;
        }
        trainer.replicate(dist)?;
        // The data order continues from the (broadcast) resume state: the loader, whose
        // prefetch thread starts reading at once, is built once, now.
        trainer.loader = Some(Loader::new(
            trainer.dataset.clone(),
            Self::loader_options(&trainer.config, rank, world_size),
            trainer.loader_state,
        )?);
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

    /// Joins `dist`'s group with rank 0's state: the tensors through
    /// [`TrainStep::replicate`], the step, data order and timestep-sampler history as host
    /// values. Without a group, only keeps `dist`.
    fn replicate(&mut self, dist: Dist) -> Result<()> {
        if dist.backend().is_some() {
            let h = dist.broadcast_i64s(&[
                self.last_good_checkpoint.is_some() as i64,
                self.step as i64,
                self.loader_state.epoch as i64,
                self.loader_state.position as i64,
            ])?;
            let sampler = serde_json::to_vec(&self.timestep_sampler).expect("serialises");
            let sampler = dist.broadcast_bytes(&sampler)?;
            if !dist.is_main() {
                self.step = h[1] as u64;
                self.last_good_checkpoint = (h[0] == 1).then_some(self.step);
                self.loader_state = LoaderState { epoch: h[2] as u64, position: h[3] as u64 };
                self.timestep_sampler = serde_json::from_slice(&sampler).map_err(|e| {
                    TrainError::Unsupported(format!("rank 0's timestep sampler state: {e}"))
                })?;
                self.model.set_updates(self.step);
            }
        }
        self.model.replicate(dist)?;
        Ok(())
    }

    /// The process group (one process without a launcher).
    pub fn dist(&self) -> &Dist {
        &self.model.dist
    }

    fn loader_options(config: &RunConfig, rank: usize, world_size: usize) -> LoaderOptions {
        LoaderOptions {
            batch_size: config.optim.batch_size / world_size,
            seed: Stream::Data.seed(config.seed, &[]),
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
        self.step = file.step();
        self.last_good_checkpoint = Some(self.step);
        tracing::info!("resumed {} from step {}", self.run.root.display(), self.step);
        Ok(())
    }

    /// Writes `ckpt-<step>.safetensors` atomically and prunes all but the newest
    /// `keep_checkpoints`: rank 0, once every rank has reached this point (every rank calls it).
    pub fn save_checkpoint(&mut self) -> Result<PathBuf> {
        let path = self.run.checkpoint_path(self.step);
        self.model.dist.barrier()?;
        if self.rank != 0 {
            // Rank 0 writes it; should that fail, rank 0 exits and the others learn it in
            // their next collective.
            self.last_good_checkpoint = Some(self.step);
            return Ok(path);
        }
        let m = &self.model;
        Checkpoint::write(&path, &m.vs, &m.ema_vs, Some(m.adam.moments()), &self.meta())?;
        self.last_good_checkpoint = Some(self.step);
        for e in self.run.prune_checkpoints(self.config.train.keep_checkpoints, &path) {
            tracing::warn!(
                "a damaged checkpoint does not count toward train.keep_checkpoints: {e}"
            );
        }
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
    /// outputs (on the device) and this rank's timesteps. The per-example draws (timesteps,
    /// importance weights, label dropout) are made for the whole global batch and this rank
    /// keeps its rows.
    fn train_step(&mut self) -> Result<(StepOutput, Tensor)> {
        let (seed, rank, world) = (self.config.seed, self.rank, self.world_size);
        let batch = self.loader.as_mut().expect("built by Trainer::with_dist").next_batch();
        self.loader_state = batch.state_after;
        let shape: Vec<i64> = batch.shape.iter().map(|&d| d as i64).collect();
        let b = shape[0] as usize;
        let rows: Vec<usize> = (0..b).map(|j| global_row(rank, world, j)).collect();
        let device = self.device;
        let x0 = upload(Tensor::from_slice(&batch.x).view(shape.as_slice()), device);

        let mut rng = SplitMix64::new(Stream::Timesteps.seed(seed, &[GLOBAL, self.step]));
        let (global_ts, global_weights) = self.timestep_sampler.sample(b * world, &mut rng);
        let ts: Vec<usize> = rows.iter().map(|&k| global_ts[k]).collect();
        let weights: Vec<f64> = rows.iter().map(|&k| global_weights[k]).collect();
        let y = match (self.model.net.num_classes(), &batch.labels) {
            (Some(null), Some(labels)) => {
                let p = self.config.train.class_dropout;
                let coins: Vec<f64> = (0..b * world).map(|_| rng.next_f64()).collect();
                let dropped: Vec<i64> = labels
                    .iter()
                    .zip(&rows)
                    .map(|(&l, &k)| if coins[k] < p { null as i64 } else { l })
                    .collect();
                Some(upload(Tensor::from_slice(&dropped), device))
            }
            _ => None,
        };
        let t =
            upload(Tensor::from_slice(&ts.iter().map(|&t| t as i64).collect::<Vec<_>>()), device);
        let w = upload(Tensor::from_slice(&weights).to_kind(Kind::Float), device);
        let lr = learning_rate(&self.config.optim, self.config.train.total_steps, self.step);
        let input = StepInput { x0: &x0, t: &t, weights: Some(&w), y: y.as_ref() };
        let step_seed = Stream::Torch.seed(seed, &[GLOBAL, self.step]);
        let out = self.model.run(&input, step_seed, lr)?;
        learn_across_ranks(
            &mut self.timestep_sampler,
            &global_ts,
            &rows,
            &out.per_example,
            &self.model.dist,
        )?;
        self.step += 1;
        Ok((out, t))
    }

    /// Whether to stop, and whether the timed checkpoint is due, as every rank's flags say:
    /// under a group, one all-reduce of two numbers and its host read, made only at `due`
    /// steps (logging and checkpoint steps, the same on every rank), so that a signal on any
    /// rank stops all of them at the same step boundary without a host read in every step.
    /// Without a group the flags are this process's, read every step at no cost.
    fn agree(&self, stop: bool, timed: bool, due: bool) -> Result<(bool, bool)> {
        let dist = &self.model.dist;
        if dist.backend().is_none() {
            return Ok((stop, timed));
        }
        if !due {
            return Ok((false, false));
        }
        let flags =
            Tensor::from_slice(&[stop as i32 as f32, timed as i32 as f32]).to_device(self.device);
        dist.all_reduce_sum(std::slice::from_ref(&flags))?;
        let v = Vec::<f32>::try_from(flags.to_device(Device::Cpu)).expect("f32 flags");
        Ok((v[0] > 0.0, v[1] > 0.0))
    }

    /// Trains until the configured total or until `stop` is set (then checkpoints and returns).
    /// Under a group every rank calls it; a stop on any rank stops all at the same step. Each
    /// step, then what [`Intervals`] says is due: log, checkpoint, preview, evaluate
    /// (improved-diffusion's `run_loop`).
    pub fn train(&mut self, stop: &AtomicBool, progress: &mut dyn Progress) -> Result<Outcome> {
        let intervals = Intervals::of(&self.config.train);
        let total = intervals.total;
        let checkpoint_seconds = self.config.train.checkpoint_minutes * 60.0;
        let mut log = IntervalLog {
            metrics: if self.rank == 0 {
                Some(MetricsLog::open(&self.run, self.step)?)
            } else {
                None
            },
            acc: Accumulator::new(self.device),
            start: Instant::now(),
            interval_start: Instant::now(),
        };
        let mut last_ckpt = Instant::now();
        progress.start(self.step, total);
        if self.step >= total {
            progress.line(&format!(
                "run already at step {} of {total}; pass --steps N to train longer",
                self.step
            ));
        }
        while self.step < total {
            let (out, t) = self.train_step()?;
            let steps = self.model.diffusion.num_timesteps();
            log.acc.add(self.step, &out.loss, &out.per_example, &t, steps, &out.grad_norm);
            let step = self.step;
            let due = intervals.at(step);
            if due.log {
                self.log_interval(&mut log, progress)?;
            } else {
                progress.advance(step, None);
            }
            let (interrupted, timed) = self.agree(
                stop.load(Ordering::SeqCst),
                last_ckpt.elapsed().as_secs_f64() >= checkpoint_seconds,
                due.agree(),
            )?;
            let checkpoint = due.checkpoint || interrupted || timed;
            if checkpoint {
                // Never write a checkpoint over a non-finite loss or non-finite weights.
                self.stop_if_not_finite(&log.acc, Some(step))?;
                let path = self.save_checkpoint()?;
                last_ckpt = Instant::now();
                progress.line(&format!("checkpoint {}", path.display()));
            }
            // Previews and evaluations are every rank's: each samples its share.
            if due.preview {
                self.write_preview(progress)?;
            }
            if due.eval {
                self.evaluate(progress)?;
            }
            if interrupted && !due.at_end {
                progress.finish();
                return Ok(Outcome::Interrupted { step });
            }
        }
        progress.finish();
        self.refresh_report();
        Ok(Outcome::Finished { step: self.step })
    }

    /// The metrics line of the interval that ends at this step: the sums over ranks read once,
    /// the progress line, `metrics.jsonl`, TensorBoard and the report (rank 0).
    fn log_interval(&mut self, log: &mut IntervalLog, progress: &mut dyn Progress) -> Result<()> {
        let (step, total) = (self.step, self.config.train.total_steps);
        self.stop_if_not_finite(&log.acc, None)?;
        log.acc.all_reduce(&self.model.dist)?;
        let lr = learning_rate(&self.config.optim, total, step - 1);
        let line = log.acc.take(
            step,
            lr,
            log.interval_start.elapsed().as_secs_f64(),
            log.start.elapsed().as_secs_f64(),
        );
        log.interval_start = Instant::now();
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
        if let Some(metrics) = &mut log.metrics {
            if let Some(tb) = &mut self.tb
                && let Err(e) = tb.add_metrics(&line)
            {
                tracing::warn!("TensorBoard: {e}");
            }
            metrics.append(line)?;
            self.refresh_report();
        }
        Ok(())
    }

    /// The preview of this step (every rank samples its share; rank 0 writes): the grid,
    /// TensorBoard, the report.
    fn write_preview(&mut self, progress: &mut dyn Progress) -> Result<()> {
        let t = &self.config.train;
        progress.line(&format!(
            "sampling the preview: {} images, {} {} steps",
            t.sample_count,
            t.sample_sampler.name(),
            t.sample_steps
        ));
        let Some(preview) = self.preview()? else { return Ok(()) };
        if let (Some(tb), Some(png)) = (&mut self.tb, &preview.png)
            && let Err(e) = tb.add_image_png("samples", self.step, png)
        {
            tracing::warn!("TensorBoard: {e}");
        }
        progress.line(&format!("samples {}", preview.path.display()));
        self.refresh_report();
        Ok(())
    }

    /// Measures the EMA weights with the run's metric (every rank takes part, see
    /// [`Evaluator::evaluate`]); rank 0 logs the values and keeps the best checkpoint by the
    /// first metric as `checkpoints/best.safetensors`.
    fn evaluate(&mut self, progress: &mut dyn Progress) -> Result<()> {
        let Some(evaluator) = &self.evaluator else { return Ok(()) };
        progress.line(&format!("evaluating the EMA weights: {}", evaluator.describe()));
        let m = &self.model;
        let lines = evaluator.evaluate(&m.ema_net, &m.diffusion, self.step, &m.dist)?;
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

    /// The preview of the current step from the EMA model (see [`crate::preview`]); every rank
    /// calls it, rank 0 gets the preview.
    pub fn preview(&self) -> Result<Option<crate::preview::Preview>> {
        crate::preview::write_preview(
            &self.config,
            &self.run,
            &self.model.ema_net,
            &self.model.diffusion,
            &self.dataset,
            self.step,
            &self.model.dist,
        )
    }

    /// The network's trainable parameters and the EMA's, for tests and benchmarks.
    pub fn var_stores(&self) -> (&tch::nn::VarStore, &tch::nn::VarStore) {
        (&self.model.vs, &self.model.ema_vs)
    }
}

/// What the logging of one interval carries from step to step.
struct IntervalLog {
    /// rank 0's `metrics.jsonl`.
    metrics: Option<MetricsLog>,
    /// The interval's sums, on the device.
    acc: Accumulator,
    start: Instant,
    interval_start: Instant,
}

/// A host tensor on `device`: on CUDA through pinned memory with a non-blocking copy, so the
/// step's inputs do not make the host wait for the GPU (PyTorch's caching host allocator keeps
/// the pinned block until the copy is done); elsewhere as it is.
fn upload(t: Tensor, device: Device) -> Tensor {
    if !device.is_cuda() {
        return t.to_device(device);
    }
    let kind = t.kind();
    t.pin_memory(device).to_device_(device, kind, true, false)
}

/// "digits_fd 3.912 (data vs data 3.180, 1.23x) in 41.2 s"; no ratio to a baseline at or below
/// zero (KID's floor is about 0 and may be negative: a ratio to it means nothing).
fn eval_summary(l: &EvalLine) -> String {
    let base = l
        .baseline
        .map(|b| match l.ratio_to_baseline() {
            Some(r) => format!(" (data vs data {b:.4}, {r:.2}x)"),
            None => format!(" (data vs data {b:.4})"),
        })
        .unwrap_or_default();
    let secs = l.seconds.map(|s| format!(" in {s:.1} s")).unwrap_or_default();
    format!("step {} {} {:.4}{base}{secs}", l.step, l.metric, l.value)
}

#[cfg(test)]
mod eval_summary_tests {
    use super::*;

    #[test]
    fn the_ratio_to_the_floor_is_printed_only_for_a_positive_floor() {
        let mut fd = EvalLine::new(300, "fashion_fd", 7.9948);
        fd.baseline = Some(0.7425);
        fd.seconds = Some(44.3);
        assert_eq!(
            eval_summary(&fd),
            "step 300 fashion_fd 7.9948 (data vs data 0.7425, 10.77x) in 44.3 s"
        );
        let mut kid = EvalLine::new(300, "fashion_kid", 0.2511);
        kid.baseline = Some(-0.0063);
        assert_eq!(eval_summary(&kid), "step 300 fashion_kid 0.2511 (data vs data -0.0063)");
    }
}
