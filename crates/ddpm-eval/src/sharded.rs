//! One Inception pass shared by the ranks of a torchrun job (`torchrun ... ddpm-eval fid`).
//!
//! The batches of `batch` images are shared out in contiguous shares ([`ddpm_dist::Dist::shard`]);
//! each rank runs its batches and adds what the metrics need to sums that one all-reduce
//! completes: the pool3 features' count, sum and sum of outer products in f64
//! ([`FeatureMoments`]: FID's mu and sigma), the same for the spatial features (sFID), and the
//! Inception Score's per-split sums ([`IsSums`]); precision and recall need the features
//! themselves, which are gathered to rank 0 in image order. A batch holds the same images whichever rank
//! runs it, so every feature is one process's bit for bit and the statistics differ from one
//! process's only in the order of the f64 sums. One process takes the same path with one share.

use crate::error::Result;
use crate::fid::Stats;
use crate::images::to_rgb;
use crate::inception::{FidInception, SPATIAL_DIM};
use crate::inception_score::IsSums;
use crate::samples::Samples;
use ddpm_dist::{Dist, FeatureMoments};
use tch::{Device, Tensor};

/// What a pass keeps besides the pool3 sums.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Needs {
    /// The spatial features' sums (sFID).
    pub spatial: bool,
    /// The Inception Score's sums.
    pub is: bool,
    /// Every image's pool3 features (precision/recall).
    pub pool3_rows: bool,
}

/// What the ranks gathered together: the sums the same on every rank, the pool3 rows on rank 0.
#[derive(Debug)]
pub struct ShardedFeatures {
    pub pool3: FeatureMoments,
    pub spatial: Option<FeatureMoments>,
    pub is: Option<IsSums>,
    /// [N, 2048] in image order, on the CPU: on rank 0 alone.
    pub pool3_rows: Option<Tensor>,
}

impl ShardedFeatures {
    /// mu and sigma (f64, on the CPU) of the pool3 features, with those of the spatial
    /// features when they were kept.
    pub fn stats(&self) -> Result<Stats> {
        let stats = moments_stats(&self.pool3)?;
        Ok(match &self.spatial {
            Some(s) => stats.with_spatial(moments_stats(s)?),
            None => stats,
        })
    }
}

fn moments_stats(m: &FeatureMoments) -> Result<Stats> {
    let (mu, sigma) = m.mean_cov()?;
    Ok(Stats { mu: mu.to_device(Device::Cpu), sigma: sigma.to_device(Device::Cpu), spatial: None })
}

