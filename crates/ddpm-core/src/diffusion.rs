//! The Gaussian diffusion of Ho et al. 2020 ("Denoising Diffusion Probabilistic Models", arXiv:2006.11239):
//! one struct that owns every schedule array, computed once in f64 under improved-diffusion's names,
//! and the element-wise forward/reverse-process math built on them.

use crate::error::{CoreError, Result};
use crate::gaussian::{discretized_gaussian_log_likelihood, normal_kl};
use crate::respace::{respaced_betas, space_timesteps};
use crate::schedule::validate_betas;
use serde::{Deserialize, Serialize};

/// What the network predicts (the mean parameterisation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ModelMean {
    /// epsilon_theta(x_t, t), the noise (Ho et al. 2020, eq. 11); the paper's choice.
    #[default]
    Eps,
    /// x0 directly.
    X0,
    /// v = sqrt(abar) eps - sqrt(1-abar) x0 (Salimans & Ho 2022, arXiv:2202.00512).
    V,
}

/// The variance Sigma_theta(x_t, t) = sigma_t^2 I of the reverse step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ModelVar {
    /// sigma_t^2 = beta~_t, the posterior variance (eq. 7); log clipped at t = 0.
    FixedSmall,
    /// sigma_t^2 = beta_t, with beta~_1 at t = 0 for a better decoder likelihood; the CIFAR-10 choice.
    #[default]
    FixedLarge,
    /// The network outputs log sigma_t^2 directly (output channels doubled).
    Learned,
    /// The network outputs v in [-1, 1]: log sigma^2 = frac log beta_t + (1-frac) log beta~_t,
    /// frac = (v+1)/2 (Nichol & Dhariwal 2021, eq. 15).
    LearnedRange,
}

impl ModelVar {
    /// Whether the network outputs a variance channel for every data channel.
    pub fn is_learned(self) -> bool {
        matches!(self, Self::Learned | Self::LearnedRange)
    }
}

/// Training objective.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LossKind {
    /// L_simple: mean squared error on the parameterisation's target (Ho et al. 2020, eq. 14).
    #[default]
    Simple,
    /// L_hybrid = L_simple + lambda L_vlb, the VLB term seeing the mean detached
    /// (Nichol & Dhariwal 2021, Sec. 3.1); needs a learned variance.
    Hybrid,
    /// The full variational bound L_vlb (eq. 5), estimated as T * L_t at a uniform t.
    Vlb,
}

/// The mean and variance of p_theta(x_{t-1} | x_t) at one element, and the x0 prediction they came from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PMeanVariance {
    /// mu_theta(x_t, t) = mu~_t(x_t, x0_pred), eq. (7).
    pub mean: f64,
    pub variance: f64,
    pub log_variance: f64,
    /// The (optionally clipped) prediction of x0.
    pub x0_pred: f64,
}

