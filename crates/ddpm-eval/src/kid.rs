//! Kernel Inception Distance (Binkowski, Sutherland, Arbel and Gretton 2018, "Demystifying MMD
//! GANs", arXiv:1801.01401, eq. (3) and section 4): the unbiased estimator of the squared
//! maximum mean discrepancy with the cubic polynomial kernel k(x, y) = (x.y / d + 1)^3, averaged
//! over random subsets, as clean-fid's `kernel_distance` and torch-fidelity compute it:
//!
//! MMD^2_u = [sum_{i != j} k(x_i, x_j) + k(y_i, y_j)] / (m (m - 1)) - 2 sum_{i,j} k(x_i, y_j) / m^2
//!
//! for each of `num_subsets` (default 100) pairs of subsets of size m = min(n_a, n_b, 1000),
//! each drawn without replacement; the result is the mean over subsets and their standard
//! deviation (torch-fidelity's `kid_std`, divisor S). Our draws come from [`SplitMix64`] (a
//! partial Fisher-Yates shuffle per subset), not numpy's generator, so a value reproduces from
//! its seed; [`kernel_distance_on`] takes the subsets, so a test can hand clean-fid the same ones.

use crate::error::{EvalError, Result};
use ddpm_core::rng::SplitMix64;
use serde::Serialize;
use tch::{Device, Kind, Tensor};

/// clean-fid's default number of subsets.
pub const NUM_SUBSETS: usize = 100;
/// clean-fid's default largest subset size.
pub const MAX_SUBSET_SIZE: usize = 1000;

/// KID: the mean and standard deviation of MMD^2_u over subsets.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Kid {
    pub mean: f64,
    pub std: f64,
    pub subsets: usize,
    pub subset_size: usize,
}

/// The cubic polynomial kernel matrix (x y^T / d + 1)^3 of x [m, d] and y [k, d].
fn kernel(x: &Tensor, y: &Tensor) -> Tensor {
    let d = x.size()[1] as f64;
    (x.matmul(&y.tr()) / d + 1.0).pow_tensor_scalar(3)
}

/// MMD^2_u of two sets of m features each ([m, d], any float kind; computed in f64), eq. (3)
/// of Binkowski et al. with the cubic kernel, written as clean-fid writes it.
pub fn mmd2_unbiased(x: &Tensor, y: &Tensor) -> f64 {
    let (x, y) = (x.to_kind(Kind::Double), y.to_kind(Kind::Double));
    let m = x.size()[0] as f64;
    let a = kernel(&x, &x) + kernel(&y, &y);
    let b = kernel(&x, &y);
    let off_diagonal = a.sum(Kind::Double).double_value(&[]) - a.trace().double_value(&[]);
    (off_diagonal / (m - 1.0) - b.sum(Kind::Double).double_value(&[]) * 2.0 / m) / m
}

/// `count` subsets of `m` distinct indices of 0..n, each the first m entries of a partial
/// Fisher-Yates shuffle drawn from `rng`.
pub fn subsets(n: usize, m: usize, count: usize, rng: &mut SplitMix64) -> Vec<Vec<i64>> {
    assert!(m <= n, "a subset of {m} from {n}");
    let mut all: Vec<i64> = (0..n as i64).collect();
    (0..count)
        .map(|_| {
            for i in 0..m {
                let j = i + rng.below((n - i) as u64) as usize;
                all.swap(i, j);
            }
            all[..m].to_vec()
        })
        .collect()
}

/// KID of features `a` [n_a, d] and `b` [n_b, d]: `num_subsets` pairs of subsets of size
/// min(n_a, n_b, `max_subset_size`), drawn from streams `seed`/0 (of `a`) and `seed`/1 (of `b`).
pub fn kernel_distance(
    a: &Tensor,
    b: &Tensor,
    num_subsets: usize,
    max_subset_size: usize,
    seed: u64,
) -> Result<Kid> {
    let (na, nb) = (a.size()[0] as usize, b.size()[0] as usize);
    let m = na.min(nb).min(max_subset_size);
    if m < 2 || num_subsets == 0 {
        return Err(EvalError::Samples(format!(
            "KID needs subsets of at least 2 features and at least one subset, got {m} and {num_subsets}"
        )));
    }
    let sa = subsets(na, m, num_subsets, &mut SplitMix64::derived(seed, &[0]));
    let sb = subsets(nb, m, num_subsets, &mut SplitMix64::derived(seed, &[1]));
    kernel_distance_on(a, b, &sa, &sb)
}