/// The Inception pass over `images` ([N, C, H, W] in [0, 1]) by the ranks of `dist` together;
/// `progress(done, of)` counts this rank's images. Every rank calls it with the same images.
pub fn inception_pass(
    net: &FidInception,
    images: &Samples,
    batch: usize,
    dist: &Dist,
    needs: Needs,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<ShardedFeatures> {
    let device = net.vs.device();
    let n = images.len();
    let mut pool3 = FeatureMoments::new(2048, device);
    let mut spatial = needs.spatial.then(|| FeatureMoments::new(SPATIAL_DIM, device));
    let mut is = needs.is.then(|| IsSums::new(n, 10, 1008, device));
    let mut rows = Vec::new();
    let mine = images.batches(batch, dist);
    let of: usize = mine.iter().map(|&(_, b)| b).sum();
    let mut done = 0;
    for (first, b) in mine {
        let x = to_rgb(&images.rows(first, b)?, "images")?;
        let out = net.forward_with_spatial(&x, needs.spatial);
        pool3.add(&out.pool3)?;
        if let (Some(m), Some(f)) = (&mut spatial, &out.spatial) {
            m.add(f)?;
        }
        if let Some(is) = &mut is {
            is.add(first, &out.logits);
        }
        if needs.pool3_rows {
            rows.push(out.pool3.to_device(Device::Cpu));
        }
        done += b;
        progress(done, of);
    }
    pool3.all_reduce(dist)?;
    if let Some(m) = &mut spatial {
        m.all_reduce(dist)?;
    }
    if let Some(is) = &mut is {
        is.all_reduce(dist)?;
    }
    let pool3_rows = if needs.pool3_rows {
        let mine = match rows.is_empty() {
            true => Tensor::zeros([0, 2048], (tch::Kind::Float, Device::Cpu)),
            false => Tensor::cat(&rows, 0),
        };
        // To rank 0 alone, which computes precision and recall.
        dist.gather_rows(&mine.to_device(dist.device()))?.map(|all| all.to_device(Device::Cpu))
    } else {
        None
    };
    Ok(ShardedFeatures { pool3, spatial, is, pool3_rows })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inception_score::inception_score;
    use tch::Kind;

    /// pytorch-fid's architecture with random weights, batch norms near the identity.
    fn random_inception() -> FidInception {
        let net = FidInception::new(Device::Cpu);
        let _rng = ddpm_nets::torch_rng_lock();
        tch::manual_seed(5);
        tch::no_grad(|| {
            for (name, t) in net.vs.variables() {
                let size = t.size();
                let opts = (Kind::Float, Device::Cpu);
                let v = if name.ends_with("running_var") {
                    Tensor::rand(size.as_slice(), opts) + 0.5
                } else if size.len() == 4 {
                    let fan_in = (size[1] * size[2] * size[3]) as f64;
                    Tensor::randn(size.as_slice(), opts) * (2.0 / fan_in).sqrt()
                } else if name.ends_with("bn.weight") {
                    Tensor::randn(size.as_slice(), opts) * 0.1 + 1.0
                } else {
                    Tensor::randn(size.as_slice(), opts) * 0.05
                };
                t.shallow_clone().copy_(&v);
            }
        });
        net
    }

    /// One process: the sums give the two-pass statistics of the features (pool3 and spatial),
    /// the Inception Score of the logits, and the features themselves. (The two-rank
    /// equivalence is `tests/sharded_fid.rs`.)
    #[test]
    fn one_share_gives_the_statistics_of_all_features() {
        let net = random_inception();
        // 11 images: 10 IS splits of 1 (a score of 1, but every sum taken), 1 left over.
        let images = (Tensor::arange(11 * 3 * 16 * 16, (Kind::Float, Device::Cpu)) * 0.37)
            .sin()
            .abs()
            .view([11, 3, 16, 16]);
        let all = Needs { spatial: true, is: true, pool3_rows: true };
        let single = Dist::single(Device::Cpu);
        let set = Samples::Memory(images.shallow_clone());
        let f = inception_pass(&net, &set, 5, &single, all, &mut |_, _| {}).unwrap();
        // The network batch by batch, as the pass runs it.
        let outs: Vec<_> = (0..11)
            .step_by(5)
            .map(|f| net.forward_with_spatial(&images.narrow(0, f, 5.min(11 - f)), true))
            .collect();
        let cat = |get: &dyn Fn(&crate::inception::InceptionOutput) -> Tensor| {
            Tensor::cat(&outs.iter().map(get).collect::<Vec<_>>(), 0)
        };
        let pool3 = cat(&|o| o.pool3.shallow_clone());
        let logits = cat(&|o| o.logits.shallow_clone());
        let spatial = cat(&|o| o.spatial.as_ref().unwrap().shallow_clone());
        let two_pass = Stats::from_features_with_spatial(&pool3, &spatial).unwrap();
        let got = f.stats().unwrap();
        let rel = |a: &Tensor, b: &Tensor| ((a - b).abs().max() / b.abs().max()).double_value(&[]);
        let (gs, ws) = (got.spatial.as_ref().unwrap(), two_pass.spatial.as_ref().unwrap());
        for (what, a, b) in [
            ("mu", &got.mu, &two_pass.mu),
            ("sigma", &got.sigma, &two_pass.sigma),
            ("mu_s", &gs.mu, &ws.mu),
            ("sigma_s", &gs.sigma, &ws.sigma),
        ] {
            assert!(rel(a, b) < 1e-9, "{what}: {}", rel(a, b));
        }
        assert!(f.pool3_rows.as_ref().unwrap().equal(&pool3));
        let (m, s) = f.is.as_ref().unwrap().score();
        let (wm, ws) = inception_score(&logits, 10);
        assert!((m - wm).abs() < 1e-12 * wm, "{m} vs {wm}");
        assert!((s - ws).abs() < 1e-9, "{s} vs {ws}");
    }
}
