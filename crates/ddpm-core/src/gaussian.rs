//! Closed-form Gaussian quantities used by the variational bound (Ho et al. 2020, Sec. 3.3 and eq. 5),
//! element-wise in f64. Their tensor twins live in the `tensor` module behind the `tch` feature.

use std::f64::consts::{LN_2, PI};

/// KL(N(m1, e^lv1) || N(m2, e^lv2)) = 0.5 (-1 + lv2 - lv1 + e^(lv1-lv2) + (m1-m2)^2 e^(-lv2)), in nats.
pub fn normal_kl(mean1: f64, logvar1: f64, mean2: f64, logvar2: f64) -> f64 {
    0.5 * (-1.0 + logvar2 - logvar1
        + (logvar1 - logvar2).exp()
        + (mean1 - mean2).powi(2) * (-logvar2).exp())
}

/// The tanh approximation of the standard normal CDF used by Ho et al.'s decoder:
/// Phi(x) ~ 0.5 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
pub fn approx_standard_normal_cdf(x: f64) -> f64 {
    0.5 * (1.0 + ((2.0 / PI).sqrt() * (x + 0.044715 * x.powi(3))).tanh())
}

/// Half the width of one of the 256 bins of 8-bit data scaled to [-1, 1].
pub const BIN_HALF_WIDTH: f64 = 1.0 / 255.0;

/// log p(x0 | x1) of the discretized Gaussian decoder (Ho et al. 2020, eq. 13), in nats:
/// the Gaussian mass of x's bin, with the outermost bins extended to -inf and +inf.
/// `x` is 8-bit data scaled to [-1, 1]; `log_scale` is log sigma.
pub fn discretized_gaussian_log_likelihood(x: f64, mean: f64, log_scale: f64) -> f64 {
    let centered = x - mean;
    let inv_stdv = (-log_scale).exp();
    let cdf_plus = approx_standard_normal_cdf(inv_stdv * (centered + BIN_HALF_WIDTH));
    let cdf_min = approx_standard_normal_cdf(inv_stdv * (centered - BIN_HALF_WIDTH));
    if x < -0.999 {
        cdf_plus.max(1e-12).ln()
    } else if x > 0.999 {
        (1.0 - cdf_min).max(1e-12).ln()
    } else {
        (cdf_plus - cdf_min).max(1e-12).ln()
    }
}

/// Converts a per-dimension mean in nats to bits per dimension.
pub fn nats_to_bits(nats: f64) -> f64 {
    nats / LN_2
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn kl_of_standard_normals_is_zero() {
        assert_eq!(normal_kl(0.0, 0.0, 0.0, 0.0), 0.0);
        // KL(N(1,1) || N(0,1)) = 1/2.
        assert!((normal_kl(1.0, 0.0, 0.0, 0.0) - 0.5).abs() < 1e-15);
    }

    #[test]
    fn cdf_approximation_is_close_to_erf() {
        // Phi(1) = 0.8413447460685429; the tanh form is good to ~1e-4.
        assert!((approx_standard_normal_cdf(1.0) - 0.841_344_746_068_542_9).abs() < 2e-4);
        assert_eq!(approx_standard_normal_cdf(0.0), 0.5);
    }

    proptest! {
        #[test]
        fn kl_is_nonnegative(m1 in -5.0..5.0f64, lv1 in -8.0..3.0f64, m2 in -5.0..5.0f64, lv2 in -8.0..3.0f64) {
            prop_assert!(normal_kl(m1, lv1, m2, lv2) >= -1e-12);
        }

        #[test]
        fn kl_of_equal_gaussians_is_zero(m in -5.0..5.0f64, lv in -10.0..3.0f64) {
            prop_assert!(normal_kl(m, lv, m, lv).abs() < 1e-12);
        }

        /// The 256 bins partition the real line, so their probabilities sum to one.
        #[test]
        fn discretized_likelihood_sums_to_one(mean in -1.2..1.2f64, log_scale in -4.0..0.5f64) {
            let total: f64 = (0..256)
                .map(|k| discretized_gaussian_log_likelihood(k as f64 / 127.5 - 1.0, mean, log_scale).exp())
                .sum();
            // Bins below the 1e-12 floor each add at most 1e-12.
            prop_assert!((total - 1.0).abs() < 1e-9, "sum = {}", total);
        }
    }
}
