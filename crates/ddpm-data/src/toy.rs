//! Embedded 2-D data sets, generated from a seed (nothing to download), scaled to lie within
//! [-1, 1]^2 like image data (so the samplers' x0 clipping never cuts them):
//! - `swissroll`: Sohl-Dickstein et al. 2015's figure: t = 1.5 pi (1 + 2u), u ~ U(0, 1),
//!   points (t cos t, t sin t) / 15 plus N(0, 0.007^2) noise (radius 0.31 to 0.94);
//! - `gaussians8`: 8 Gaussians with std 0.04 centred on the circle of radius 0.8;
//! - `moons`: sklearn's `make_moons` (two interleaved half circles, noise 0.05), centred and
//!   scaled by 1/1.8 to about [-0.9, 0.9] x [-0.45, 0.45].

use crate::dataset::PointSet;
use ddpm_core::rng::SplitMix64;
use std::f64::consts::PI;

fn points(name: &str, n: usize, mut f: impl FnMut(usize) -> [f64; 2]) -> PointSet {
    let points = (0..n).flat_map(|i| f(i).map(|v| v as f32)).collect();
    PointSet { n, dim: 2, points, name: name.into() }
}

pub fn swissroll(n: usize, seed: u64) -> PointSet {
    let mut r = SplitMix64::derived(seed, &[0x5117]);
    points("swissroll", n, |_| {
        let t = 1.5 * PI * (1.0 + 2.0 * r.next_f64());
        [t * t.cos() / 15.0 + 0.007 * r.next_normal(), t * t.sin() / 15.0 + 0.007 * r.next_normal()]
    })
}

pub fn gaussians8(n: usize, seed: u64) -> PointSet {
    let mut r = SplitMix64::derived(seed, &[0x6a8]);
    points("gaussians8", n, |_| {
        let k = r.below(8) as f64;
        let a = 2.0 * PI * k / 8.0;
        [0.8 * a.cos() + 0.04 * r.next_normal(), 0.8 * a.sin() + 0.04 * r.next_normal()]
    })
}

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
}
