//! Embedded 2-D data sets, generated from a seed (nothing to download), scaled to lie within
//! [-1, 1]^2 like image data (so the samplers' x0 clipping never cuts them). Each draws from
//! its own stream `SplitMix64::derived(seed, [tag])`, in point order:
//! - `swissroll`: the figure of Sohl-Dickstein et al. 2015 (arXiv:1503.03585): u ~ U(0, 1),
//!   t = 1.5 pi (1 + 2u), the point (t cos t, t sin t) / 15 plus N(0, 0.007^2) noise on each
//!   coordinate (radius 0.31 to 0.94; dividing by 15 rather than 10 keeps the roll inside
//!   [-1, 1]^2);
//! - `gaussians8`: a centre drawn uniformly from the 8 points (0.8 cos(2 pi k/8),
//!   0.8 sin(2 pi k/8)) plus N(0, 0.04^2) noise per coordinate;
//! - `moons`: sklearn's `make_moons`: even points on the upper half circle (cos a, sin a),
//!   odd points on the lower one (1 - cos a, 1/2 - sin a), a ~ U(0, pi), noise N(0, 0.05^2),
//!   then shifted by (-1/2, -1/4) and divided by 1.8 to about [-0.9, 0.9] x [-0.5, 0.5].

use crate::dataset::PointSet;
use ddpm_core::rng::SplitMix64;
use std::f64::consts::PI;

fn points(name: &str, n: usize, mut f: impl FnMut(usize) -> [f64; 2]) -> PointSet {
    let points = (0..n).flat_map(|i| f(i).map(|v| v as f32)).collect();
    PointSet { n, dim: 2, points, name: name.into() }
}

/// `n` points of the swiss roll.
pub fn swissroll(n: usize, seed: u64) -> PointSet {
    let mut r = SplitMix64::derived(seed, &[0x5117]);
    points("swissroll", n, |_| {
        let t = 1.5 * PI * (1.0 + 2.0 * r.next_f64());
        [t * t.cos() / 15.0 + 0.007 * r.next_normal(), t * t.sin() / 15.0 + 0.007 * r.next_normal()]
    })
}

/// `n` points of the mixture of 8 Gaussians on a circle.
pub fn gaussians8(n: usize, seed: u64) -> PointSet {
    let mut r = SplitMix64::derived(seed, &[0x6a8]);
    points("gaussians8", n, |_| {
        let k = r.below(8) as f64;
        let a = 2.0 * PI * k / 8.0;
        [0.8 * a.cos() + 0.04 * r.next_normal(), 0.8 * a.sin() + 0.04 * r.next_normal()]
    })
}

/// `n` points of two interleaved half moons, alternating between them.
pub fn moons(n: usize, seed: u64) -> PointSet {
    let mut r = SplitMix64::derived(seed, &[0x3005]);
    points("moons", n, |i| {
        let a = PI * r.next_f64();
        let (x, y) = if i % 2 == 0 { (a.cos(), a.sin()) } else { (1.0 - a.cos(), 0.5 - a.sin()) };
        [(x - 0.5 + 0.05 * r.next_normal()) / 1.8, (y - 0.25 + 0.05 * r.next_normal()) / 1.8]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toy_sets_are_deterministic_and_bounded() {
        for f in [swissroll, gaussians8, moons] {
            let a = f(2000, 1);
            assert_eq!(a, f(2000, 1));
            assert_ne!(a, f(2000, 2));
            assert!(a.points.iter().all(|v| v.abs() < 1.0), "{}", a.name);
        }
        // Swiss roll radius grows with the angle: between 1.5 pi / 15 and 4.5 pi / 15.
        let s = swissroll(1000, 0);
        for c in s.points.chunks(2) {
            let r = ((c[0] * c[0] + c[1] * c[1]) as f64).sqrt();
            assert!(r > 0.27 && r < 0.98, "{r}");
        }
    }

    #[test]
    fn gaussians8_fills_its_eight_modes_evenly() {
        let s = gaussians8(8000, 3);
        let mut counts = [0usize; 8];
        for c in s.points.chunks(2) {
            let k = (c[1].atan2(c[0]) / (std::f32::consts::PI / 4.0)).round().rem_euclid(8.0);
            let (cx, cy) = ((k * PI as f32 / 4.0).cos() * 0.8, (k * PI as f32 / 4.0).sin() * 0.8);
            assert!((c[0] - cx).hypot(c[1] - cy) < 0.25, "{c:?} far from mode {k}");
            counts[k as usize] += 1;
        }
        assert!(counts.iter().all(|&c| (900..=1100).contains(&c)), "{counts:?}");
    }

    #[test]
    fn moons_alternate_between_two_half_circles() {
        let s = moons(2000, 5);
        for (i, c) in s.points.chunks(2).enumerate() {
            // Undo the centring and scaling, then measure the distance to the moon's centre.
            let (x, y) = (c[0] as f64 * 1.8 + 0.5, c[1] as f64 * 1.8 + 0.25);
            let (cx, cy) = if i % 2 == 0 { (0.0, 0.0) } else { (1.0, 0.5) };
            let r = (x - cx).hypot(y - cy);
            assert!((r - 1.0).abs() < 0.3, "point {i} at radius {r}");
            assert!(c[0].abs() < 1.0 && c[1].abs() < 0.75);
        }
    }
}
