//! Training objectives and the variational bound on tensors (Ho et al. 2020, eqs. 5 and 14;
//! Nichol & Dhariwal 2021, Sec. 3.1 for L_hybrid). Units: the VLB terms are bits per dimension.

use super::TensorDiffusion;
use crate::diffusion::{LossKind, ModelMean};
use std::f64::consts::{LN_2, PI};
use tch::{Kind, Tensor};

/// KL(N(m1, e^lv1) || N(m2, e^lv2)) element-wise, in nats.
pub fn normal_kl(mean1: &Tensor, logvar1: &Tensor, mean2: &Tensor, logvar2: &Tensor) -> Tensor {
    (logvar2 - logvar1 - 1.0
        + (logvar1 - logvar2).exp()
        + (mean1 - mean2).square() * (-logvar2).exp())
        * 0.5
}

/// Phi(x) ~ 0.5 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
pub fn approx_standard_normal_cdf(x: &Tensor) -> Tensor {
    ((x + x.pow_tensor_scalar(3) * 0.044715) * (2.0 / PI).sqrt()).tanh().g_add_scalar(1.0) * 0.5
}

/// log p(x | mean, e^log_scale) of the discretized Gaussian over 256 bins in [-1, 1] (eq. 13), in nats.
pub fn discretized_gaussian_log_likelihood(
    x: &Tensor,
    means: &Tensor,
    log_scales: &Tensor,
) -> Tensor {
    let centered = x - means;
    let inv_stdv = (-log_scales).exp();
    let half = crate::gaussian::BIN_HALF_WIDTH;
    let cdf_plus = approx_standard_normal_cdf(&(&inv_stdv * (&centered + half)));
    let cdf_min = approx_standard_normal_cdf(&(&inv_stdv * (&centered - half)));
    let log_cdf_plus = cdf_plus.clamp_min(1e-12).log();
    let log_one_minus_cdf_min = cdf_min.neg().g_add_scalar(1.0).clamp_min(1e-12).log();
    let log_cdf_delta = (&cdf_plus - &cdf_min).clamp_min(1e-12).log();
    let upper = log_one_minus_cdf_min.where_self(&x.gt(0.999), &log_cdf_delta);
    log_cdf_plus.where_self(&x.lt(-0.999), &upper)
}

/// Mean over every dimension but the batch dimension.
pub fn mean_flat(x: &Tensor) -> Tensor {
    x.flatten(1, -1).mean_dim([1i64].as_slice(), false, None::<Kind>)
}

/// Per-example loss terms, each of shape [B].
#[derive(Debug)]
pub struct LossTerms {
    /// What is minimised (before importance weights and the batch mean).
    pub loss: Tensor,
    /// The (min-SNR weighted) MSE on the parameterisation's target, when part of the loss.
    pub mse: Option<Tensor>,
    /// The VLB term L_t in bits/dim, unscaled, when part of the loss.
    pub vb: Option<Tensor>,
}

/// The whole variational bound of a batch, as in improved-diffusion's `calc_bpd_loop`.
#[derive(Debug)]
pub struct BpdTerms {
    /// Sum of all terms plus the prior, [B], bits/dim.
    pub total: Tensor,
    /// L_T, [B].
    pub prior: Tensor,
    /// L_0 .. L_{T-1}, [B, T] with column t holding step t.
    pub vb: Tensor,
    /// MSE of the x0 prediction per step, [B, T].
    pub x0_mse: Tensor,
    /// MSE of the eps prediction per step, [B, T].
    pub mse: Tensor,
}

impl TensorDiffusion {
    /// The VLB term at each example's t in bits/dim: KL(q(x_{t-1}|x_t,x0) || p(x_{t-1}|x_t)) for t > 0,
    /// the decoder NLL for t = 0. Returns (term [B], x0 prediction).
    pub fn vb_terms_bpd(
        &self,
        output: &Tensor,
        x0: &Tensor,
        x_t: &Tensor,
        t: &Tensor,
        clip_x0: bool,
    ) -> (Tensor, Tensor) {
        let (true_mean, _, true_log_var) = self.q_posterior_mean_variance(x0, x_t, t);
        let out = self.p_mean_variance(output, x_t, t, clip_x0);
        let kl =
            mean_flat(&normal_kl(&true_mean, &true_log_var, &out.mean, &out.log_variance)) / LN_2;
        let decoder_nll = mean_flat(&-discretized_gaussian_log_likelihood(
            x0,
            &out.mean,
            &(&out.log_variance * 0.5),
        )) / LN_2;
        (decoder_nll.where_self(&t.eq(0), &kl), out.x0_pred)
    }

