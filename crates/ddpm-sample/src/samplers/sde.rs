//! DPM-Solver++(2M) SDE and DPM-Solver++(3M) SDE (Lu et al. 2022, arXiv:2211.01095, §4 and
//! its SDE variant; k-diffusion's `sample_dpmpp_2m_sde` with the midpoint correction and
//! `sample_dpmpp_3m_sde`, both at eta = 1). In the variance-exploding view of [`super::heun`]
//! (x~ = x_t / sqrt(abar_t), sigma = sqrt((1 - abar)/abar), D the data prediction), with
//! h = log(sigma_i / sigma_{i+1}) the step in logSNR, the first-order step is the exact
//! solution of the reverse SDE with D held fixed:
//!
//! x~_{i+1} = e^{-2h} x~_i + (1 - e^{-2h}) D_i + sigma_{i+1} sqrt(1 - e^{-2h}) z,
//!
//! and the multistep corrections use the previous one (2M: (1 - e^{-2h}) (D_i - D_{i-1})/(2r),
//! r = h_{i-1}/h) or two (3M: phi_2 and phi_3 of 2h on the first and second differences).
//! The last step, into sigma = 0, is x~ = D. Each image's fresh noise z is its own stream
//! ([`ImageNoise`]), so a sharded job equals one.

use super::heun::denoise;
use super::sigmas::{SigmaOptions, sigmas};
use super::{ModelFn, SamplerOptions};
use crate::noise::ImageNoise;
use ddpm_core::tensor::TensorDiffusion;
use tch::Tensor;

/// How many earlier data predictions a step uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// DPM-Solver++(2M) SDE.
    Two,
    /// DPM-Solver++(3M) SDE.
    Three,
}

#[allow(clippy::too_many_arguments)]
pub fn sample(
    order: Order,
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
    // The previous two data predictions and the steps h that followed them, newest first.
    let mut older: Vec<(Tensor, f64)> = Vec::with_capacity(2);
    for i in 0..opts.steps {
        let (si, sn) = (s[i], s[i + 1]);
        let d = denoise(process, model, &x, si, opts.clip_x0);
        progress(i + 1);
        if sn == 0.0 {
            x = d;
            break;
        }
        let h = (si / sn).ln();
        let e = -(-2.0 * h).exp_m1(); // 1 - e^{-2h}
        let mut next = &x * (-2.0 * h).exp() + &d * e;
        match (order, older.as_slice()) {
            (Order::Two, [(d1, h1), ..]) => {
                let r = h1 / h;
                next += (&d - d1) * (0.5 * e / r);
            }
            (Order::Three, [(d1, h1), (d2, h2), ..]) => {
                let (r0, r1) = (h1 / h, h2 / h);
                let d1_0 = (&d - d1) / r0;
                let d1_1 = (d1 - d2) / r1;
                let first = &d1_0 + (&d1_0 - &d1_1) * (r0 / (r0 + r1));
                let second = (&d1_0 - &d1_1) / (r0 + r1);
                let (phi2, phi3) = phis(2.0 * h);
                next += first * phi2 - second * phi3;
            }
            (Order::Three, [(d1, h1)]) => {
                let (phi2, _) = phis(2.0 * h);
                next += (&d - d1) * (phi2 * h / h1);
            }
            _ => {}
        }
        x = next + noise.draw().to_kind(x.kind()) * (sn * e.sqrt());
        older.insert(0, (d, h));
        older.truncate(2);
    }
    x
}

/// (phi_2, phi_3) of k-diffusion's 3M SDE at step `h`: phi_2 = (e^{-h} - 1)/h + 1,
/// phi_3 = phi_2/h - 1/2.
fn phis(h: f64) -> (f64, f64) {
    let phi2 = (-h).exp_m1() / h + 1.0;
    (phi2, phi2 / h - 0.5)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// phi_2 and phi_3 against their series at small h (phi_2 = h/2 - h^2/6 + ...,
        /// phi_3 = -h/6 + h^2/24 - ...; so the 3M correction vanishes as h -> 0) and their
        /// limits at large h (phi_2 -> 1, phi_3 -> -1/2).
        #[test]
        fn phis_have_their_series_and_limits(h in 1e-3f64..0.05) {
            let (p2, p3) = phis(h);
            prop_assert!((p2 - (h / 2.0 - h * h / 6.0)).abs() < h.powi(3));
            prop_assert!((p3 - (-h / 6.0 + h * h / 24.0)).abs() < h.powi(3));
            let (p2, p3) = phis(1e3 * h / 1e-3);
            prop_assert!((p2 - 1.0).abs() < 1e-3 + 1.0 / (1e3 * h / 1e-3));
            prop_assert!((p3 + 0.5).abs() < 1e-3);
        }
    }
}
