//! DPM-Solver++(2M) (Lu et al. 2022, arXiv:2211.01095, Algorithm 2): a multistep second-order
//! solver of the diffusion ODE in data prediction, with lambda = log(alpha/sigma):
//! first step x_t = (sigma_t/sigma_s) x_s - alpha_t (e^{-h} - 1) x0_s, then
//! x_t = (sigma_t/sigma_s) x_s - alpha_t (e^{-h} - 1) (D0 + D1/2), D0 = m0, D1 = (m0 - m1)/r0,
//! r0 = h_prev/h (diffusers' "midpoint" form), and a last first-order step to sigma = 0.

use super::sigmas::{SigmaSpacing, sigmas};
use super::{ModelFn, SamplerOptions, TimeSteps, abar_at, eps_and_x0, t_of_log_abar};
use ddpm_core::tensor::TensorDiffusion;
use tch::Tensor;

/// DPM-Solver++(2M)'s own options.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Options {
    #[serde(default)]
    pub time_steps: TimeSteps,
}

/// The S evaluation times, descending (fractional for logSNR placement).
pub fn times(process: &TensorDiffusion, steps: usize, placement: TimeSteps) -> Vec<f64> {
    let last = (process.num_timesteps() - 1) as f64;
    match placement {
        // diffusers: round(linspace(0, T-1, S+1))[::-1][:-1]
        TimeSteps::Uniform => (0..=steps)
            .map(|i| (last * i as f64 / steps as f64).round_ties_even())
            .rev()
            .take(steps)
            .collect(),
        // Karras et al.'s noise levels at their continuous times, sigma = sqrt((1 - abar)/abar).
        TimeSteps::Karras => sigmas(process, steps, SigmaSpacing::Karras)[..steps]
            .iter()
            .map(|&s| t_of_log_abar(process, -(1.0 + s * s).ln()))
            .collect(),
        TimeSteps::LogSnr => {
            let lambda = |t: f64| {
                let a = abar_at(process, t);
                0.5 * (a / (1.0 - a)).ln()
            };
            let (l_min, l_max) = (lambda(last), lambda(0.0));
            (0..steps)
                .map(|i| {
                    let l = if steps == 1 {
                        l_min
                    } else {
                        l_min + (l_max - l_min) * i as f64 / (steps - 1) as f64
                    };
                    // abar = sigmoid(2 lambda)
                    let log_abar = -(1.0 + (-2.0 * l).exp()).ln();
                    t_of_log_abar(process, log_abar)
                })
                .collect()
        }
    }
}

/// (alpha, sigma, lambda) at continuous time t; t = None is sigma = 0 (the data).
pub(super) fn coeffs(process: &TensorDiffusion, t: Option<f64>) -> (f64, f64, f64) {
    match t {
        None => (1.0, 0.0, f64::INFINITY),
        Some(t) => {
            let a = abar_at(process, t);
            let (alpha, sigma) = (a.sqrt(), (1.0 - a).sqrt());
            (alpha, sigma, alpha.ln() - sigma.ln())
        }
    }
}

pub fn sample(
    opts: &SamplerOptions,
    own: &Options,
    process: &TensorDiffusion,
    model: &mut ModelFn,
    x_t: Tensor,
    progress: &mut dyn FnMut(usize),
) -> Tensor {
    let ts = times(process, opts.steps, own.time_steps);
    let batch = x_t.size()[0];
    let mut x = x_t;
    let mut prev: Option<(Tensor, f64)> = None; // (x0 at the previous time, its lambda)
    for i in 0..ts.len() {
        let (alpha_s, sigma_s, lambda_s) = coeffs(process, Some(ts[i]));
        let next = ts.get(i + 1).copied();
        let (alpha_t, sigma_t, lambda_t) = coeffs(process, next);
        let output = model(&x, &process.network_time(ts[i], batch));
        let (_, m0) =
            eps_and_x0(process, &output, &x, alpha_s * alpha_s, opts.clip_x0, Default::default());
        let h = lambda_t - lambda_s;
        let phi = (-h).exp() - 1.0; // e^{-h} - 1, = -1 at sigma_t = 0
        let first_order = prev.is_none() || next.is_none();
        let d = match (&prev, first_order) {
            (Some((m1, lambda_prev)), false) => {
                let r0 = (lambda_s - lambda_prev) / h;
                &m0 + (&m0 - m1) * (0.5 / r0)
            }
            _ => m0.shallow_clone(),
        };
        x = &x * (sigma_t / sigma_s) - d * (alpha_t * phi);
        prev = Some((m0, lambda_s));
        progress(i + 1);
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;
    use ddpm_core::DiffusionConfig;
    use proptest::prelude::*;
    use tch::Device;

    proptest! {
        /// Times uniform in logSNR are the exponential sigmas' times (sigma = e^{-lambda}),
        /// and the Karras times are at Karras's sigmas: the placements are where they say.
        #[test]
        fn log_snr_times_are_exponential_sigmas_and_karras_times_karras_sigmas(steps in 2usize..60) {
            let p = TensorDiffusion::from_config(&DiffusionConfig::default(), Device::Cpu).unwrap();
            let sigma_at = |t: f64| { let a = abar_at(&p, t); ((1.0 - a) / a).sqrt() };
            for (placement, spacing) in
                [(TimeSteps::LogSnr, SigmaSpacing::Exponential), (TimeSteps::Karras, SigmaSpacing::Karras)]
            {
                let want = sigmas(&p, steps, spacing);
                let got: Vec<f64> = times(&p, steps, placement).iter().map(|&t| sigma_at(t)).collect();
                for (g, w) in got.iter().zip(&want) {
                    prop_assert!((g / w - 1.0).abs() < 1e-9, "{:?}: {} vs {}", placement, g, w);
                }
            }
        }
    }
}
