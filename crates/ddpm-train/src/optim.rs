//! Adam (Kingma & Ba 2015) exactly as `torch.optim.Adam` computes it, with the state kept by us
//! (so checkpoints hold the moments and resume is exact), global-norm gradient clipping as
//! `tf.clip_by_global_norm` does it (the official DDPM code), and the linear warm-up.
//!
//! Two implementations of each step: a per-tensor loop, and a fused one (libtorch's
//! `_fused_adam_` kernel and `_foreach_*` ops through `ddpm-shim`) that needs a handful of
//! launches instead of several per parameter tensor. Neither reads anything back to the host.

use crate::config::{LrSchedule, OptimConfig};
use ddpm_nets::placement::Placed;
use ddpm_run::{AdamMoments, CheckpointFile};
use tch::nn::VarStore;
use tch::{Kind, Tensor};

/// lr_s = lr min(1, s / warmup): the official code's warm-up, s the 0-based update index.
pub fn warmup_lr(lr: f64, warmup_steps: u64, step: u64) -> f64 {
    if warmup_steps == 0 { lr } else { lr * (step as f64 / warmup_steps as f64).min(1.0) }
}

/// The learning rate of update `step` (0-based) of a run of `total` updates: the warm-up, then
/// the configured schedule (constant, or half a cosine from lr down to 0 at `total`).
pub fn learning_rate(o: &OptimConfig, total: u64, step: u64) -> f64 {
    let warm = warmup_lr(o.lr, o.warmup_steps, step);
    match o.lr_schedule {
        LrSchedule::Constant => warm,
        LrSchedule::Cosine if step < o.warmup_steps || total <= o.warmup_steps => warm,
        LrSchedule::Cosine => {
            let progress =
                ((step - o.warmup_steps) as f64 / (total - o.warmup_steps) as f64).min(1.0);
            o.lr * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
        }
    }
}

#[derive(Debug)]
pub struct Adam {
    pub names: Vec<String>,
    pub params: Vec<Tensor>,
    pub exp_avg: Vec<Tensor>,
    pub exp_avg_sq: Vec<Tensor>,
    /// Per-parameter step counters (f32 scalars on the parameter's device, as
    /// `torch.optim.Adam(fused=True)` keeps `state["step"]`) that the fused kernel reads and
    /// increments.
    state_steps: Vec<Tensor>,
    /// Updates taken so far.
    pub step: u64,
    pub betas: (f64, f64),
    pub eps: f64,
    pub weight_decay: f64,
    pub fused: bool,
}

impl Adam {
    /// Adam over `vs`'s trainable variables, in name order.
    pub fn new(vs: &VarStore, betas: (f64, f64), eps: f64, weight_decay: f64, fused: bool) -> Self {
        let vars = vs.variables();
        let trainable = vs.trainable_variables();
        let mut names: Vec<String> = vars
            .iter()
            .filter(|(_, t)| trainable.iter().any(|p| p.data_ptr() == t.data_ptr()))
            .map(|(k, _)| k.clone())
            .collect();
        names.sort();
        let params: Vec<Tensor> = names.iter().map(|n| vars[n].shallow_clone()).collect();
        let zeros = |p: &Tensor| p.zeros_like().set_requires_grad(false);
        Self {
            exp_avg: params.iter().map(zeros).collect(),
            exp_avg_sq: params.iter().map(zeros).collect(),
            // The fused CUDA kernel reads every list on the parameters' device, the step
            // counters included: each counter is made beside its parameter.
            state_steps: params
                .iter()
                .map(|p| Tensor::zeros([], (Kind::Float, p.device())))
                .collect(),
            names,
            params,
            step: 0,
            betas,
            eps,
            weight_decay,
            fused,
        }
    }

    fn grads(&self) -> Vec<Tensor> {
        self.params.iter().map(Tensor::grad).collect()
    }

    pub fn zero_grad(&mut self) {
        let grads = self.grads();
        // Before the first backward pass there are no gradients to zero.
        if !grads.iter().all(Tensor::defined) {
            for p in &mut self.params {
                p.zero_grad();
            }
        } else if self.fused {
            tch::no_grad(|| ddpm_shim::foreach_zero_(&grads).expect("foreach_zero_"));
        } else {
            for g in &grads {
                let _ = g.shallow_clone().zero_();
            }
        }
    }

