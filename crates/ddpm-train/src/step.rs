//! One training step of Algorithm 1 (Ho et al. 2020, arXiv:2006.11239), the only copy of it:
//! the trainer, `ddpm-bench` and the criterion benchmark all call [`TrainStep::run`], so what
//! is measured is what users run.
//!
//! Given x0 (and t, importance weights and labels) on the device: draw eps, take the loss of
//! the configured objective (L_simple, eq. 14, by default) under bf16 autocast on CUDA when
//! asked, backpropagate, average the gradients over ranks (data parallelism, after
//! [`TrainStep::replicate`]), clip the global gradient norm, take an Adam step and an EMA step.
//! Nothing is read back to the host.
//!
//! Data parallelism, as DistributedDataParallel does it: every rank holds the same weights,
//! takes the same step on the mean gradient of the global batch, and so stays identical.
//! Rank r's batch holds rows r, r + W, r + 2W, ... of the global batch
//! ([`ddpm_data::loader::global_row`]); eps of global row k comes from a counter-based stream
//! of (step seed, k) ([`ddpm_sample::noise::ImageNoise::for_rows`]), so each rank draws only
//! its rows, at its own cost, and W ranks draw exactly what one process would. The dropout
//! masks are the exception: each rank draws its own from (seed, rank), as DDP does (drawing
//! the global masks on every rank would multiply their cost by W), so runs with dropout agree
//! with one process in distribution, not bit for bit.

use crate::config::{Precision, RunConfig};
use crate::error::{Result, TrainError};
use crate::optim::Adam;
use crate::streams::Stream;
use ddpm_core::rng::derive_seed;
use ddpm_core::tensor::TensorDiffusion;
use ddpm_dist::{Dist, GradReducer};
use ddpm_nets::placement::{Placed, debug_check_placement};
use ddpm_nets::{Denoiser, Ema};
use ddpm_sample::noise::ImageNoise;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

/// The network, its EMA, the optimiser and the diffusion: everything a step updates or reads.
pub struct TrainStep {
    pub vs: VarStore,
    pub net: Denoiser,
    pub ema_vs: VarStore,
    pub ema_net: Denoiser,
    pub ema: Ema,
    pub adam: Adam,
    pub diffusion: TensorDiffusion,
    /// bf16 autocast for the forward and backward passes (CUDA only).
    pub autocast: bool,
    /// Global-norm clipping threshold (0: none).
    pub grad_clip: f64,
    /// The process group ([`Dist::single`] until [`TrainStep::replicate`]).
    pub dist: Dist,
    /// Averages the gradients over ranks; `None` without a group (no cost to one process).
    reducer: Option<GradReducer>,
}

impl std::fmt::Debug for TrainStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrainStep").field("updates", &self.adam.step).finish()
    }
}

/// A batch on the device.
#[derive(Debug)]
pub struct StepInput<'a> {
    /// Data x0, [B, ...] in [-1, 1].
    pub x0: &'a Tensor,
    /// Steps t, [B] int64.
    pub t: &'a Tensor,
    /// Importance weights of the per-example losses, [B] f32 (None: all 1).
    pub weights: Option<&'a Tensor>,
    /// Class labels (conditional models), [B] int64, the null class where dropped.
    pub y: Option<&'a Tensor>,
}

/// What a step leaves on the device for the metrics.
#[derive(Debug)]
pub struct StepOutput {
    /// The (weighted) batch mean loss that was minimised, 0-d.
    pub loss: Tensor,
    /// Per-example losses, [B].
    pub per_example: Tensor,
    /// The global gradient norm before clipping, 0-d.
    pub grad_norm: Tensor,
}

