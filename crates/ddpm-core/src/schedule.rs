//! Beta schedules beta_1..beta_T of the forward process q(x_t | x_{t-1}) = N(sqrt(1-beta_t) x_{t-1}, beta_t I),
//! eq. (2) of Ho et al. 2020, "Denoising Diffusion Probabilistic Models", arXiv:2006.11239.
//!
//! All schedules are computed in f64. Schedules are append-only: once a schedule's
//! numbers are committed, the golden-value tests keep them.

use crate::error::{CoreError, Result};
use std::f64::consts::PI;

/// A named way to produce the betas of a T-step forward process.
#[derive(Debug, Clone, PartialEq)]
pub enum BetaSchedule {
    /// Linear from `beta_start` to `beta_end` (Ho et al. 2020, Sec. 4: 1e-4 to 0.02 at T = 1000).
    /// With `scale_to_steps`, both endpoints are multiplied by 1000/T, as improved-diffusion does,
    /// so that the schedule keeps its shape for other T.
    Linear { beta_start: f64, beta_end: f64, scale_to_steps: bool },
    /// Cosine schedule of Nichol & Dhariwal 2021 (arXiv:2102.09672, eq. 17):
    /// abar(t) = cos^2(((t/T) + s)/(1 + s) * pi/2), beta_i = min(1 - abar((i+1)/T)/abar(i/T), max_beta).
    Cosine { s: f64, max_beta: f64 },
    /// Linear in sqrt(beta): beta_i = (sqrt(start) + i (sqrt(end) - sqrt(start))/(T-1))^2 (Ho et al.'s "quad").
    Quadratic { beta_start: f64, beta_end: f64 },
    /// beta_i = sigmoid(linspace(-6, 6)) (end - start) + start (the DDIM code base's "sigmoid").
    Sigmoid { beta_start: f64, beta_end: f64 },
    /// The same beta at every step (Ho et al.'s "const").
    Constant { beta: f64 },
    /// beta_t = 1/(T - t + 1): 1/T, 1/(T-1), ..., 1 (Sohl-Dickstein et al. 2015's Jensen-Shannon schedule).
    Jsd,
    /// Betas given by the user, one per step.
    Custom(Vec<f64>),
}

impl BetaSchedule {
    /// The paper's default: linear 1e-4 to 0.02, not rescaled.
    pub fn paper_linear() -> Self {
        Self::Linear { beta_start: 1e-4, beta_end: 0.02, scale_to_steps: false }
    }

    /// The improved-DDPM cosine schedule with s = 0.008 and betas capped at 0.999.
    pub fn paper_cosine() -> Self {
        Self::Cosine { s: 0.008, max_beta: 0.999 }
    }

    /// beta_1..beta_T (index 0 holds beta_1), validated to lie in (0, 1].
    pub fn betas(&self, num_steps: usize) -> Result<Vec<f64>> {
        if num_steps == 0 {
            return Err(CoreError::TooFewSteps { min: 1, got: 0 });
        }
        let t = num_steps;
        let betas = match *self {
            Self::Linear { beta_start, beta_end, scale_to_steps } => {
                let scale = if scale_to_steps { 1000.0 / t as f64 } else { 1.0 };
                linspace(scale * beta_start, scale * beta_end, t)
            }
            Self::Cosine { s, max_beta } => {
                if !(s >= 0.0 && s.is_finite()) {
                    return Err(CoreError::BadParameter {
                        name: "cosine_s",
                        expected: "a finite number >= 0",
                        value: s,
                    });
                }
                if !(max_beta > 0.0 && max_beta <= 1.0) {
                    return Err(CoreError::BadParameter {
                        name: "max_beta",
                        expected: "in (0, 1]",
                        value: max_beta,
                    });
                }
                let abar = |u: f64| ((u + s) / (1.0 + s) * PI / 2.0).cos().powi(2);
                // Float division: `i / t` on integers would give an all-zero schedule.
                (0..t)
                    .map(|i| {
                        let t1 = i as f64 / t as f64;
                        let t2 = (i + 1) as f64 / t as f64;
                        (1.0 - abar(t2) / abar(t1)).min(max_beta)
                    })
                    .collect()
            }
            Self::Quadratic { beta_start, beta_end } => {
                for (name, v) in [("beta_start", beta_start), ("beta_end", beta_end)] {
                    if !(v >= 0.0) {
                        return Err(CoreError::BadParameter { name, expected: ">= 0", value: v });
                    }
                }
                linspace(beta_start.sqrt(), beta_end.sqrt(), t).into_iter().map(|b| b * b).collect()
            }
            Self::Sigmoid { beta_start, beta_end } => linspace(-6.0, 6.0, t)
                .into_iter()
                .map(|x| 1.0 / (1.0 + (-x).exp()) * (beta_end - beta_start) + beta_start)
                .collect(),
            Self::Constant { beta } => vec![beta; t],
            Self::Jsd => linspace(t as f64, 1.0, t).into_iter().map(|x| 1.0 / x).collect(),
            Self::Custom(ref betas) => {
                if betas.len() != t {
                    return Err(CoreError::BetaCount { expected: t, got: betas.len() });
                }
                betas.clone()
            }
        };
        validate_betas(&betas)?;
        Ok(betas)
    }
}

