//! The diffusion math of [`crate::GaussianDiffusion`] on libtorch tensors (feature `tch`).
//!
//! Arrays stay f64 on the device; each lookup gathers the batch's timesteps and casts to the
//! data's dtype, as improved-diffusion's `_extract_into_tensor` does, so f32 training matches
//! the reference and f64 tests can check the math to 1e-12.

mod losses;

pub use losses::{
    BpdTerms, LossTerms, approx_standard_normal_cdf, discretized_gaussian_log_likelihood,
    mean_flat, normal_kl,
};

use crate::config::DiffusionConfig;
use crate::diffusion::{GaussianDiffusion, LossKind, ModelMean, ModelVar};
use crate::error::Result;
use tch::{Device, Kind, Tensor};

/// p_theta(x_{t-1} | x_t) for a batch: mean, variance, log variance and the x0 prediction.
#[derive(Debug)]
pub struct TensorPMeanVariance {
    pub mean: Tensor,
    pub variance: Tensor,
    pub log_variance: Tensor,
    pub x0_pred: Tensor,
}

/// How the network is read and trained: the options of a [`DiffusionConfig`] beside its schedule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Parameterisation {
    pub mean: ModelMean,
    pub var: ModelVar,
    pub loss: LossKind,
    pub hybrid_lambda: f64,
    pub min_snr_gamma: Option<f64>,
    pub rescale_timesteps: bool,
}

impl From<&DiffusionConfig> for Parameterisation {
    fn from(c: &DiffusionConfig) -> Self {
        Self {
            mean: c.model_mean,
            var: c.model_var,
            loss: c.loss,
            hybrid_lambda: c.hybrid_lambda,
            min_snr_gamma: c.min_snr_gamma,
            rescale_timesteps: c.rescale_timesteps,
        }
    }
}

/// A [`GaussianDiffusion`] with its arrays on a device.
#[derive(Debug)]
pub struct TensorDiffusion {
    /// The f64 arrays this was built from.
    pub diffusion: GaussianDiffusion,
    pub param: Parameterisation,
    pub device: Device,
    alphas_cumprod: Tensor,
    alphas_cumprod_prev: Tensor,
    sqrt_alphas_cumprod: Tensor,
    sqrt_one_minus_alphas_cumprod: Tensor,
    log_one_minus_alphas_cumprod: Tensor,
    sqrt_recip_alphas_cumprod: Tensor,
    sqrt_recipm1_alphas_cumprod: Tensor,
    posterior_variance: Tensor,
    posterior_log_variance_clipped: Tensor,
    posterior_mean_coef1: Tensor,
    posterior_mean_coef2: Tensor,
    fixedlarge_variance: Tensor,
    fixedlarge_log_variance: Tensor,
    log_betas: Tensor,
    /// Per-t min-SNR weight of the MSE term (ones without min-SNR weighting).
    mse_weights: Tensor,
    /// The (possibly rescaled) time value the network sees at each step.
    model_timesteps: Tensor,
}

/// A per-example vector [B] cast to `like`'s dtype and shaped [B, 1, ..., 1] to broadcast against it.
pub fn per_example(v: &Tensor, like: &Tensor) -> Tensor {
    let mut shape = vec![-1i64];
    shape.extend(std::iter::repeat_n(1, like.dim().saturating_sub(1)));
    v.to_kind(like.kind()).view(shape.as_slice())
}

fn arr(v: &[f64], device: Device) -> Tensor {
    Tensor::from_slice(v).to_device(device)
}

