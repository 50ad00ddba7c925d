//! Exponential moving average of the parameters, theta_ema <- d theta_ema + (1 - d) theta,
//! every step (Ho et al. 2020, Appendix B: d = 0.9999). Only trainable parameters are
//! averaged: buffers are copied, and schedule arrays never live in the network.

use tch::nn::VarStore;
use tch::{Tensor, no_grad};

/// Pairs of (parameter, shadow) by name, in a fixed (sorted) order.
#[derive(Debug)]
pub struct Ema {
    pub decay: f64,
    /// TF's `ExponentialMovingAverage(num_updates)` warm-up: d_n = min(d, (1 + n)/(10 + n)).
    pub warmup: bool,
    /// One `_foreach_lerp_` call for all parameters instead of one lerp per tensor.
    pub foreach: bool,
    /// Names of the averaged parameters; `params[i]` is averaged into `shadows[i]`.
    names: Vec<String>,
    params: Vec<Tensor>,
    shadows: Vec<Tensor>,
    buffers: Vec<(Tensor, Tensor)>,
}

impl Ema {
    /// Tracks `model`'s parameters in `shadow`, a var store of the same network.
    /// `shadow` starts as a copy of `model`.
    pub fn new(model: &VarStore, shadow: &VarStore, decay: f64, warmup: bool) -> Self {
        let m = model.variables();
        let s = shadow.variables();
        let mut names: Vec<&String> = m.keys().collect();
        names.sort();
        let trainable: Vec<Tensor> = model.trainable_variables();
        let is_trainable = |t: &Tensor| trainable.iter().any(|p| p.data_ptr() == t.data_ptr());
        let (mut averaged, mut params, mut shadows, mut buffers) = (vec![], vec![], vec![], vec![]);
        for name in names {
            let (p, sh) = (&m[name], s.get(name).expect("shadow has the same variables"));
            if is_trainable(p) {
                averaged.push(name.clone());
                params.push(p.shallow_clone());
                shadows.push(sh.shallow_clone());
            } else {
                buffers.push((p.shallow_clone(), sh.shallow_clone()));
            }
        }
        let ema = Self { decay, warmup, foreach: false, names: averaged, params, shadows, buffers };
        ema.copy_from_model();
        ema
    }

    /// The decay applied at update number `n` (0-based).
    pub fn decay_at(&self, n: u64) -> f64 {
        if self.warmup { self.decay.min((1.0 + n as f64) / (10.0 + n as f64)) } else { self.decay }
    }

    /// Sets every shadow to the current parameters.
    pub fn copy_from_model(&self) {
        no_grad(|| {
            for (p, s) in self.params.iter().zip(&self.shadows) {
                s.shallow_clone().copy_(p);
            }
            for (p, s) in &self.buffers {
                s.shallow_clone().copy_(p);
            }
        });
    }

    /// One EMA step with the decay of update number `n`.
    pub fn update(&self, n: u64) {
        let w = 1.0 - self.decay_at(n);
        no_grad(|| {
            if self.foreach && !self.params.is_empty() {
                ddpm_shim::foreach_lerp_(&self.shadows, &self.params, w).expect("foreach_lerp_");
            } else {
                for (p, s) in self.params.iter().zip(&self.shadows) {
                    let _ = s.shallow_clone().lerp_(p, w);
                }
            }
            for (p, s) in &self.buffers {
                s.shallow_clone().copy_(p);
            }
        });
    }

    pub fn num_averaged(&self) -> usize {
        self.params.len()
    }

    /// Shadow tensors in parameter order.
    pub fn shadows(&self) -> &[Tensor] {
        &self.shadows
    }

    /// Parameter tensors in the same order as [`Ema::shadows`].
    pub fn params(&self) -> &[Tensor] {
        &self.params
    }

    /// (name, shadow) of every averaged parameter.
    pub fn named_shadows(&self) -> impl Iterator<Item = (&str, &Tensor)> {
        self.names.iter().map(String::as_str).zip(&self.shadows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, nn};

    #[test]
    fn ema_is_the_closed_form_average() {
        let model = VarStore::new(Device::Cpu);
        let shadow = VarStore::new(Device::Cpu);
        let w = model.root().var("w", &[3], nn::Init::Const(1.0));
        let _ = shadow.root().var("w", &[3], nn::Init::Const(0.0));
        let ema = Ema::new(&model, &shadow, 0.9, false);
        assert_eq!(shadow.variables()["w"].double_value(&[0]), 1.0, "starts as a copy");
        no_grad(|| {
            let _ = w.shallow_clone().fill_(2.0);
        });
        ema.update(0);
        ema.update(1);
        // 1 -> 0.9*1 + 0.1*2 = 1.1 -> 0.9*1.1 + 0.1*2 = 1.19
        let v = shadow.variables()["w"].double_value(&[1]);
        assert!((v - 1.19).abs() < 1e-6, "{v}");
        assert_eq!(ema.num_averaged(), 1);
    }

    #[test]
    fn foreach_update_equals_the_per_tensor_update() {
        let run = |foreach: bool| {
            let model = VarStore::new(Device::Cpu);
            let shadow = VarStore::new(Device::Cpu);
            let w = model.root().var("w", &[4], nn::Init::Const(1.0));
            let _ = shadow.root().var("w", &[4], nn::Init::Const(0.0));
            let mut ema = Ema::new(&model, &shadow, 0.99, true);
            ema.foreach = foreach;
            for n in 0..5 {
                no_grad(|| {
                    let _ = w.shallow_clone().g_add_scalar_(0.5);
                });
                ema.update(n);
            }
            shadow.variables()["w"].double_value(&[2])
        };
        assert_eq!(run(false), run(true));
    }

    #[test]
    fn warmup_decay_follows_tf() {
        let model = VarStore::new(Device::Cpu);
        let shadow = VarStore::new(Device::Cpu);
        let ema = Ema::new(&model, &shadow, 0.9999, true);
        assert_eq!(ema.decay_at(0), 0.1);
        assert_eq!(ema.decay_at(10_000_000), 0.9999);
    }

    #[test]
    fn buffers_are_copied_not_averaged() {
        let model = VarStore::new(Device::Cpu);
        let shadow = VarStore::new(Device::Cpu);
        let b = model.root().zeros_no_train("buf", &[2]);
        let _ = shadow.root().zeros_no_train("buf", &[2]);
        let ema = Ema::new(&model, &shadow, 0.9, false);
        no_grad(|| {
            let _ = b.shallow_clone().fill_(5.0);
        });
        ema.update(0);
        assert_eq!(shadow.variables()["buf"].double_value(&[0]), 5.0);
        assert_eq!(ema.num_averaged(), 0);
    }
}