/// Every array of a T-step Gaussian diffusion, index t = 0..T-1 holding the paper's step t+1.
///
/// Constructed from betas by [`GaussianDiffusion::new`], or respaced from a longer process by
/// [`GaussianDiffusion::respaced`]; `timestep_map[t]` is the step of the original process that
/// the network is told, so a respaced process runs the same network.
#[derive(Debug, Clone, PartialEq)]
pub struct GaussianDiffusion {
    pub num_timesteps: usize,
    pub betas: Vec<f64>,
    /// alpha_t = 1 - beta_t.
    pub alphas: Vec<f64>,
    /// abar_t = prod_{s <= t} alpha_s.
    pub alphas_cumprod: Vec<f64>,
    /// abar_{t-1}, with abar_{-1} = 1.
    pub alphas_cumprod_prev: Vec<f64>,
    /// abar_{t+1}, with 0 past the end.
    pub alphas_cumprod_next: Vec<f64>,
    pub sqrt_alphas_cumprod: Vec<f64>,
    pub sqrt_one_minus_alphas_cumprod: Vec<f64>,
    pub log_one_minus_alphas_cumprod: Vec<f64>,
    pub sqrt_recip_alphas_cumprod: Vec<f64>,
    pub sqrt_recipm1_alphas_cumprod: Vec<f64>,
    /// beta~_t = beta_t (1 - abar_{t-1}) / (1 - abar_t), eq. (7).
    pub posterior_variance: Vec<f64>,
    /// log beta~_t with beta~_0 (= 0) replaced by beta~_1.
    pub posterior_log_variance_clipped: Vec<f64>,
    /// Coefficient of x0 in mu~_t: beta_t sqrt(abar_{t-1}) / (1 - abar_t).
    pub posterior_mean_coef1: Vec<f64>,
    /// Coefficient of x_t in mu~_t: (1 - abar_{t-1}) sqrt(alpha_t) / (1 - abar_t).
    pub posterior_mean_coef2: Vec<f64>,
    /// The fixedlarge variance: beta_t, with beta~_1 at t = 0.
    pub fixedlarge_variance: Vec<f64>,
    pub fixedlarge_log_variance: Vec<f64>,
    /// log beta_t, the upper end of the learned_range interpolation.
    pub log_betas: Vec<f64>,
    /// The original step fed to the network for each step of this process.
    pub timestep_map: Vec<usize>,
    /// T of the process this one was respaced from (= num_timesteps if not respaced).
    pub original_num_steps: usize,
}

impl GaussianDiffusion {
    /// All arrays from beta_1..beta_T, validated to 0 < beta <= 1 and T >= 2.
    pub fn new(betas: Vec<f64>) -> Result<Self> {
        let t = betas.len();
        Self::with_map(betas, (0..t).collect(), t)
    }

    fn with_map(
        betas: Vec<f64>,
        timestep_map: Vec<usize>,
        original_num_steps: usize,
    ) -> Result<Self> {
        validate_betas(&betas)?;
        let t = betas.len();
        if t < 2 {
            return Err(CoreError::TooFewSteps { min: 2, got: t });
        }
        let alphas: Vec<f64> = betas.iter().map(|b| 1.0 - b).collect();
        let mut alphas_cumprod = Vec::with_capacity(t);
        let mut acc = 1.0;
        for a in &alphas {
            acc *= a;
            alphas_cumprod.push(acc);
        }
        let alphas_cumprod_prev: Vec<f64> =
            std::iter::once(1.0).chain(alphas_cumprod[..t - 1].iter().copied()).collect();
        let alphas_cumprod_next: Vec<f64> =
            alphas_cumprod[1..].iter().copied().chain(std::iter::once(0.0)).collect();
        let map = |f: &dyn Fn(usize) -> f64| (0..t).map(f).collect::<Vec<f64>>();
        let ac = &alphas_cumprod;
        let acp = &alphas_cumprod_prev;
        let posterior_variance = map(&|i| betas[i] * (1.0 - acp[i]) / (1.0 - ac[i]));
        let posterior_log_variance_clipped =
            map(&|i| if i == 0 { posterior_variance[1] } else { posterior_variance[i] }.ln());
        let fixedlarge_variance = map(&|i| if i == 0 { posterior_variance[1] } else { betas[i] });
        Ok(Self {
            num_timesteps: t,
            sqrt_alphas_cumprod: map(&|i| ac[i].sqrt()),
            sqrt_one_minus_alphas_cumprod: map(&|i| (1.0 - ac[i]).sqrt()),
            log_one_minus_alphas_cumprod: map(&|i| (1.0 - ac[i]).ln()),
            sqrt_recip_alphas_cumprod: map(&|i| (1.0 / ac[i]).sqrt()),
            sqrt_recipm1_alphas_cumprod: map(&|i| (1.0 / ac[i] - 1.0).sqrt()),
            posterior_mean_coef1: map(&|i| betas[i] * acp[i].sqrt() / (1.0 - ac[i])),
            posterior_mean_coef2: map(&|i| (1.0 - acp[i]) * alphas[i].sqrt() / (1.0 - ac[i])),
            fixedlarge_log_variance: fixedlarge_variance.iter().map(|v| v.ln()).collect(),
            log_betas: betas.iter().map(|b| b.ln()).collect(),
            posterior_log_variance_clipped,
            posterior_variance,
            fixedlarge_variance,
            alphas_cumprod_next,
            alphas_cumprod_prev,
            alphas_cumprod,
            alphas,
            betas,
            timestep_map,
            original_num_steps,
        })
    }