impl TrainStep {
    /// Builds the network (initialised from the run seed), its EMA copy, Adam and the
    /// diffusion's arrays on `device`, as `config` describes.
    pub fn new(config: &RunConfig, device: Device) -> Result<Self> {
        let learned = config.diffusion.model_var.is_learned();
        let (vs, net, ema_vs, ema_net) = {
            let _rng = ddpm_nets::torch_rng_lock();
            tch::manual_seed(Stream::Init.seed(config.seed, &[]) as i64);
            let vs = VarStore::new(device);
            let net = Denoiser::new(&vs.root(), &config.model, learned)?;
            let ema_vs = VarStore::new(device);
            let ema_net = Denoiser::new(&ema_vs.root(), &config.model, learned)?;
            (vs, net, ema_vs, ema_net)
        };
        let o = &config.optim;
        let mut ema = Ema::new(&vs, &ema_vs, o.ema_decay, o.ema_warmup);
        ema.foreach = o.fused;
        let adam = Adam::new(&vs, (o.beta1, o.beta2), o.eps, o.weight_decay, o.fused);
        let diffusion = TensorDiffusion::from_config(&config.diffusion, device).map_err(|e| {
            TrainError::Config(crate::config::ConfigError(format!("diffusion: {e}")))
        })?;
        let step = Self {
            vs,
            net,
            ema_vs,
            ema_net,
            ema,
            adam,
            diffusion,
            autocast: config.train.precision == Precision::Bf16 && device.is_cuda(),
            grad_clip: o.grad_clip,
            dist: Dist::single(device),
            reducer: None,
        };
        debug_check_placement(&step, "training state", device);
        Ok(step)
    }

    /// Joins `dist`'s group: every rank takes rank 0's state (weights, buffers, EMA and Adam's
    /// moments, whether fresh or resumed on rank 0; DDP's `_sync_module_states`), and from now
    /// on [`TrainStep::run`] averages the gradients over ranks. The caller must also give every
    /// rank rank 0's update count (see [`TrainStep::set_updates`]).
    pub fn replicate(&mut self, dist: Dist) -> Result<()> {
        if dist.device() != self.vs.device() {
            return Err(TrainError::Unsupported(format!(
                "the process group runs on {:?} but the network on {:?}",
                dist.device(),
                self.vs.device()
            )));
        }
        if dist.backend().is_some() {
            dist.broadcast_parameters(&self.state_tensors())?;
            self.reducer = Some(GradReducer::new(&self.adam.params)?);
        }
        self.dist = dist;
        Ok(())
    }

    /// Every tensor of the training state, in one order on every rank: the network's and the
    /// EMA's variables by name, then Adam's moments.
    fn state_tensors(&self) -> Vec<Tensor> {
        let by_name = |vs: &VarStore| {
            let mut v: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v.into_iter().map(|(_, t)| t)
        };
        let mut all: Vec<Tensor> = by_name(&self.vs).chain(by_name(&self.ema_vs)).collect();
        all.extend(self.adam.exp_avg.iter().map(Tensor::shallow_clone));
        all.extend(self.adam.exp_avg_sq.iter().map(Tensor::shallow_clone));
        all
    }

    /// Sets Adam's update count (and its per-parameter step counters) to `updates`, e.g. the
    /// count rank 0 resumed from.
    pub fn set_updates(&mut self, updates: u64) {
        self.adam.set_step(updates);
    }

    /// One step: eps from [`Stream::Eps`]'s counter-based per-row streams of `seed` (the
    /// step's seed), then the dropout masks from libtorch's generator seeded by (seed, rank)
    /// (under the process-wide RNG lock, so the step reproduces exactly), then loss, backward,
    /// the gradient mean over ranks, clipping, Adam with learning rate `lr`, EMA. With W ranks,
    /// `seed` must be the same on every rank: rank r's rows are rows r, r + W, ... of the
    /// global batch, and each draws only its own, at its own cost, the numbers one process
    /// would draw for them. Fails only when a collective fails (a rank died or timed out).
    pub fn run(&mut self, input: &StepInput, seed: u64, lr: f64) -> Result<StepOutput> {
        let _rng = ddpm_nets::torch_rng_lock();
        let (rank, world) = (self.dist.rank() as u64, self.dist.world_size() as u64);
        let size = input.x0.size();
        let eps = ImageNoise::for_rows(
            Stream::Eps.seed(seed, &[]),
            rank,
            world,
            size[0] as usize,
            &size[1..],
            input.x0.device(),
        )
        .draw()
        .to_kind(input.x0.kind());
        tch::manual_seed(derive_seed(seed, &[rank]) as i64);
        let terms = {
            let _autocast = self.autocast.then(|| {
                ddpm_shim::AutocastGuard::new(input.x0.device(), Kind::BFloat16)
                    .expect("bf16 autocast")
            });
            let net = &self.net;
            self.diffusion.training_losses(
                |x_t, tm| net.forward_t(x_t, tm, input.y, true).to_kind(Kind::Float),
                input.x0,
                input.t,
                &eps,
            )
        };
        let loss = match input.weights {
            Some(w) => (&terms.loss * w).mean(Kind::Float),
            None => terms.loss.mean(Kind::Float),
        };
        self.adam.zero_grad();
        loss.backward();
        if let Some(reducer) = &self.reducer {
            reducer.all_reduce_mean(&self.dist, &self.adam.params)?;
        }
        let grad_norm = self.adam.clip_grad_norm(self.grad_clip);
        self.adam.step(lr);
        self.ema.update(self.adam.step - 1);
        Ok(StepOutput { loss: loss.detach(), per_example: terms.loss.detach(), grad_norm })
    }