impl TensorDiffusion {
    pub fn new(diffusion: GaussianDiffusion, param: Parameterisation, device: Device) -> Self {
        let d = &diffusion;
        let t = d.num_timesteps;
        let mse_weights: Vec<f64> = match param.min_snr_gamma {
            Some(g) => (0..t).map(|i| d.min_snr_weight(param.mean, i, g)).collect(),
            None => vec![1.0; t],
        };
        let model_timesteps: Vec<f64> =
            (0..t).map(|i| d.model_t(i, param.rescale_timesteps)).collect();
        Self {
            alphas_cumprod: arr(&d.alphas_cumprod, device),
            alphas_cumprod_prev: arr(&d.alphas_cumprod_prev, device),
            sqrt_alphas_cumprod: arr(&d.sqrt_alphas_cumprod, device),
            sqrt_one_minus_alphas_cumprod: arr(&d.sqrt_one_minus_alphas_cumprod, device),
            log_one_minus_alphas_cumprod: arr(&d.log_one_minus_alphas_cumprod, device),
            sqrt_recip_alphas_cumprod: arr(&d.sqrt_recip_alphas_cumprod, device),
            sqrt_recipm1_alphas_cumprod: arr(&d.sqrt_recipm1_alphas_cumprod, device),
            posterior_variance: arr(&d.posterior_variance, device),
            posterior_log_variance_clipped: arr(&d.posterior_log_variance_clipped, device),
            posterior_mean_coef1: arr(&d.posterior_mean_coef1, device),
            posterior_mean_coef2: arr(&d.posterior_mean_coef2, device),
            fixedlarge_variance: arr(&d.fixedlarge_variance, device),
            fixedlarge_log_variance: arr(&d.fixedlarge_log_variance, device),
            log_betas: arr(&d.log_betas, device),
            mse_weights: arr(&mse_weights, device),
            model_timesteps: arr(&model_timesteps, device),
            diffusion,
            param,
            device,
        }
    }

    /// From a validated config (its full, unrespaced process).
    pub fn from_config(config: &DiffusionConfig, device: Device) -> Result<Self> {
        Ok(Self::new(config.build()?, config.into(), device))
    }

    /// The same parameterisation on the process respaced to a spacing string.
    pub fn respaced_str(&self, spec: &str) -> Result<Self> {
        Ok(Self::new(self.diffusion.respaced_str(spec)?, self.param, self.device))
    }

    pub fn num_timesteps(&self) -> usize {
        self.diffusion.num_timesteps
    }

    /// Every array this holds on its device, by name (for placement checks).
    pub fn arrays(&self) -> Vec<(&'static str, &Tensor)> {
        vec![
            ("alphas_cumprod", &self.alphas_cumprod),
            ("alphas_cumprod_prev", &self.alphas_cumprod_prev),
            ("sqrt_alphas_cumprod", &self.sqrt_alphas_cumprod),
            ("sqrt_one_minus_alphas_cumprod", &self.sqrt_one_minus_alphas_cumprod),
            ("log_one_minus_alphas_cumprod", &self.log_one_minus_alphas_cumprod),
            ("sqrt_recip_alphas_cumprod", &self.sqrt_recip_alphas_cumprod),
            ("sqrt_recipm1_alphas_cumprod", &self.sqrt_recipm1_alphas_cumprod),
            ("posterior_variance", &self.posterior_variance),
            ("posterior_log_variance_clipped", &self.posterior_log_variance_clipped),
            ("posterior_mean_coef1", &self.posterior_mean_coef1),
            ("posterior_mean_coef2", &self.posterior_mean_coef2),
            ("fixedlarge_variance", &self.fixedlarge_variance),
            ("fixedlarge_log_variance", &self.fixedlarge_log_variance),
            ("log_betas", &self.log_betas),
            ("mse_weights", &self.mse_weights),
            ("model_timesteps", &self.model_timesteps),
        ]
    }

    /// `arr[t]` for a batch of timesteps, cast to `like`'s dtype and shaped [B, 1, ..., 1]
    /// to broadcast against `like`.
    pub fn extract(arr: &Tensor, t: &Tensor, like: &Tensor) -> Tensor {
        per_example(&arr.index_select(0, t), like)
    }

    /// The time values the network is given for a batch of steps of this process (float).
    pub fn model_timesteps(&self, t: &Tensor) -> Tensor {
        self.model_timesteps.index_select(0, t).to_kind(Kind::Float)
    }

    /// The network's time input for a batch at (possibly fractional) step `t` of this process
    /// ([`GaussianDiffusion::network_time`]), float, on this device.
    pub fn network_time(&self, t: f64, batch: i64) -> Tensor {
        let value = self.diffusion.network_time(t, self.param.rescale_timesteps);
        Tensor::full([batch], value, (Kind::Float, self.device))
    }

    /// A batch of identical timesteps `t` (int64) on this device.
    pub fn full_t(&self, batch: i64, t: usize) -> Tensor {
        Tensor::full([batch], t as i64, (Kind::Int64, self.device))
    }

    /// abar_t gathered for a batch, shaped like `like`.
    pub fn abar(&self, t: &Tensor, like: &Tensor) -> Tensor {
        Self::extract(&self.alphas_cumprod, t, like)
    }

    /// abar_{t-1} gathered for a batch (1 at t = 0).
    pub fn abar_prev(&self, t: &Tensor, like: &Tensor) -> Tensor {
        Self::extract(&self.alphas_cumprod_prev, t, like)
    }