    /// The process restricted to the kept steps `kept` of this one (beta'_i = 1 - abar_{k_i}/abar_{k_{i-1}}).
    /// Respacing a respaced process composes the maps back to the original steps.
    pub fn respaced(&self, kept: &[usize]) -> Result<Self> {
        let betas = respaced_betas(&self.alphas_cumprod, kept)?;
        let map = kept.iter().map(|&k| self.timestep_map[k]).collect();
        Self::with_map(betas, map, self.original_num_steps)
    }

    /// The process restricted to the steps of a spacing string ("50", "ddim25", "10,15,20").
    pub fn respaced_str(&self, spec: &str) -> Result<Self> {
        self.respaced(&space_timesteps(self.num_timesteps, spec)?)
    }

    /// The time value the network is given at step `t` of this process: the original step,
    /// optionally rescaled to [0, 1000) as improved-diffusion's `rescale_timesteps` does.
    pub fn model_t(&self, t: usize, rescale_timesteps: bool) -> f64 {
        self.network_time(t as f64, rescale_timesteps)
    }

    /// The one place a step of this process becomes the network's time input, for every
    /// sampler and for training: the original process's step (through `timestep_map`, linearly
    /// between kept steps for a fractional t, as the ODE solvers use), rescaled to [0, 1000)
    /// when the model was trained with improved-diffusion's `rescale_timesteps`.
    pub fn network_time(&self, t: f64, rescale_timesteps: bool) -> f64 {
        let last = self.num_timesteps - 1;
        let t = t.clamp(0.0, last as f64);
        let (i, f) = (t.floor() as usize, t - t.floor());
        let orig = if i >= last {
            self.timestep_map[last] as f64
        } else {
            self.timestep_map[i] as f64 * (1.0 - f) + self.timestep_map[i + 1] as f64 * f
        };
        if rescale_timesteps { orig * 1000.0 / self.original_num_steps as f64 } else { orig }
    }

    /// Signal-to-noise ratio SNR(t) = abar_t / (1 - abar_t).
    pub fn snr(&self, t: usize) -> f64 {
        self.alphas_cumprod[t] / (1.0 - self.alphas_cumprod[t])
    }

    /// x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps: a draw from q(x_t | x0), eq. (4).
    pub fn q_sample(&self, x0: f64, t: usize, eps: f64) -> f64 {
        self.sqrt_alphas_cumprod[t] * x0 + self.sqrt_one_minus_alphas_cumprod[t] * eps
    }

    /// Mean, variance and log variance of q(x_t | x0), eq. (4).
    pub fn q_mean_variance(&self, x0: f64, t: usize) -> (f64, f64, f64) {
        (
            self.sqrt_alphas_cumprod[t] * x0,
            1.0 - self.alphas_cumprod[t],
            self.log_one_minus_alphas_cumprod[t],
        )
    }

    /// Posterior q(x_{t-1} | x_t, x0) = N(mu~_t, beta~_t I), eqs. (6)-(7): (mean, variance, clipped log variance).
    pub fn q_posterior_mean_variance(&self, x0: f64, x_t: f64, t: usize) -> (f64, f64, f64) {
        (
            self.posterior_mean_coef1[t] * x0 + self.posterior_mean_coef2[t] * x_t,
            self.posterior_variance[t],
            self.posterior_log_variance_clipped[t],
        )
    }

    /// x0 = sqrt(1/abar_t) x_t - sqrt(1/abar_t - 1) eps (eq. 4 solved for x0).
    pub fn x0_from_eps(&self, x_t: f64, t: usize, eps: f64) -> f64 {
        self.sqrt_recip_alphas_cumprod[t] * x_t - self.sqrt_recipm1_alphas_cumprod[t] * eps
    }

