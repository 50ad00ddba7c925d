//! Distances between 2-D point sets, for the toy data where Inception makes no sense.

use ddpm_core::rng::SplitMix64;

/// Sliced 2-Wasserstein distance: the square root of the mean, over `projections` random
/// directions, of the squared W2 between the 1-D projections (quantiles matched; sets of
/// different sizes are compared at `quantiles` evenly spaced quantile levels).
pub fn sliced_wasserstein(a: &[[f32; 2]], b: &[[f32; 2]], projections: usize, seed: u64) -> f64 {
    let mut rng = SplitMix64::new(seed);
    let q = a.len().min(b.len()).clamp(1, 2000);
    let quantile = |sorted: &[f64], u: f64| {
        let pos = u * (sorted.len() - 1) as f64;
        let (i, f) = (pos.floor() as usize, pos - pos.floor());
        if i + 1 < sorted.len() { sorted[i] * (1.0 - f) + sorted[i + 1] * f } else { sorted[i] }
    };
    let mut total = 0.0;
    for _ in 0..projections {
        let angle = rng.next_f64() * std::f64::consts::TAU;
        let (c, s) = (angle.cos(), angle.sin());
        let project = |p: &[[f32; 2]]| {
            let mut v: Vec<f64> = p.iter().map(|x| x[0] as f64 * c + x[1] as f64 * s).collect();
            v.sort_by(|x, y| x.total_cmp(y));
            v
        };
        let (pa, pb) = (project(a), project(b));
        let mut sq = 0.0;
        for k in 0..q {
            let u = (k as f64 + 0.5) / q as f64;
            sq += (quantile(&pa, u) - quantile(&pb, u)).powi(2);
        }
        total += sq / q as f64;
    }
    (total / projections as f64).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shifts_are_measured_exactly() {
        let a: Vec<[f32; 2]> =
            (0..500).map(|i| [(i as f32 * 0.37).sin(), (i as f32 * 0.11).cos()]).collect();
        assert!(sliced_wasserstein(&a, &a, 50, 0) < 1e-12);
        // Translating by (1, 0) moves each projection by cos(theta): SW2 = sqrt(E cos^2) = 1/sqrt(2).
        let b: Vec<[f32; 2]> = a.iter().map(|p| [p[0] + 1.0, p[1]]).collect();
        let d = sliced_wasserstein(&a, &b, 4000, 1);
        assert!((d - 0.5f64.sqrt()).abs() < 0.01, "{d}");
    }
}