    /// Clips gradients to global norm `max` (g <- g max / max(||g||, max)) and returns the
    /// norm before clipping, as a 0-d tensor on the device (no host sync). `max` = 0: no clipping.
    pub fn clip_grad_norm(&self, max: f64) -> Tensor {
        tch::no_grad(|| {
            let grads = self.grads();
            let norms = if self.fused {
                ddpm_shim::foreach_norm(&grads).expect("foreach_norm")
            } else {
                grads.iter().map(|g| g.norm()).collect()
            };
            let total = Tensor::stack(&norms, 0).norm();
            if max > 0.0 {
                let scale = (total.clamp_min(max).reciprocal() * max).to_kind(Kind::Float);
                if self.fused {
                    ddpm_shim::foreach_mul_(&grads, &scale).expect("foreach_mul_");
                } else {
                    for g in &grads {
                        let _ = g.shallow_clone().g_mul_(&scale);
                    }
                }
            }
            total
        })
    }

    /// One Adam update with learning rate `lr`.
    pub fn step(&mut self, lr: f64) {
        let (b1, b2) = self.betas;
        self.step += 1;
        let grads = self.grads();
        tch::no_grad(|| {
            if self.fused {
                ddpm_shim::fused_adam(
                    &self.params,
                    &grads,
                    &self.exp_avg,
                    &self.exp_avg_sq,
                    &self.state_steps,
                    lr,
                    self.betas,
                    self.weight_decay,
                    self.eps,
                )
                .expect("fused Adam");
                return;
            }
            let t = self.step as i32;
            let bias_correction1 = 1.0 - b1.powi(t);
            let bias_correction2_sqrt = (1.0 - b2.powi(t)).sqrt();
            let step_size = lr / bias_correction1;
            for i in 0..self.params.len() {
                let g = if self.weight_decay != 0.0 {
                    &grads[i] + &self.params[i] * self.weight_decay
                } else {
                    grads[i].shallow_clone()
                };
                let _ = self.exp_avg[i].lerp_(&g, 1.0 - b1);
                let _ = self.exp_avg_sq[i].g_mul_scalar_(b2);
                let _ = self.exp_avg_sq[i].g_add_(&(&g * (1.0 - b2) * &g));
                let denom =
                    (self.exp_avg_sq[i].sqrt() / bias_correction2_sqrt).g_add_scalar(self.eps);
                let _ = self.params[i].g_add_(&(&self.exp_avg[i] / denom * -step_size));
            }
        });
        if !self.fused {
            for s in &mut self.state_steps {
                let _ = s.fill_(self.step as f64);
            }
        }
    }

    /// The moments by parameter name, for checkpoints.
    pub fn moments(&self) -> AdamMoments<'_> {
        AdamMoments { names: &self.names, exp_avg: &self.exp_avg, exp_avg_sq: &self.exp_avg_sq }
    }

    /// Restores the moments and the update count from a checkpoint.
    pub fn load_state(&mut self, file: &CheckpointFile) -> ddpm_run::Result<()> {
        file.load_moments(&self.names, &self.exp_avg, &self.exp_avg_sq)?;
        self.set_step(file.step());
        Ok(())
    }

    /// Sets the update count and the fused kernel's per-parameter counters to `step`.
    pub fn set_step(&mut self, step: u64) {
        self.step = step;
        for s in &mut self.state_steps {
            let _ = s.fill_(step as f64);
        }
    }
}