    /// eps = (sqrt(1/abar_t) x_t - x0) / sqrt(1/abar_t - 1).
    pub fn eps_from_x0(&self, x_t: f64, t: usize, x0: f64) -> f64 {
        (self.sqrt_recip_alphas_cumprod[t] * x_t - x0) / self.sqrt_recipm1_alphas_cumprod[t]
    }

    /// v = sqrt(abar_t) eps - sqrt(1 - abar_t) x0.
    pub fn v_from_x0_eps(&self, x0: f64, t: usize, eps: f64) -> f64 {
        self.sqrt_alphas_cumprod[t] * eps - self.sqrt_one_minus_alphas_cumprod[t] * x0
    }

    /// x0 = sqrt(abar_t) x_t - sqrt(1 - abar_t) v.
    pub fn x0_from_v(&self, x_t: f64, t: usize, v: f64) -> f64 {
        self.sqrt_alphas_cumprod[t] * x_t - self.sqrt_one_minus_alphas_cumprod[t] * v
    }

    /// eps = sqrt(1 - abar_t) x_t + sqrt(abar_t) v.
    pub fn eps_from_v(&self, x_t: f64, t: usize, v: f64) -> f64 {
        self.sqrt_one_minus_alphas_cumprod[t] * x_t + self.sqrt_alphas_cumprod[t] * v
    }

    /// The x0 prediction implied by a network output under `mean`.
    pub fn x0_from_output(&self, mean: ModelMean, x_t: f64, t: usize, output: f64) -> f64 {
        match mean {
            ModelMean::Eps => self.x0_from_eps(x_t, t, output),
            ModelMean::X0 => output,
            ModelMean::V => self.x0_from_v(x_t, t, output),
        }
    }

    /// (variance, log variance) of p(x_{t-1} | x_t) for a variance type; `var_output` is the
    /// network's variance channel, required for the learned types.
    pub fn model_variance(&self, var: ModelVar, t: usize, var_output: Option<f64>) -> (f64, f64) {
        match var {
            ModelVar::FixedSmall => {
                (self.posterior_variance[t], self.posterior_log_variance_clipped[t])
            }
            ModelVar::FixedLarge => (self.fixedlarge_variance[t], self.fixedlarge_log_variance[t]),
            ModelVar::Learned => {
                let lv = var_output.expect("learned variance needs the variance output");
                (lv.exp(), lv)
            }
            ModelVar::LearnedRange => {
                let v = var_output.expect("learned_range variance needs the variance output");
                let frac = (v + 1.0) / 2.0;
                let lv = frac * self.log_betas[t]
                    + (1.0 - frac) * self.posterior_log_variance_clipped[t];
                (lv.exp(), lv)
            }
        }
    }

    /// p_theta(x_{t-1} | x_t) from the network output at one element: the x0 prediction
    /// (clipped to [-1, 1] if `clip_x0`), the mean mu~_t(x_t, x0_pred) and the variance.
    pub fn p_mean_variance(
        &self,
        mean: ModelMean,
        var: ModelVar,
        output: f64,
        var_output: Option<f64>,
        x_t: f64,
        t: usize,
        clip_x0: bool,
    ) -> PMeanVariance {
        let (variance, log_variance) = self.model_variance(var, t, var_output);
        let mut x0_pred = self.x0_from_output(mean, x_t, t, output);
        if clip_x0 {
            x0_pred = x0_pred.clamp(-1.0, 1.0);
        }
        let (mean, _, _) = self.q_posterior_mean_variance(x0_pred, x_t, t);
        PMeanVariance { mean, variance, log_variance, x0_pred }
    }

    /// One ancestral step, Algorithm 2 line 4: x_{t-1} = mu + sigma_t z, with no noise at t = 0.
    pub fn p_sample(&self, out: &PMeanVariance, t: usize, z: f64) -> f64 {
        if t == 0 { out.mean } else { out.mean + (0.5 * out.log_variance).exp() * z }
    }

