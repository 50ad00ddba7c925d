//! Inception Score (Salimans et al. 2016): exp(E_x KL(p(y|x) || p(y))) over 10 splits, with
//! p(y|x) the softmax over all 1008 Inception logits, reported as mean and (population) std.
//!
//! Split k holds images k * (N / 10) .. (k + 1) * (N / 10) (the remainder is left out), and
//! its score is exp(E_x sum_y p log p - sum_y p(y) log p(y)) with p(y) the split's mean of
//! p(y|x): so [`IsSums`] can gather, batch by batch and rank by rank, each split's sum of
//! p(y|x) and of sum_y p log p, and one all-reduce gives the score of all N images.

use ddpm_dist::Dist;
use tch::{Device, Kind, Tensor};

/// (mean, std) of the score over `splits` equal parts of `logits` [N, classes].
pub fn inception_score(logits: &Tensor, splits: usize) -> (f64, f64) {
    let _g = tch::no_grad_guard();
    let p = logits.to_kind(Kind::Double).to_device(Device::Cpu).softmax(1, Kind::Double);
    let n = p.size()[0];
    let part = n / splits as i64;
    let scores: Vec<f64> = (0..splits as i64)
        .map(|k| {
            let pk = p.narrow(0, k * part, part);
            let py = pk.mean_dim([0i64].as_slice(), true, Kind::Double);
            let kl = (&pk * (pk.clamp_min(1e-30).log() - py.clamp_min(1e-30).log()))
                .sum_dim_intlist([1i64].as_slice(), false, Kind::Double);
            kl.mean(Kind::Double).double_value(&[]).exp()
        })
        .collect();
    let mean = scores.iter().sum::<f64>() / scores.len() as f64;
    let var = scores.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / scores.len() as f64;
    (mean, var.sqrt())
}

/// The Inception Score's sums over images, per split, f64: what [`inception_score`] computes
/// from all logits at once, accumulated from batches of any images (on any rank).
#[derive(Debug)]
pub struct IsSums {
    /// Images per split: N / splits.
    part: i64,
    /// Sum over the split's images of p(y|x), [splits, classes].
    p_sum: Tensor,
    /// Sum over the split's images of sum_y p log p, [splits].
    plogp_sum: Tensor,
}

impl IsSums {
    /// Empty sums for `n` images in `splits` splits over `classes` classes, on `device`.
    pub fn new(n: usize, splits: usize, classes: i64, device: Device) -> Self {
        let z = |shape: &[i64]| Tensor::zeros(shape, (Kind::Double, device));
        Self {
            part: (n / splits) as i64,
            p_sum: z(&[splits as i64, classes]),
            plogp_sum: z(&[splits as i64]),
        }
    }

    /// Adds the logits [b, classes] of images `first .. first + b` (global indices).
    pub fn add(&mut self, first: usize, logits: &Tensor) {
        let _g = tch::no_grad_guard();
        let splits = self.plogp_sum.size()[0];
        let device = self.p_sum.device();
        let p = logits.to_device(device).to_kind(Kind::Double).softmax(1, Kind::Double);
        let b = p.size()[0];
        let split = (Tensor::arange_start(first as i64, first as i64 + b, (Kind::Int64, device))
            .divide_scalar_mode(self.part.max(1), "floor"))
        .to_kind(Kind::Int64);
        // Images past the last whole split take no part.
        let kept = split.lt(splits).nonzero().squeeze_dim(1);
        let (p, split) = (p.index_select(0, &kept), split.index_select(0, &kept));
        let plogp =
            (&p * p.clamp_min(1e-30).log()).sum_dim_intlist([1i64].as_slice(), false, Kind::Double);
        let _ = self.p_sum.index_add_(0, &split, &p);
        let _ = self.plogp_sum.index_add_(0, &split, &plogp);
    }

    /// Adds every rank's sums into every rank's (one collective).
    pub fn all_reduce(&mut self, dist: &Dist) -> ddpm_dist::Result<()> {
        if dist.backend().is_none() {
            return Ok(());
        }
        let device = dist.device();
        let (p, plogp) = (self.p_sum.to_device(device), self.plogp_sum.to_device(device));
        dist.all_reduce_sum(&[p.shallow_clone(), plogp.shallow_clone()])?;
        self.p_sum = p.to_device(self.p_sum.device());
        self.plogp_sum = plogp.to_device(self.plogp_sum.device());
        Ok(())
    }

    /// (mean, std) of the score over the splits, as [`inception_score`] gives it.
    pub fn score(&self) -> (f64, f64) {
        let _g = tch::no_grad_guard();
        let part = self.part as f64;
        let py = &self.p_sum / part;
        let py_log_py = (&py * py.clamp_min(1e-30).log()).sum_dim_intlist(
            [1i64].as_slice(),
            false,
            Kind::Double,
        );
        let kl = &self.plogp_sum / part - py_log_py;
        let scores = Vec::<f64>::try_from(kl.exp().to_device(Device::Cpu)).expect("f64 scores");
        let mean = scores.iter().sum::<f64>() / scores.len() as f64;
        let var = scores.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / scores.len() as f64;
        (mean, var.sqrt())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Batches in any order and sizes, with a remainder past the last split, give the score of
    /// all logits at once.
    #[test]
    fn sums_over_batches_give_the_score_of_all_logits() {
        tch::manual_seed(3);
        let logits = Tensor::randn([103, 1008], (Kind::Float, Device::Cpu)) * 3.0;
        let want = inception_score(&logits, 10);
        let mut sums = IsSums::new(103, 10, 1008, Device::Cpu);
        for (first, b) in [(50, 53), (0, 7), (7, 43)] {
            sums.add(first, &logits.narrow(0, first as i64, b));
        }
        let got = sums.score();
        assert!((got.0 - want.0).abs() < 1e-12 * want.0, "{got:?} {want:?}");
        assert!((got.1 - want.1).abs() < 1e-9 * want.1.max(1e-3), "{got:?} {want:?}");
        assert!(want.0 > 1.5, "{want:?}");
    }

    #[test]
    fn confident_distinct_classes_score_the_class_count() {
        // 10 images per split, each confidently a different one of 10 classes: score 10.
        let l = Tensor::zeros([100, 1008], (Kind::Double, Device::Cpu)) - 50.0;
        for i in 0..100 {
            let _ = l.get(i).get(i % 10).fill_(50.0);
        }
        let (m, s) = inception_score(&l, 10);
        assert!((m - 10.0).abs() < 1e-6 && s < 1e-9, "{m} {s}");
        // Identical predictions everywhere: score 1.
        let (m, _) = inception_score(&Tensor::zeros([20, 1008], (Kind::Float, Device::Cpu)), 10);
        assert!((m - 1.0).abs() < 1e-12);
    }
}