    /// Whether every parameter is finite (one reduction and one host read).
    pub fn weights_finite(&self) -> bool {
        tch::no_grad(|| {
            let norms = ddpm_shim::foreach_norm(&self.adam.params).expect("foreach_norm");
            Tensor::stack(&norms, 0).isfinite().all().int64_value(&[]) == 1
        })
    }
}

impl Placed for TrainStep {
    fn placed_tensors(&self) -> Vec<(String, &Tensor)> {
        let mut v = self.adam.placed_tensors();
        v.extend(self.ema.placed_tensors());
        v.extend(self.diffusion.placed_tensors());
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ddpm_nets::placement::misplaced;

    fn tiny() -> RunConfig {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/tiny.toml");
        RunConfig::load(&path).unwrap()
    }

    /// Every state tensor of training (Adam's parameters, moments and step counters, the EMA
    /// shadows, the schedule arrays) is made where it is used: asked about the device it was
    /// built on, none is misplaced; asked about another, every one is named.
    #[test]
    fn every_state_tensor_is_on_the_training_device() {
        let step = TrainStep::new(&tiny(), Device::Cpu).unwrap();
        let params = step.adam.params.len();
        let all = step.placed_tensors().len();
        assert_eq!(all, 4 * params + step.ema.num_averaged() + 16);
        assert!(misplaced(&step, Device::Cpu, None).is_empty());
        assert_eq!(misplaced(&step, Device::Cuda(0), None).len(), all);
    }

    /// The same seed and batch give the same step; the EMA moves towards the weights.
    #[test]
    fn a_step_is_reproducible_and_updates_weights_and_ema() {
        let run = || {
            let mut step = TrainStep::new(&tiny(), Device::Cpu).unwrap();
            let x0 =
                (Tensor::arange(256, (Kind::Float, Device::Cpu)) * 0.37).sin().view([4, 1, 8, 8]);
            let t = Tensor::from_slice(&[1i64, 20, 50, 99]);
            let copies = |ts: &[Tensor]| ts.iter().map(Tensor::copy).collect::<Vec<_>>();
            let (params, shadows) = (copies(&step.adam.params), copies(step.ema.shadows()));
            let out =
                step.run(&StepInput { x0: &x0, t: &t, weights: None, y: None }, 7, 1e-3).unwrap();
            assert_eq!(out.per_example.size(), vec![4]);
            // The zero-initialised output convolution is what the first step can move.
            let moved =
                |a: &[Tensor], b: &[Tensor]| a.iter().zip(b).filter(|(x, y)| !x.equal(y)).count();
            assert!(moved(&params, &step.adam.params) > 0, "Adam moved nothing");
            assert!(moved(&shadows, step.ema.shadows()) > 0, "the EMA moved nothing");
            (out.loss.double_value(&[]), copies(&step.adam.params))
        };
        let (la, pa) = run();
        let (lb, pb) = run();
        assert_eq!(la, lb);
        assert!(pa.iter().zip(&pb).all(|(x, y)| x.equal(y)));
    }
}