impl Placed for Adam {
    fn placed_tensors(&self) -> Vec<(String, &Tensor)> {
        let mut v = Vec::with_capacity(4 * self.names.len());
        for (i, n) in self.names.iter().enumerate() {
            v.push((format!("param/{n}"), &self.params[i]));
            v.push((format!("exp_avg/{n}"), &self.exp_avg[i]));
            v.push((format!("exp_avg_sq/{n}"), &self.exp_avg_sq[i]));
            v.push((format!("step/{n}"), &self.state_steps[i]));
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, nn};

    /// Deterministic values without libtorch's (process-wide) generator.
    fn setup(fused: bool) -> (VarStore, Adam) {
        let vs = VarStore::new(Device::Cpu);
        let a = vs.root().var("a", &[5, 4], nn::Init::Const(0.0));
        let b = vs.root().var("b", &[7], nn::Init::Const(0.0));
        tch::no_grad(|| {
            a.shallow_clone()
                .copy_(&(Tensor::arange(20, (Kind::Float, Device::Cpu)) * 1.3).sin().view([5, 4]));
            b.shallow_clone().copy_(&(Tensor::arange(7, (Kind::Float, Device::Cpu)) * 0.7).cos());
        });
        let adam = Adam::new(&vs, (0.9, 0.999), 1e-8, 0.0, fused);
        (vs, adam)
    }

    fn run(fused: bool, steps: usize) -> Vec<Tensor> {
        let (vs, mut adam) = setup(fused);
        for s in 0..steps {
            adam.zero_grad();
            let vars = vs.variables();
            let loss = (&vars["a"] * (s as f64 + 1.0)).square().sum(Kind::Float)
                + vars["b"].sin().sum(Kind::Float);
            loss.backward();
            let _ = adam.clip_grad_norm(1.0);
            adam.step(warmup_lr(2e-2, 3, s as u64));
        }
        adam.params.iter().map(|p| p.detach().copy()).collect()
    }

    #[test]
    fn fused_and_per_tensor_adam_agree() {
        let (a, b) = (run(false, 20), run(true, 20));
        for (x, y) in a.iter().zip(&b) {
            let d = (x - y).abs().max().double_value(&[]);
            assert!(d < 1e-6, "max diff {d}");
        }
    }

    /// Regression: the step counters were made on the CPU whatever the parameters' device, which
    /// `_fused_adam_` on CUDA rejects. Every state tensor now sits with its parameter.
    #[test]
    fn every_state_tensor_sits_on_the_parameters_device() {
        use ddpm_nets::placement::misplaced;
        let (_vs, adam) = setup(true);
        assert_eq!(adam.placed_tensors().len(), 4 * 2);
        assert!(misplaced(&adam, Device::Cpu, Some(Kind::Float)).is_empty());
        // Asked about another device, the check names every one of them.
        assert_eq!(misplaced(&adam, Device::Cuda(0), None).len(), 8);
        for (p, s) in adam.params.iter().zip(&adam.state_steps) {
            assert_eq!(s.device(), p.device());
            assert_eq!(s.size(), Vec::<i64>::new());
        }
    }

    #[test]
    fn cosine_decays_from_lr_after_warmup_to_zero_at_the_end() {
        let o = OptimConfig {
            lr: 1e-3,
            warmup_steps: 100,
            lr_schedule: LrSchedule::Cosine,
            ..OptimConfig::default()
        };
        assert_eq!(learning_rate(&o, 1100, 50), 5e-4);
        assert_eq!(learning_rate(&o, 1100, 100), 1e-3);
        assert!((learning_rate(&o, 1100, 600) - 5e-4).abs() < 1e-15);
        assert!(learning_rate(&o, 1100, 1099) < 1e-7);
        assert_eq!(learning_rate(&o, 1100, 5000), 0.0);
        let c = OptimConfig { lr_schedule: LrSchedule::Constant, ..o };
        assert_eq!(learning_rate(&c, 1100, 1099), 1e-3);
    }

    #[test]
    fn warmup_is_linear_then_flat() {
        assert_eq!(warmup_lr(2e-4, 5000, 0), 0.0);
        assert!((warmup_lr(2e-4, 5000, 2500) - 1e-4).abs() < 1e-18);
        assert_eq!(warmup_lr(2e-4, 5000, 9000), 2e-4);
        assert_eq!(warmup_lr(2e-4, 0, 0), 2e-4);
    }

    #[test]
    fn clipping_scales_to_the_threshold_and_reports_the_norm() {
        for fused in [false, true] {
            let (vs, adam) = setup(fused);
            let vars = vs.variables();
            let loss = vars["a"].sum(Kind::Float) * 10.0 + vars["b"].sum(Kind::Float) * 2.0;
            loss.backward();
            // Gradients 10 on 20 entries and 2 on 7: norm sqrt(2000 + 28).
            let n = adam.clip_grad_norm(1.0).double_value(&[]);
            assert!((n - 2028f64.sqrt()).abs() < 1e-4, "{n}");
            let after = (vars["a"].grad().square().sum(Kind::Float)
                + vars["b"].grad().square().sum(Kind::Float))
            .sqrt();
            assert!((after.double_value(&[]) - 1.0).abs() < 1e-5, "{after}");
        }
    }
}