/// Checks 0 < beta <= 1 for every beta (improved-diffusion's assert, as a typed error).
pub fn validate_betas(betas: &[f64]) -> Result<()> {
    if betas.is_empty() {
        return Err(CoreError::TooFewSteps { min: 1, got: 0 });
    }
    for (index, &value) in betas.iter().enumerate() {
        if !(value > 0.0 && value <= 1.0) {
            return Err(CoreError::BetaOutOfRange { index, value });
        }
    }
    Ok(())
}

/// `numpy.linspace(start, stop, n)` exactly: start + i * step, with the last point set to stop.
pub fn linspace(start: f64, stop: f64, n: usize) -> Vec<f64> {
    match n {
        0 => vec![],
        1 => vec![start],
        _ => {
            let step = (stop - start) / (n - 1) as f64;
            let mut out: Vec<f64> = (0..n).map(|i| i as f64 * step + start).collect();
            out[n - 1] = stop;
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linspace_matches_numpy_endpoints() {
        let v = linspace(1e-4, 0.02, 1000);
        assert_eq!(v.len(), 1000);
        assert_eq!(v[0], 1e-4);
        assert_eq!(v[999], 0.02);
        assert_eq!(linspace(3.0, 5.0, 1), vec![3.0]);
    }

    /// Regression: two public Rust ports compute `i / T` on integers and get all-zero betas.
    #[test]
    fn cosine_schedule_is_not_all_zero() {
        let b = BetaSchedule::paper_cosine().betas(1000).unwrap();
        assert!(b.iter().all(|&x| x > 0.0));
        assert!((b[0] - 4.1284e-5).abs() / 4.1284e-5 < 1e-4, "beta_0 = {}", b[0]);
        assert_eq!(b[999], 0.999);
        assert_eq!(b.iter().filter(|&&x| x == 0.999).count(), 1);
    }

    #[test]
    fn jsd_is_one_over_t() {
        let b = BetaSchedule::Jsd.betas(4).unwrap();
        let want = [0.25, 1.0 / 3.0, 0.5, 1.0];
        for (x, y) in b.iter().zip(want) {
            assert!((x - y).abs() < 1e-15);
        }
    }

    #[test]
    fn improved_diffusion_scaling_is_an_option() {
        let plain = BetaSchedule::paper_linear().betas(4000).unwrap();
        assert_eq!(plain[3999], 0.02);
        let scaled =
            BetaSchedule::Linear { beta_start: 1e-4, beta_end: 0.02, scale_to_steps: true }
                .betas(4000)
                .unwrap();
        assert!((scaled[3999] - 0.005).abs() < 1e-15);
    }

    #[test]
    fn out_of_range_betas_are_rejected_with_their_index() {
        let err = BetaSchedule::Linear { beta_start: -1e-4, beta_end: 0.02, scale_to_steps: false }
            .betas(10)
            .unwrap_err();
        assert_eq!(err, CoreError::BetaOutOfRange { index: 0, value: -1e-4 });
        let err = BetaSchedule::Constant { beta: 1.5 }.betas(3).unwrap_err();
        assert!(err.to_string().contains("1.5"), "{err}");
        assert!(BetaSchedule::Custom(vec![0.1, 0.0]).betas(2).is_err());
        assert_eq!(
            BetaSchedule::Custom(vec![0.1]).betas(2).unwrap_err(),
            CoreError::BetaCount { expected: 2, got: 1 }
        );
        assert_eq!(
            BetaSchedule::Jsd.betas(0).unwrap_err(),
            CoreError::TooFewSteps { min: 1, got: 0 }
        );
    }
}