    /// L_T = KL(q(x_T | x0) || N(0, I)) in bits/dim, [B].
    pub fn prior_bpd(&self, x0: &Tensor) -> Tensor {
        let t = self.full_t(x0.size()[0], self.num_timesteps() - 1);
        let (mean, _, lv) = self.q_mean_variance(x0, &t);
        let zeros = mean.zeros_like();
        mean_flat(&normal_kl(&mean, &lv, &zeros, &zeros)) / LN_2
    }

    /// The regression target of the configured parameterisation.
    pub fn target(&self, x0: &Tensor, t: &Tensor, eps: &Tensor) -> Tensor {
        match self.param.mean {
            ModelMean::Eps => eps.shallow_clone(),
            ModelMean::X0 => x0.shallow_clone(),
            ModelMean::V => self.v_from_x0_eps(x0, t, eps),
        }
    }

    /// Algorithm 1's loss for a batch: draws x_t = q_sample(x0, t, eps), runs
    /// `model(x_t, model_timesteps(t))`, and returns the configured objective per example:
    /// L_simple (optionally min-SNR weighted), L_hybrid = L_simple + lambda T L_t with the mean
    /// detached inside L_t, or the bound T L_t.
    pub fn training_losses(
        &self,
        model: impl FnOnce(&Tensor, &Tensor) -> Tensor,
        x0: &Tensor,
        t: &Tensor,
        eps: &Tensor,
    ) -> LossTerms {
        let x_t = self.q_sample(x0, t, eps);
        let output = model(&x_t, &self.model_timesteps(t));
        let big_t = self.num_timesteps() as f64;
        match self.param.loss {
            LossKind::Vlb => {
                let (vb, _) = self.vb_terms_bpd(&output, x0, &x_t, t, false);
                LossTerms { loss: &vb * big_t, mse: None, vb: Some(vb) }
            }
            LossKind::Simple | LossKind::Hybrid => {
                let channels = x0.size()[1];
                let (mean_out, var_out) = self.split_output(&output, channels);
                let target = self.target(x0, t, eps);
                let weights = Self::extract(&self.mse_weights, t, x0).flatten(0, -1);
                let mse = mean_flat(&(target - &mean_out).square()) * weights;
                match var_out {
                    Some(var_out) if self.param.loss == LossKind::Hybrid => {
                        // The bound trains only the variance: the mean is frozen inside it.
                        let frozen = Tensor::cat(&[mean_out.detach(), var_out], 1);
                        let (vb, _) = self.vb_terms_bpd(&frozen, x0, &x_t, t, false);
                        let loss = &mse + &vb * (self.param.hybrid_lambda * big_t);
                        LossTerms { loss, mse: Some(mse), vb: Some(vb) }
                    }
                    _ => LossTerms { loss: mse.shallow_clone(), mse: Some(mse), vb: None },
                }
            }
        }
    }

    /// Every term of the variational bound for a batch (improved-diffusion's `calc_bpd_loop`):
    /// for t = T-1 .. 0 draws x_t with `noise(t)`, evaluates `model(x_t, model_timesteps(t))`,
    /// and records L_t, the x0 and eps MSEs; then adds the prior term.
    pub fn calc_bpd_loop(
        &self,
        model: &mut dyn FnMut(&Tensor, &Tensor) -> Tensor,
        x0: &Tensor,
        noise: &mut dyn FnMut(usize) -> Tensor,
        clip_x0: bool,
    ) -> BpdTerms {
        let _guard = tch::no_grad_guard();
        let batch = x0.size()[0];
        let steps = self.num_timesteps();
        let (mut vb, mut x0_mse, mut mse) = (Vec::new(), Vec::new(), Vec::new());
        for t in (0..steps).rev() {
            let tb = self.full_t(batch, t);
            let eps = noise(t);
            let x_t = self.q_sample(x0, &tb, &eps);
            let output = model(&x_t, &self.model_timesteps(&tb));
            let (term, x0_pred) = self.vb_terms_bpd(&output, x0, &x_t, &tb, clip_x0);
            let eps_pred = self.eps_from_x0(&x_t, &tb, &x0_pred);
            vb.push(term);
            x0_mse.push(mean_flat(&(&x0_pred - x0).square()));
            mse.push(mean_flat(&(eps_pred - eps).square()));
        }
        // Collected from t = T-1 down to 0; column t must hold step t.
        for v in [&mut vb, &mut x0_mse, &mut mse] {
            v.reverse();
        }
        let vb = Tensor::stack(&vb, 1);
        let prior = self.prior_bpd(x0);
        let total = vb.sum_dim_intlist([1i64].as_slice(), false, None::<Kind>) + &prior;
        BpdTerms {
            total,
            prior,
            vb,
            x0_mse: Tensor::stack(&x0_mse, 1),
            mse: Tensor::stack(&mse, 1),
        }
    }
}