    /// The VLB term L_{t-1} at one element in nats: KL(q(x_{t-1}|x_t,x0) || p(x_{t-1}|x_t)) for t > 0,
    /// and the discretized decoder NLL -log p(x0 | x1) at t = 0 (eq. 5).
    pub fn vb_term(&self, x0: f64, x_t: f64, t: usize, out: &PMeanVariance) -> f64 {
        if t == 0 {
            -discretized_gaussian_log_likelihood(x0, out.mean, 0.5 * out.log_variance)
        } else {
            let (true_mean, _, true_log_var) = self.q_posterior_mean_variance(x0, x_t, t);
            normal_kl(true_mean, true_log_var, out.mean, out.log_variance)
        }
    }

    /// The prior term L_T = KL(q(x_T | x0) || N(0, I)) at one element, in nats.
    pub fn prior_kl(&self, x0: f64) -> f64 {
        let (m, _, lv) = self.q_mean_variance(x0, self.num_timesteps - 1);
        normal_kl(m, lv, 0.0, 0.0)
    }

    /// Min-SNR-gamma loss weight (Hang et al. 2023, arXiv:2303.09556) for the MSE on `mean`'s target:
    /// eps: min(SNR, g)/SNR; x0: min(SNR, g); v: min(SNR, g)/(SNR + 1).
    pub fn min_snr_weight(&self, mean: ModelMean, t: usize, gamma: f64) -> f64 {
        let snr = self.snr(t);
        let clipped = snr.min(gamma);
        match mean {
            ModelMean::Eps => clipped / snr,
            ModelMean::X0 => clipped,
            ModelMean::V => clipped / (snr + 1.0),
        }
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn network_time_follows_the_map_and_the_rescaling() {
        let d = GaussianDiffusion::new(
            crate::schedule::BetaSchedule::paper_linear().betas(4000).unwrap(),
        )
        .unwrap();
        assert_eq!(d.network_time(3999.0, false), 3999.0);
        assert_eq!(d.network_time(3999.0, true), 999.75);
        assert_eq!(d.network_time(2.5, true), 0.625);
        // A respaced process feeds the original steps, between kept steps linearly.
        let r = d.respaced(&[0, 1000, 3000]).unwrap();
        assert_eq!(r.network_time(1.0, false), 1000.0);
        assert_eq!(r.network_time(1.5, false), 2000.0);
        assert_eq!(r.network_time(2.0, true), 750.0);
        assert_eq!(r.model_t(2, true), 750.0);
    }
    use super::*;
    use crate::schedule::BetaSchedule;
    use proptest::prelude::*;

    fn linear() -> GaussianDiffusion {
        GaussianDiffusion::new(BetaSchedule::paper_linear().betas(1000).unwrap()).unwrap()
    }

    /// Golden values of the paper's schedule (linear 1e-4..0.02, T = 1000, in f64, as
    /// improved-diffusion computes them); schedules are append-only.
    #[test]
    fn linear_schedule_golden_values() {
        let d = linear();
        let rel = |a: f64, b: f64| ((a - b) / b).abs();
        assert!(rel(d.alphas_cumprod[999], 4.0358e-5) < 1e-4, "{}", d.alphas_cumprod[999]);
        assert!(rel(d.posterior_variance[1], 5.4532e-5) < 1e-4);
        assert!((d.posterior_log_variance_clipped[0] - (-9.81673)).abs() < 1e-4);
        assert_eq!(d.posterior_log_variance_clipped[0], d.posterior_log_variance_clipped[1]);
        assert!(rel(d.posterior_variance[999], 0.019_999_983_5) < 1e-8);
        assert_eq!(d.posterior_variance[0], 0.0);
        assert_eq!(d.fixedlarge_variance[0], d.posterior_variance[1]);
        assert_eq!(d.fixedlarge_variance[500], d.betas[500]);
    }

    #[test]
    fn cosine_schedule_golden_values() {
        let d = GaussianDiffusion::new(BetaSchedule::paper_cosine().betas(1000).unwrap()).unwrap();
        assert!(
            (d.alphas_cumprod[999] - 2.43e-9).abs() / 2.43e-9 < 1e-2,
            "{}",
            d.alphas_cumprod[999]
        );
    }

    #[test]
    fn too_short_processes_are_rejected() {
        assert_eq!(
            GaussianDiffusion::new(vec![0.1]).unwrap_err(),
            CoreError::TooFewSteps { min: 2, got: 1 }
        );
    }

    #[test]
    fn respacing_composes_timestep_maps() {
        let d = linear();
        let a = d.respaced_str("100").unwrap();
        let b = a.respaced_str("ddim10").unwrap();
        assert_eq!(b.num_timesteps, 10);
        assert_eq!(b.original_num_steps, 1000);
        for (i, &orig) in b.timestep_map.iter().enumerate() {
            assert!((b.alphas_cumprod[i] - d.alphas_cumprod[orig]).abs() < 1e-15);
        }
        assert_eq!(b.model_t(9, true), b.timestep_map[9] as f64);
    }

    #[test]
    fn learned_range_interpolates_between_fixed_variances() {
        let d = linear();
        let (_, lo) = d.model_variance(ModelVar::LearnedRange, 10, Some(-1.0));
        let (_, hi) = d.model_variance(ModelVar::LearnedRange, 10, Some(1.0));
        assert_eq!(lo, d.posterior_log_variance_clipped[10]);
        assert_eq!(hi, d.betas[10].ln());
    }

    #[test]
    fn p_sample_adds_no_noise_at_t0() {
        let d = linear();
        let out = d.p_mean_variance(ModelMean::Eps, ModelVar::FixedLarge, 0.3, None, 0.1, 0, true);
        assert_eq!(d.p_sample(&out, 0, 5.0), out.mean);
        let out = d.p_mean_variance(ModelMean::Eps, ModelVar::FixedLarge, 0.3, None, 0.1, 5, true);
        assert!((d.p_sample(&out, 5, 1.0) - (out.mean + out.variance.sqrt())).abs() < 1e-15);
    }

    #[test]
    fn min_snr_weight_is_one_where_snr_is_below_gamma_for_x0() {
        let d = linear();
        // At large t the SNR is tiny, so min(SNR, 5) = SNR and the eps weight is exactly 1.
        assert_eq!(d.min_snr_weight(ModelMean::Eps, 999, 5.0), 1.0);
        assert!(d.min_snr_weight(ModelMean::Eps, 0, 5.0) < 1e-3);
        assert_eq!(d.min_snr_weight(ModelMean::X0, 0, 5.0), 5.0);
    }

    fn any_schedule() -> impl Strategy<Value = Vec<f64>> {
        prop_oneof![
            (2usize..400, 1e-5..1e-2f64, 1e-2..0.2f64).prop_map(|(t, a, b)| {
                BetaSchedule::Linear { beta_start: a, beta_end: b, scale_to_steps: false }
                    .betas(t)
                    .unwrap()
            }),
            (2usize..400).prop_map(|t| BetaSchedule::paper_cosine().betas(t).unwrap()),
            (2usize..400, 1e-5..1e-2f64, 1e-2..0.2f64).prop_map(|(t, a, b)| {
                BetaSchedule::Quadratic { beta_start: a, beta_end: b }.betas(t).unwrap()
            }),
            (2usize..400, 1e-5..1e-2f64, 1e-2..0.2f64).prop_map(|(t, a, b)| {
                BetaSchedule::Sigmoid { beta_start: a, beta_end: b }.betas(t).unwrap()
            }),
            proptest::collection::vec(1e-6..0.5f64, 2..200),
        ]
    }

    proptest! {
        #[test]
        fn abar_is_strictly_decreasing_in_unit_interval(betas in any_schedule()) {
            let d = GaussianDiffusion::new(betas).unwrap();
            let ac = &d.alphas_cumprod;
            prop_assert!(ac.iter().all(|&a| a > 0.0 && a < 1.0));
            prop_assert!(ac.windows(2).all(|w| w[1] < w[0]));
        }

        #[test]
        fn posterior_variance_lies_between_zero_and_beta(betas in any_schedule()) {
            let d = GaussianDiffusion::new(betas).unwrap();
            for t in 0..d.num_timesteps {
                prop_assert!(d.posterior_variance[t] >= 0.0);
                prop_assert!(d.posterior_variance[t] <= d.betas[t] * (1.0 + 1e-12));
            }
        }

        #[test]
        fn keeping_every_step_reproduces_the_schedule(betas in any_schedule()) {
            let d = GaussianDiffusion::new(betas).unwrap();
            let all: Vec<usize> = (0..d.num_timesteps).collect();
            let r = d.respaced(&all).unwrap();
            for t in 0..d.num_timesteps {
                prop_assert!((r.betas[t] - d.betas[t]).abs() <= 1e-12 * d.betas[t].max(1e-3));
                prop_assert!((r.alphas_cumprod[t] - d.alphas_cumprod[t]).abs() <= 1e-12);
            }
            prop_assert_eq!(r.timestep_map, d.timestep_map);
        }

        #[test]
        fn respacing_keeps_abar_on_kept_steps(betas in any_schedule(), n in 1usize..50) {
            let d = GaussianDiffusion::new(betas).unwrap();
            prop_assume!(n < d.num_timesteps);
            let r = d.respaced_str(&(n + 1).to_string()).unwrap();
            for (i, &k) in r.timestep_map.iter().enumerate() {
                prop_assert!((r.alphas_cumprod[i] - d.alphas_cumprod[k]).abs() <= 1e-12);
            }
        }

        #[test]
        fn parameterisations_round_trip(betas in any_schedule(), x0 in -1.0..1.0f64, eps in -3.0..3.0f64, frac in 0.0..1.0f64) {
            let d = GaussianDiffusion::new(betas).unwrap();
            let t = ((d.num_timesteps - 1) as f64 * frac) as usize;
            let x_t = d.q_sample(x0, t, eps);
            // Conditioning of x0 <- eps grows like sqrt(1/abar); scale the tolerance with it.
            let tol = 1e-9 * d.sqrt_recip_alphas_cumprod[t].max(1.0);
            prop_assert!((d.x0_from_eps(x_t, t, eps) - x0).abs() < tol);
            // eps <- x0 divides by sqrt(1/abar - 1), which is ~sqrt(beta_1) at small t.
            let amplification = d.sqrt_recip_alphas_cumprod[t] / d.sqrt_recipm1_alphas_cumprod[t];
            prop_assert!((d.eps_from_x0(x_t, t, x0) - eps).abs() < 1e-9 * amplification.max(1.0));
            let v = d.v_from_x0_eps(x0, t, eps);
            prop_assert!((d.x0_from_v(x_t, t, v) - x0).abs() < 1e-9);
            prop_assert!((d.eps_from_v(x_t, t, v) - eps).abs() < 1e-9);
        }

        /// With the true x0 as the prediction, the model mean is the true posterior mean and the KL
        /// term reduces to the variance mismatch only; for fixedsmall it is exactly zero.
        #[test]
        fn vb_term_vanishes_for_a_perfect_fixedsmall_model(betas in any_schedule(), x0 in -1.0..1.0f64, eps in -3.0..3.0f64, frac in 0.0..1.0f64) {
            let d = GaussianDiffusion::new(betas).unwrap();
            let t = 1 + ((d.num_timesteps - 2) as f64 * frac) as usize;
            let x_t = d.q_sample(x0, t, eps);
            let out = d.p_mean_variance(ModelMean::X0, ModelVar::FixedSmall, x0, None, x_t, t, false);
            prop_assert!(d.vb_term(x0, x_t, t, &out).abs() < 1e-9);
        }
    }
}