    /// x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, eq. (4).
    pub fn q_sample(&self, x0: &Tensor, t: &Tensor, eps: &Tensor) -> Tensor {
        Self::extract(&self.sqrt_alphas_cumprod, t, x0) * x0
            + Self::extract(&self.sqrt_one_minus_alphas_cumprod, t, x0) * eps
    }

    /// Mean, variance and log variance of q(x_t | x0).
    pub fn q_mean_variance(&self, x0: &Tensor, t: &Tensor) -> (Tensor, Tensor, Tensor) {
        let mean = Self::extract(&self.sqrt_alphas_cumprod, t, x0) * x0;
        let lv = Self::extract(&self.log_one_minus_alphas_cumprod, t, x0).expand_as(x0);
        (mean, lv.exp(), lv)
    }

    /// q(x_{t-1} | x_t, x0) = N(mu~_t, beta~_t), eqs. (6)-(7): (mean, variance, clipped log variance).
    pub fn q_posterior_mean_variance(
        &self,
        x0: &Tensor,
        x_t: &Tensor,
        t: &Tensor,
    ) -> (Tensor, Tensor, Tensor) {
        let mean = Self::extract(&self.posterior_mean_coef1, t, x_t) * x0
            + Self::extract(&self.posterior_mean_coef2, t, x_t) * x_t;
        let var = Self::extract(&self.posterior_variance, t, x_t).expand_as(x_t);
        let lv = Self::extract(&self.posterior_log_variance_clipped, t, x_t).expand_as(x_t);
        (mean, var, lv)
    }

    /// x0 = sqrt(1/abar) x_t - sqrt(1/abar - 1) eps.
    pub fn x0_from_eps(&self, x_t: &Tensor, t: &Tensor, eps: &Tensor) -> Tensor {
        Self::extract(&self.sqrt_recip_alphas_cumprod, t, x_t) * x_t
            - Self::extract(&self.sqrt_recipm1_alphas_cumprod, t, x_t) * eps
    }

    /// eps = (sqrt(1/abar) x_t - x0) / sqrt(1/abar - 1).
    pub fn eps_from_x0(&self, x_t: &Tensor, t: &Tensor, x0: &Tensor) -> Tensor {
        (Self::extract(&self.sqrt_recip_alphas_cumprod, t, x_t) * x_t - x0)
            / Self::extract(&self.sqrt_recipm1_alphas_cumprod, t, x_t)
    }

    /// v = sqrt(abar) eps - sqrt(1 - abar) x0.
    pub fn v_from_x0_eps(&self, x0: &Tensor, t: &Tensor, eps: &Tensor) -> Tensor {
        Self::extract(&self.sqrt_alphas_cumprod, t, x0) * eps
            - Self::extract(&self.sqrt_one_minus_alphas_cumprod, t, x0) * x0
    }

    /// x0 = sqrt(abar) x_t - sqrt(1 - abar) v.
    pub fn x0_from_v(&self, x_t: &Tensor, t: &Tensor, v: &Tensor) -> Tensor {
        Self::extract(&self.sqrt_alphas_cumprod, t, x_t) * x_t
            - Self::extract(&self.sqrt_one_minus_alphas_cumprod, t, x_t) * v
    }

    /// eps = sqrt(1 - abar) x_t + sqrt(abar) v.
    pub fn eps_from_v(&self, x_t: &Tensor, t: &Tensor, v: &Tensor) -> Tensor {
        Self::extract(&self.sqrt_one_minus_alphas_cumprod, t, x_t) * x_t
            + Self::extract(&self.sqrt_alphas_cumprod, t, x_t) * v
    }

    /// Splits a network output into its mean part and, for learned variances, its variance part.
    pub fn split_output(&self, output: &Tensor, channels: i64) -> (Tensor, Option<Tensor>) {
        if self.param.var.is_learned() {
            let parts = output.split_with_sizes([channels, channels], 1);
            let mut it = parts.into_iter();
            (it.next().unwrap(), it.next())
        } else {
            (output.shallow_clone(), None)
        }
    }

    /// The x0 prediction implied by the mean part of a network output.
    pub fn x0_from_output(&self, x_t: &Tensor, t: &Tensor, output: &Tensor) -> Tensor {
        match self.param.mean {
            ModelMean::Eps => self.x0_from_eps(x_t, t, output),
            ModelMean::X0 => output.shallow_clone(),
            ModelMean::V => self.x0_from_v(x_t, t, output),
        }
    }

