//! Algorithm 1 of Ho et al. 2020, with everything around it: resume, checkpoints, EMA,
//! previews, metrics, signals.
//!
//! Reproducibility: every random draw of step s on rank r comes from streams seeded by
//! (seed, r, s) — the timesteps and label dropout from a [`SplitMix64`], the noise eps and
//! dropout masks from libtorch's generator re-seeded per step — and the data order from the
//! loader's (seed, epoch) permutation. So resuming from a checkpoint at step s continues
//! exactly as an uninterrupted run would, bit for bit on the CPU.
//!
//! Scale-out readiness: data is sharded by rank, only rank 0 writes checkpoints and logs, and
//! seeds derive from the rank. Gradient all-reduce (c10d) is not wired yet, so more than one
//! process is refused rather than silently training unsynchronised replicas.

use crate::config::{Precision, TrainConfig};
use crate::error::{Result, TrainError, io};
use crate::metrics::{Accumulator, MetricsLog};
use crate::optim::{Adam, warmup_lr};
use ddpm_core::rng::{SplitMix64, derive_seed};
use ddpm_core::tensor::TensorDiffusion;
use ddpm_core::{TimestepSampler, TimestepSamplerKind};
use ddpm_data::{Dataset, Loader, LoaderOptions, LoaderState};
use ddpm_nets::run::{CHECKPOINT_FORMAT, RunDir, checkpoint_step};
use ddpm_nets::tensorfile::{load_varstore, named_variables, write_atomic};
use ddpm_nets::{Denoiser, Ema, ModelConfig};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

const STREAM_TIMESTEPS: u64 = 1;
const STREAM_TORCH: u64 = 2;
const STREAM_PREVIEW: u64 = 3;

/// How a call to [`Trainer::train`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Reached the configured total; a checkpoint at that step exists.
    Finished { step: u64 },
    /// Stopped by a signal (or the caller's flag) after writing a checkpoint.
    Interrupted { step: u64 },
}

/// How progress is shown: a bar on a terminal, log lines otherwise.
pub trait Progress {
    fn start(&mut self, step: u64, total: u64);
    fn advance(&mut self, step: u64, loss: Option<f64>);
    fn line(&mut self, msg: &str);
    fn finish(&mut self);
}

/// Progress that only logs through tracing.
#[derive(Debug, Default)]
pub struct LogProgress;

impl Progress for LogProgress {
    fn start(&mut self, _: u64, _: u64) {}
    fn advance(&mut self, _: u64, _: Option<f64>) {}
    fn line(&mut self, msg: &str) {
        tracing::info!("{msg}");
    }
    fn finish(&mut self) {}
}

