//! The probability-flow ODE (Song et al. 2021) solved with Heun's second-order method as in
//! Karras et al. 2022 (arXiv:2206.00364), Algorithm 1 without churn. In the variance-exploding
//! view x~ = x_t / sqrt(abar_t), sigma = sqrt((1 - abar)/abar), the ODE is
//! dx~/dsigma = (x~ - D(x~; sigma))/sigma with D the network's x0 prediction; sigmas follow
//! [`super::sigmas`] (Karras et al.'s rho = 7 unless asked otherwise), then 0. S steps cost 2S - 1 evaluations.

use super::sigmas::{SigmaOptions, sigmas};
use super::{ClipConvention, ModelFn, SamplerOptions, eps_and_x0, t_of_log_abar};
use ddpm_core::tensor::TensorDiffusion;
use tch::Tensor;

/// D(x~; sigma): the x0 prediction for the VE-scaled state.
pub(super) fn denoise(
    process: &TensorDiffusion,
    model: &mut ModelFn,
    xt: &Tensor,
    sigma: f64,
    clip: bool,
) -> Tensor {
    let abar = 1.0 / (1.0 + sigma * sigma);
    let t = t_of_log_abar(process, abar.ln());
    let x = xt * abar.sqrt();
    let output = model(&x, &process.network_time(t, x.size()[0]));
    eps_and_x0(process, &output, &x, abar, clip, ClipConvention::default()).1
}

pub fn sample(
    opts: &SamplerOptions,
    own: &SigmaOptions,
    process: &TensorDiffusion,
    model: &mut ModelFn,
    x_t: Tensor,
    progress: &mut dyn FnMut(usize),
) -> Tensor {
    let s = sigmas(process, opts.steps, own.sigmas);
    // x_T is the VP state at the first time: x~ = x_T / sqrt(abar) = x_T sqrt(1 + sigma^2).
    let mut x = x_t * (1.0 + s[0] * s[0]).sqrt();
    let mut evals = 0;
    for i in 0..opts.steps {
        let (si, sn) = (s[i], s[i + 1]);
        let d = (&x - denoise(process, model, &x, si, opts.clip_x0)) / si;
        evals += 1;
        progress(evals);
        let euler = &x + &d * (sn - si);
        x = if sn > 0.0 {
            let d2 = (&euler - denoise(process, model, &euler, sn, opts.clip_x0)) / sn;
            evals += 1;
            progress(evals);
            &x + (d + d2) * (0.5 * (sn - si))
        } else {
            euler
        };
    }
    x
}