/// KID over the given subsets: MMD^2_u of `a[subsets_a[s]]` and `b[subsets_b[s]]` for each s.
pub fn kernel_distance_on(
    a: &Tensor,
    b: &Tensor,
    subsets_a: &[Vec<i64>],
    subsets_b: &[Vec<i64>],
) -> Result<Kid> {
    if a.dim() != 2 || b.dim() != 2 || a.size()[1] != b.size()[1] {
        return Err(EvalError::Samples(format!(
            "KID needs two feature matrices of one width, got {:?} and {:?}",
            a.size(),
            b.size()
        )));
    }
    let (a, b) = (a.to_kind(Kind::Double).to_device(Device::Cpu), b.to_kind(Kind::Double));
    let b = b.to_device(Device::Cpu);
    let _g = tch::no_grad_guard();
    let values: Vec<f64> = subsets_a
        .iter()
        .zip(subsets_b)
        .map(|(ia, ib)| {
            let x = a.index_select(0, &Tensor::from_slice(ia));
            let y = b.index_select(0, &Tensor::from_slice(ib));
            mmd2_unbiased(&x, &y)
        })
        .collect();
    let s = values.len() as f64;
    let mean = values.iter().sum::<f64>() / s;
    let std = (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / s).sqrt();
    Ok(Kid { mean, std, subsets: values.len(), subset_size: subsets_a[0].len() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gaussian(n: i64, d: i64, seed: i64) -> Tensor {
        tch::manual_seed(seed);
        Tensor::randn([n, d], (Kind::Double, Device::Cpu))
    }

    #[test]
    fn subsets_are_distinct_indices_drawn_evenly() {
        let mut rng = SplitMix64::new(3);
        let s = subsets(50, 20, 500, &mut rng);
        let mut counts = [0usize; 50];
        for sub in &s {
            let mut sorted = sub.clone();
            sorted.sort();
            sorted.dedup();
            assert_eq!(sorted.len(), 20, "{sub:?}");
            sub.iter().for_each(|&i| counts[i as usize] += 1);
        }
        // Each index is in a subset with probability 20/50: 200 of 500, sd about 11.
        assert!(counts.iter().all(|&c| (150..=250).contains(&c)), "{counts:?}");
        assert_eq!(subsets(5, 5, 1, &mut rng)[0].len(), 5);
    }

    #[test]
    fn one_subset_of_all_features_is_the_full_sample_estimator_in_any_order() {
        let (a, b) = (gaussian(40, 8, 1), gaussian(40, 8, 2) + 0.5);
        let full = mmd2_unbiased(&a, &b);
        let kid = kernel_distance(&a, &b, 1, 40, 9).unwrap();
        assert!((kid.mean - full).abs() < 1e-12 * full.abs(), "{} vs {full}", kid.mean);
        assert_eq!((kid.std, kid.subsets, kid.subset_size), (0.0, 1, 40));
    }

    #[test]
    fn the_subset_mean_is_unbiased_for_the_full_sample_value() {
        // E over random subsets of MMD^2_u on them is MMD^2_u on the full sets (U-statistics).
        let (a, b) = (gaussian(200, 4, 3), gaussian(150, 4, 4) * 1.3);
        let full = mmd2_unbiased(&a.narrow(0, 0, 150), &b);
        let mut means = Vec::new();
        for seed in 0..4 {
            let k = kernel_distance(&a.narrow(0, 0, 150), &b, 200, 50, seed).unwrap();
            means.push((k.mean, k.std / (200f64).sqrt()));
        }
        for (mean, se) in means {
            assert!((mean - full).abs() < 4.0 * se, "{mean} vs {full} (se {se})");
        }
        let k = kernel_distance(&a, &b, 10, 1000, 0).unwrap();
        assert_eq!(k.subset_size, 150);
    }

    #[test]
    fn two_draws_of_one_distribution_are_near_zero_and_shifts_grow_it() {
        let a = gaussian(300, 16, 5);
        let other = kernel_distance(&a, &gaussian(300, 16, 6), 50, 100, 0).unwrap();
        assert!(other.mean.abs() < 4.0 * other.std / 50f64.sqrt(), "{other:?}");
        // The same set on both sides is not two independent draws: subsets drawn apart share
        // about m^2/n features, whose k(x, x) enter the cross term, so KID comes out negative.
        let same = kernel_distance(&a, &a, 50, 100, 0).unwrap();
        assert!(same.mean < 0.0, "{same:?}");
        let mut last = same.mean;
        for shift in [0.25, 0.5, 1.0, 2.0] {
            let k = kernel_distance(&a, &(&a + shift), 50, 100, 0).unwrap();
            assert!(k.mean > last, "shift {shift}: {} after {last}", k.mean);
            last = k.mean;
        }
        let e = kernel_distance(&a, &gaussian(3, 5, 1), 10, 100, 0).unwrap_err().to_string();
        assert!(e.contains("one width"), "{e}");
    }
}