    /// The eps prediction implied by the mean part of a network output.
    pub fn eps_from_output(&self, x_t: &Tensor, t: &Tensor, output: &Tensor) -> Tensor {
        match self.param.mean {
            ModelMean::Eps => output.shallow_clone(),
            ModelMean::X0 => self.eps_from_x0(x_t, t, output),
            ModelMean::V => self.eps_from_v(x_t, t, output),
        }
    }

    /// (variance, log variance) of p(x_{t-1} | x_t) for the configured variance type.
    pub fn model_variance(
        &self,
        t: &Tensor,
        x_t: &Tensor,
        var_output: Option<&Tensor>,
    ) -> (Tensor, Tensor) {
        let lv = match self.param.var {
            ModelVar::FixedSmall => {
                Self::extract(&self.posterior_log_variance_clipped, t, x_t).expand_as(x_t)
            }
            ModelVar::FixedLarge => {
                let v = Self::extract(&self.fixedlarge_variance, t, x_t).expand_as(x_t);
                let lv = Self::extract(&self.fixedlarge_log_variance, t, x_t).expand_as(x_t);
                return (v, lv);
            }
            ModelVar::Learned => var_output.expect("learned variance output").shallow_clone(),
            ModelVar::LearnedRange => {
                let v = var_output.expect("learned_range variance output");
                let min_log = Self::extract(&self.posterior_log_variance_clipped, t, x_t);
                let max_log = Self::extract(&self.log_betas, t, x_t);
                let frac = (v + 1.0) / 2.0;
                &frac * max_log + (1.0 - &frac) * min_log
            }
        };
        if self.param.var == ModelVar::FixedSmall {
            let v = Self::extract(&self.posterior_variance, t, x_t).expand_as(x_t);
            return (v, lv);
        }
        (lv.exp(), lv)
    }

    /// p_theta(x_{t-1} | x_t) from a raw network output (with variance channels if learned):
    /// x0 prediction (clipped to [-1, 1] when `clip_x0`), mean mu~_t(x_t, x0_pred), variance.
    pub fn p_mean_variance(
        &self,
        output: &Tensor,
        x_t: &Tensor,
        t: &Tensor,
        clip_x0: bool,
    ) -> TensorPMeanVariance {
        let channels = x_t.size()[1];
        let (mean_out, var_out) = self.split_output(output, channels);
        let (variance, log_variance) = self.model_variance(t, x_t, var_out.as_ref());
        let mut x0_pred = self.x0_from_output(x_t, t, &mean_out);
        if clip_x0 {
            x0_pred = x0_pred.clamp(-1.0, 1.0);
        }
        let (mean, _, _) = self.q_posterior_mean_variance(&x0_pred, x_t, t);
        TensorPMeanVariance { mean, variance, log_variance, x0_pred }
    }

    /// Algorithm 2, line 4: x_{t-1} = mu_theta + sigma_t z, with z masked out where t = 0.
    pub fn p_sample(&self, out: &TensorPMeanVariance, t: &Tensor, z: &Tensor) -> Tensor {
        let nonzero = per_example(&t.ne(0), &out.mean);
        &out.mean + nonzero * (&out.log_variance * 0.5).exp() * z
    }

    /// Algorithm 2 over this process (all its steps, or a respaced subset): from `x_t` at the
    /// last step down to x_0, with `model(x_t, model_timesteps(t))` the network and `noise(t)`
    /// the z of step t. `each(t, out)` sees every step's p_mean_variance (for progress and
    /// figures). Runs without gradients.
    pub fn p_sample_loop(
        &self,
        model: &mut dyn FnMut(&Tensor, &Tensor) -> Tensor,
        x_t: Tensor,
        noise: &mut dyn FnMut(usize) -> Tensor,
        clip_x0: bool,
        each: &mut dyn FnMut(usize, &TensorPMeanVariance),
    ) -> Tensor {
        let _guard = tch::no_grad_guard();
        let batch = x_t.size()[0];
        let mut x = x_t;
        for t in (0..self.num_timesteps()).rev() {
            let tb = self.full_t(batch, t);
            let output = model(&x, &self.model_timesteps(&tb));
            let out = self.p_mean_variance(&output, &x, &tb, clip_x0);
            each(t, &out);
            x = if t == 0 { out.mean.shallow_clone() } else { self.p_sample(&out, &tb, &noise(t)) };
        }
        x
    }
}