pub struct Trainer {
    pub config: TrainConfig,
    pub run: RunDir,
    pub device: Device,
    pub rank: usize,
    pub world_size: usize,
    pub step: u64,
    vs: VarStore,
    net: Denoiser,
    ema_vs: VarStore,
    ema_net: Denoiser,
    ema: Ema,
    td: TensorDiffusion,
    timestep_sampler: TimestepSampler,
    adam: Adam,
    dataset: Arc<Dataset>,
    loader: Loader,
    loader_state: LoaderState,
    autocast: bool,
    last_good_checkpoint: Option<u64>,
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

/// Which top-level section differs between two configs (ignoring the step count).
fn config_difference(a: &TrainConfig, b: &TrainConfig) -> Option<String> {
    let mut a = a.clone();
    a.train.total_steps = b.train.total_steps;
    let (ta, tb) = (toml::Table::try_from(&a).ok()?, toml::Table::try_from(b).ok()?);
    let mut keys: Vec<&String> = ta.keys().chain(tb.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter().find(|k| ta.get(*k) != tb.get(*k)).map(|k| match (ta.get(k), tb.get(k)) {
        (Some(toml::Value::Table(x)), Some(toml::Value::Table(y))) => {
            let mut inner: Vec<&String> = x.keys().chain(y.keys()).collect();
            inner.sort();
            inner.dedup();
            let sub = inner.into_iter().find(|ik| x.get(*ik) != y.get(*ik));
            sub.map(|s| format!("{k}.{s}")).unwrap_or_else(|| k.clone())
        }
        _ => k.clone(),
    })
}

impl Trainer {
    /// Prepares the run `runs_dir/<config.name>`: a new one (its resolved config written first),
    /// or the existing one resumed from its latest good checkpoint.
    pub fn new(config: TrainConfig, runs_dir: &Path, device: Device) -> Result<Self> {
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
            let old = TrainConfig::load(&config_path)?;
            if let Some(differs) = config_difference(&config, &old) {
                return Err(TrainError::RunConflict { dir: run.root.clone(), differs });
            }
        }
        if rank == 0 {
            std::fs::create_dir_all(run.checkpoints_dir()).map_err(io(run.checkpoints_dir()))?;
            write_text_atomic(&config_path, &config.to_toml())?;
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

        let rng_guard = ddpm_nets::torch_rng_lock();
        tch::manual_seed(derive_seed(config.seed, &[0]) as i64);
        let learned = config.diffusion.model_var.is_learned();
        let vs = VarStore::new(device);
        let net = Denoiser::new(&vs.root(), &config.model, learned)?;
        let ema_vs = VarStore::new(device);
        let ema_net = Denoiser::new(&ema_vs.root(), &config.model, learned)?;
        let o = &config.optim;
        let mut ema = Ema::new(&vs, &ema_vs, o.ema_decay, o.ema_warmup);
        ema.foreach = o.fused;
        let adam = Adam::new(&vs, (o.beta1, o.beta2), o.eps, o.weight_decay, o.fused);
        let td = TensorDiffusion::from_config(&config.diffusion, device).map_err(|e| {
            TrainError::Config(crate::config::ConfigError(format!("diffusion: {e}")))
        })?;
        let timestep_sampler =
            TimestepSampler::new(config.diffusion.timestep_sampler, td.num_timesteps());
        drop(rng_guard);
        let autocast = config.train.precision == Precision::Bf16 && device.is_cuda();
        if device.is_cuda() {
            ddpm_shim::set_cuda_math(config.train.tf32, true)
                .map_err(|e| TrainError::Unsupported(e.to_string()))?;
        }

        let mut trainer = Self {
            loader: Loader::new(
                dataset.clone(),
                Self::loader_options(&config, rank, world_size),
                LoaderState::default(),
            )?,
            loader_state: LoaderState::default(),
            config,
            run,
            device,
            rank,
            world_size,
            step: 0,
            vs,
            net,
            ema_vs,
            ema_net,
            ema,
            td,
            timestep_sampler,
            adam,
            dataset,
            autocast,
            last_good_checkpoint: None,
        };
        trainer.resume()?;
        Ok(trainer)
    }

    fn loader_options(config: &TrainConfig, rank: usize, world_size: usize) -> LoaderOptions {
        LoaderOptions {
            batch_size: config.optim.batch_size / world_size,
            seed: derive_seed(config.seed, &[4]),
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
        let Some((step, file)) = found else { return Ok(()) };
        load_varstore(&self.vs, &file, "model/")?;
        load_varstore(&self.ema_vs, &file, "ema/")?;
        self.adam.load_state(&file, step)?;
        let meta = |k: &str| file.metadata.get(k).cloned().unwrap_or_default();
        let bad = |k: &str| {
            TrainError::Net(ddpm_nets::NetError::File {
                path: file.path.clone(),
                reason: format!("bad {k} metadata"),
            })
        };
        self.loader_state = serde_json::from_str(&meta("loader")).map_err(|_| bad("loader"))?;
        if self.timestep_sampler.kind == TimestepSamplerKind::LossSecondMoment {
            self.timestep_sampler = serde_json::from_str(&meta("timestep_sampler"))
                .map_err(|_| bad("timestep_sampler"))?;
        }
        self.loader = Loader::new(
            self.dataset.clone(),
            Self::loader_options(&self.config, self.rank, self.world_size),
            self.loader_state,
        )?;
        self.step = checkpoint_step(&file);
        self.last_good_checkpoint = Some(step);
        tracing::info!("resumed {} from step {}", self.run.root.display(), self.step);
        Ok(())
    }

    /// Writes `ckpt-<step>.safetensors` atomically and prunes all but the newest `keep_checkpoints`.
    pub fn save_checkpoint(&mut self) -> Result<PathBuf> {
        let path = self.run.checkpoint_path(self.step);
        if self.rank != 0 {
            return Ok(path);
        }
        let mut tensors = named_variables(&self.vs, "model/");
        tensors.extend(named_variables(&self.ema_vs, "ema/"));
        tensors.extend(self.adam.state_tensors());
        let meta = HashMap::from([
            ("format".to_string(), CHECKPOINT_FORMAT.to_string()),
            ("step".to_string(), self.step.to_string()),
            ("loader".to_string(), serde_json::to_string(&self.loader_state).unwrap()),
            (
                "timestep_sampler".to_string(),
                serde_json::to_string(&self.timestep_sampler).unwrap(),
            ),
            ("config".to_string(), self.config.to_toml()),
        ]);
        write_atomic(&path, &tensors, &meta)?;
        self.last_good_checkpoint = Some(self.step);
        let all = self.run.list_checkpoints();
        let keep = self.config.train.keep_checkpoints;
        if all.len() > keep {
            for (_, old) in &all[..all.len() - keep] {
                let _ = std::fs::remove_file(old);
            }
        }
        Ok(path)
    }

    /// One step of Algorithm 1; returns (batch mean loss, per-example losses, t, grad norm),
    /// all still on the device.
    fn train_step(&mut self) -> (Tensor, Tensor, Tensor, Tensor) {
        let seed = self.config.seed;
        let rank = self.rank as u64;
        let batch = self.loader.next_batch();
        self.loader_state = batch.state_after;
        let shape: Vec<i64> = batch.shape.iter().map(|&d| d as i64).collect();
        let b = shape[0] as usize;
        let x0 = Tensor::from_slice(&batch.x).view(shape.as_slice()).to_device(self.device);

        let mut rng = SplitMix64::derived(seed, &[STREAM_TIMESTEPS, rank, self.step]);
        let (ts, weights) = self.timestep_sampler.sample(b, &mut rng);
        let y = match (self.net.num_classes(), &batch.labels) {
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

        // Seeding and every draw of this step (eps, dropout) happen under the lock.
        let _rng = ddpm_nets::torch_rng_lock();
        tch::manual_seed(derive_seed(seed, &[STREAM_TORCH, rank, self.step]) as i64);
        let eps = x0.randn_like();
        let terms = {
            let _autocast = self.autocast.then(|| {
                ddpm_shim::AutocastGuard::new(self.device, Kind::BFloat16).expect("bf16 autocast")
            });
            let net = &self.net;
            let yr = y.as_ref();
            self.td.training_losses(
                |x_t, tm| net.forward_t(x_t, tm, yr, true).to_kind(Kind::Float),
                &x0,
                &t,
                &eps,
            )
        };
        let loss = (&terms.loss * &w).mean(Kind::Float);
        self.adam.zero_grad();
        loss.backward();
        let grad_norm = self.adam.clip_grad_norm(self.config.optim.grad_clip);
        let lr = warmup_lr(self.config.optim.lr, self.config.optim.warmup_steps, self.step);
        self.adam.step(lr);
        self.ema.update(self.step);
        if self.timestep_sampler.kind == TimestepSamplerKind::LossSecondMoment {
            let losses = Vec::<f64>::try_from(
                terms.loss.detach().to_kind(Kind::Double).to_device(Device::Cpu),
            )
            .unwrap();
            self.timestep_sampler.update(&ts, &losses);
        }
        self.step += 1;
        (loss.detach(), terms.loss.detach(), t, grad_norm)
    }

    /// Trains until the configured total or until `stop` is set (then checkpoints and returns).
    pub fn train(&mut self, stop: &AtomicBool, progress: &mut dyn Progress) -> Result<Outcome> {
        let total = self.config.train.total_steps;
        let t = &self.config.train;
        let (log_every, sample_every, ckpt_every) =
            (t.log_every, t.sample_every, t.checkpoint_every);
        let ckpt_minutes = t.checkpoint_minutes;
        let mut metrics = MetricsLog::open(&self.run.root, self.step)
            .map_err(io(self.run.root.join("metrics.jsonl")))?;
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
            let (loss, per_example, t, grad_norm) = self.train_step();
            acc.add(self.step, &loss, &per_example, &t, self.td.num_timesteps(), &grad_norm);
            let step = self.step;
            let at_end = step == total;
            if step.is_multiple_of(log_every) || at_end {
                if let Some(bad) = acc.first_bad_step() {
                    return Err(TrainError::NonFinite {
                        step: bad,
                        last_good: self.last_good_checkpoint,
                    });
                }
                let lr = warmup_lr(self.config.optim.lr, self.config.optim.warmup_steps, step - 1);
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
                    fmt_duration(remaining)
                ));
                if self.rank == 0 {
                    metrics.append(line).map_err(io(metrics.path.clone()))?;
                }
            } else {
                progress.advance(step, None);
            }
            let interrupted = stop.load(Ordering::SeqCst);
            let timed = last_ckpt.elapsed().as_secs_f64() >= ckpt_minutes * 60.0;
            if step.is_multiple_of(ckpt_every) || at_end || interrupted || timed {
                // Never write a checkpoint over a non-finite loss or non-finite weights.
                if let Some(bad) = acc.first_bad_step() {
                    return Err(TrainError::NonFinite {
                        step: bad,
                        last_good: self.last_good_checkpoint,
                    });
                }
                if !self.weights_finite() {
                    return Err(TrainError::NonFinite {
                        step,
                        last_good: self.last_good_checkpoint,
                    });
                }
                let path = self.save_checkpoint()?;
                last_ckpt = Instant::now();
                progress.line(&format!("checkpoint {}", path.display()));
            }
            if (sample_every > 0 && step.is_multiple_of(sample_every)) || at_end {
                let path = self.preview()?;
                progress.line(&format!("samples {}", path.display()));
            }
            if interrupted && !at_end {
                progress.finish();
                return Ok(Outcome::Interrupted { step });
            }
        }
        progress.finish();
        Ok(Outcome::Finished { step: self.step })
    }

    /// A preview from the EMA model with the respaced ancestral sampler and fixed noise:
    /// `samples/step-<step>.png` (images) or `.svg` (2-D points beside the data), also copied
    /// to `samples.png`/`samples.svg` in the run directory.
    pub fn preview(&self) -> Result<PathBuf> {
        let c = &self.config;
        let n = c.train.sample_count as i64;
        let td = self.td.respaced_str(&c.train.sample_steps.to_string()).map_err(|e| {
            TrainError::Config(crate::config::ConfigError(format!("train.sample_steps: {e}")))
        })?;
        let shape = self.ema_net.sample_shape();
        let mut full = vec![n];
        full.extend(&shape);
        let mut gen_rng = SplitMix64::derived(c.seed, &[STREAM_PREVIEW]);
        let _rng = ddpm_nets::torch_rng_lock();
        tch::manual_seed(gen_rng.next_u64() as i64);
        let x_t = Tensor::randn(full.as_slice(), (Kind::Float, self.device));
        let y = self.ema_net.num_classes().map(|k| {
            let labels: Vec<i64> = (0..n).map(|i| i % k as i64).collect();
            Tensor::from_slice(&labels).to_device(self.device)
        });
        let net = &self.ema_net;
        let mut model =
            |x: &Tensor, t: &Tensor| net.forward_t(x, t, y.as_ref(), false).to_kind(Kind::Float);
        let x0 = td.p_sample_loop(
            &mut model,
            x_t,
            &mut |_| Tensor::randn(full.as_slice(), (Kind::Float, self.device)),
            true,
            &mut |_, _| {},
        );
        let x0 = x0.clamp(-1.0, 1.0).to_device(Device::Cpu);
        let values = Vec::<f32>::try_from(x0.flatten(0, -1)).unwrap();
        let dir = self.run.root.join("samples");
        let step = self.step;
        let path = match shape.len() {
            3 => {
                let (ch, h, w) = (shape[0] as usize, shape[1] as usize, shape[2] as usize);
                let p = dir.join(format!("step-{step:09}.png"));
                let nrow = (n as f64).sqrt().ceil() as usize;
                let scale = (64 / h.max(1)).max(1);
                ddpm_data::viz::save_image_grid(
                    &p,
                    &values,
                    [n as usize, ch, h, w],
                    nrow,
                    scale,
                    2,
                )
                .map_err(io(&p))?;
                p
            }
            _ => {
                let p = dir.join(format!("step-{step:09}.svg"));
                let data = self.dataset.points_xy(2000);
                let samples: Vec<[f32; 2]> = values.chunks(2).map(|c| [c[0], c[1]]).collect();
                ddpm_data::viz::scatter_panels_svg(
                    &p,
                    &format!("{} at step {step}", c.name),
                    &[(
                        format!("EMA samples, {} steps", c.train.sample_steps),
                        vec![
                            ("data".into(), data, "#999999".into()),
                            ("samples".into(), samples, "#d62728".into()),
                        ],
                    )],
                    1.0,
                )
                .map_err(io(&p))?;
                p
            }
        };
        let latest =
            self.run.root.join(format!("samples.{}", path.extension().unwrap().to_string_lossy()));
        std::fs::copy(&path, &latest).map_err(io(&latest))?;
        Ok(path)
    }

    /// Whether every parameter is finite (one reduction and one host read).
    fn weights_finite(&self) -> bool {
        tch::no_grad(|| {
            let norms = ddpm_shim::foreach_norm(&self.adam.params).expect("foreach_norm");
            Tensor::stack(&norms, 0).isfinite().all().int64_value(&[]) == 1
        })
    }

    /// The network's trainable parameters and the EMA's, for tests and benchmarks.
    pub fn var_stores(&self) -> (&VarStore, &VarStore) {
        (&self.vs, &self.ema_vs)
    }
}

fn write_text_atomic(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("toml.tmp");
    std::fs::write(&tmp, text).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// "1h02m", "3m20s", "45s".
pub fn fmt_duration(seconds: f64) -> String {
    if !seconds.is_finite() {
        return "?".into();
    }
    let s = seconds.round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}
