//! Euler's method in the variance-exploding view of [`super::heun`]
//! (x~ = x_t / sqrt(abar_t), sigma = sqrt((1 - abar)/abar), dx~/dsigma = (x~ - D(x~; sigma))/sigma),
//! on the same sigmas ([`super::sigmas`]: Karras et al. 2022's rho = 7 unless asked otherwise, then 0), one network evaluation
//! per step:
//! - [`Variant::Ode`]: x~_{i+1} = x~_i + d_i (sigma_{i+1} - sigma_i), k-diffusion's `sample_euler`
//!   without churn;
//! - [`Variant::Ancestral`]: k-diffusion's `sample_euler_ancestral` (eta = 1). Each step is the
//!   DDPM posterior's mean and variance in VE form: Euler down to
//!   sigma_down = sqrt(sigma_{i+1}^2 - sigma_up^2), then fresh noise of std
//!   sigma_up = sqrt(sigma_{i+1}^2 (sigma_i^2 - sigma_{i+1}^2) / sigma_i^2), no noise into
//!   sigma = 0. The noise is image i's own stream ([`ImageNoise`]), so a sharded job equals one.

use super::heun::denoise;
use super::sigmas::{SigmaOptions, sigmas};
use super::{ModelFn, SamplerOptions};
use crate::noise::ImageNoise;
use ddpm_core::tensor::TensorDiffusion;
use tch::Tensor;

/// Which Euler sampler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    Ode,
    Ancestral,
}

/// (sigma_down, sigma_up) of an ancestral step from `from` to `to` (k-diffusion's
/// `get_ancestral_step` at eta = 1): sigma_down^2 + sigma_up^2 = to^2.
pub fn ancestral_step(from: f64, to: f64) -> (f64, f64) {
    let up = (to * to * (from * from - to * to) / (from * from)).sqrt().min(to);
    ((to * to - up * up).max(0.0).sqrt(), up)
}

#[allow(clippy::too_many_arguments)]
pub fn sample(
    variant: Variant,
    opts: &SamplerOptions,
    own: &SigmaOptions,
    process: &TensorDiffusion,
    model: &mut ModelFn,
    x_t: Tensor,
    noise: &mut ImageNoise,
    progress: &mut dyn FnMut(usize),
) -> Tensor {
    let s = sigmas(process, opts.steps, own.sigmas);
    // x_T is the VP state at the first time: x~ = x_T sqrt(1 + sigma^2).
    let mut x = x_t * (1.0 + s[0] * s[0]).sqrt();
    for i in 0..opts.steps {
        let (si, sn) = (s[i], s[i + 1]);
        let d = (&x - denoise(process, model, &x, si, opts.clip_x0)) / si;
        progress(i + 1);
        x = match variant {
            Variant::Ode => &x + d * (sn - si),
            Variant::Ancestral => {
                let (down, up) = ancestral_step(si, sn);
                let x = &x + d * (down - si);
                if sn > 0.0 { &x + noise.draw().to_kind(x.kind()) * up } else { x }
            }
        };
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The ancestral step splits the next variance: sigma_down^2 + sigma_up^2 =
        /// sigma_{i+1}^2, both between 0 and sigma_{i+1}, and sigma_down equals
        /// sigma_{i+1}^2 / sigma_i (the closed form of eta = 1).
        #[test]
        fn ancestral_steps_split_the_next_variance(from in 1e-3f64..100.0, f in 0.0f64..1.0) {
            let to = from * f;
            let (down, up) = ancestral_step(from, to);
            prop_assert!((down * down + up * up - to * to).abs() <= 1e-12 * (1.0 + to * to));
            prop_assert!((0.0..=to + 1e-15).contains(&down) && (0.0..=to + 1e-15).contains(&up));
            prop_assert!((down - to * to / from).abs() <= 1e-12 * (1.0 + to));
        }
    }
}
