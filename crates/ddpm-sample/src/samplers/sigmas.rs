//! The noise levels the sigma-space solvers ([`super::heun`], [`super::euler`]) step through, in
//! the variance-exploding view sigma = sqrt((1 - abar)/abar), from sigma_max = sigma(T-1) down
//! to sigma_min = sigma(0), then 0 (diffusers' `final_sigmas_type = "zero"`).

use ddpm_core::tensor::TensorDiffusion;

/// Karras et al. 2022's rho (eq. 5).
const RHO: f64 = 7.0;

/// How the S noise levels are placed between sigma_max and sigma_min.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum SigmaSpacing {
    /// sigma_i = (sigma_max^(1/rho) + i/(S-1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho,
    /// rho = 7: Karras et al. 2022 eq. 5 (k-diffusion's `get_sigmas_karras`, diffusers'
    /// `use_karras_sigmas`).
    #[default]
    Karras,
    /// Uniform in log sigma: k-diffusion's `get_sigmas_exponential`, diffusers'
    /// `use_exponential_sigmas`.
    Exponential,
}

/// The own options of the samplers that step through sigmas (heun, euler, euler-ancestral,
/// dpm-solver++-sde, dpm-solver++-3m-sde).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SigmaOptions {
    #[serde(default)]
    pub sigmas: SigmaSpacing,
}

impl SigmaSpacing {
    /// The name the command line and output folders use.
    pub fn name(self) -> &'static str {
        match self {
            Self::Karras => "karras",
            Self::Exponential => "exponential",
        }
    }
}

/// sigma_0 > ... > sigma_{S-1} > sigma_S = 0, placed by `spacing` between sigma(T-1) and sigma(0).
pub fn sigmas(process: &TensorDiffusion, steps: usize, spacing: SigmaSpacing) -> Vec<f64> {
    let ac = &process.diffusion.alphas_cumprod;
    let sigma = |a: f64| ((1.0 - a) / a).sqrt();
    let (s_max, s_min) = (sigma(ac[ac.len() - 1]), sigma(ac[0]));
    let mut v: Vec<f64> = (0..steps)
        .map(|i| {
            let f = if steps == 1 { 0.0 } else { i as f64 / (steps - 1) as f64 };
            match spacing {
                SigmaSpacing::Karras => (s_max.powf(1.0 / RHO)
                    + f * (s_min.powf(1.0 / RHO) - s_max.powf(1.0 / RHO)))
                .powf(RHO),
                SigmaSpacing::Exponential => (s_max.ln() + f * (s_min.ln() - s_max.ln())).exp(),
            }
        })
        .collect();
    v.push(0.0);
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use ddpm_core::DiffusionConfig;
    use proptest::prelude::*;
    use tch::Device;

    fn process() -> TensorDiffusion {
        TensorDiffusion::from_config(&DiffusionConfig::default(), Device::Cpu).unwrap()
    }

    proptest! {
        /// Both spacings start at sigma(T-1), end at sigma(0) then 0, and fall strictly; the
        /// exponential one has a constant ratio between neighbours.
        #[test]
        fn spacings_run_from_sigma_max_to_sigma_min(steps in 2usize..60) {
            let p = process();
            let ac = &p.diffusion.alphas_cumprod;
            let (s_max, s_min) = (((1.0 - ac[999]) / ac[999]).sqrt(), ((1.0 - ac[0]) / ac[0]).sqrt());
            for spacing in [SigmaSpacing::Karras, SigmaSpacing::Exponential] {
                let s = sigmas(&p, steps, spacing);
                prop_assert_eq!(s.len(), steps + 1);
                prop_assert!((s[0] / s_max - 1.0).abs() < 1e-12);
                prop_assert!((s[steps - 1] / s_min - 1.0).abs() < 1e-12);
                prop_assert_eq!(s[steps], 0.0);
                prop_assert!(s.windows(2).all(|w| w[0] > w[1]));
            }
            let e = sigmas(&p, steps, SigmaSpacing::Exponential);
            let r = e[1] / e[0];
            for w in e[..steps].windows(2) {
                prop_assert!((w[1] / w[0] / r - 1.0).abs() < 1e-10);
            }
        }
    }
}
