//! Improved precision and recall (Kynkaanniemi et al. 2019, "Improved Precision and Recall
//! Metric for Assessing Generative Models", arXiv:1904.06991), computed exactly as
//! guided-diffusion's `evaluations/evaluator.py` does (`ManifoldEstimator`, `DistanceBlock`,
//! `Evaluator.compute_prec_recall`), over Inception pool3 features:
//!
//! - distances are **squared** Euclidean distances `max(|u|^2 - 2 u.v + |v|^2, 0)`
//!   (`_batch_pairwise_distances`), taken in blocks of 10,000 x 10,000 rows (`row_batch_size`,
//!   `col_batch_size`);
//! - each block is computed in **float16** (inputs cast to f16, every op rounded to f16, as the
//!   TF graph does) and used as f32 when all its values are finite; a block with an overflow
//!   (a squared norm above 65504) is recomputed in f32 (`tf.cond(reduce_all(is_finite(..)))`).
//!   [`DistancePrecision::Float`] computes every block in f32 instead;
//! - the radius of a point is the distance to its k-th nearest neighbour in its own set, k = 3
//!   (`nhood_sizes=(3,)`): the value at sorted position k of its row of distances to the whole
//!   set, the row including the point itself (distance 0), so self is excluded by counting it
//!   as position 0 (`np.partition(row, [0..k])[:, k]`);
//! - precision is the share of samples within (`<=`) the radius of some reference point,
//!   recall the share of reference points within the radius of some sample; no radius
//!   clamping (`clamp_to_percentile=None`); the realism score's `eps` plays no part here.
//!
//! Everything runs on the features' device, one block at a time, so memory stays bounded
//! (about 1 GB for a 10,000 x 10,000 block) for 50,000 x 50,000 comparisons.

use crate::error::{EvalError, Result};
use tch::{Kind, Tensor};

/// The arithmetic of the distance blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DistancePrecision {
    /// The evaluator's: f16 blocks, recomputed in f32 where any value is not finite.
    #[default]
    Half,
    /// f32 throughout.
    Float,
}

/// The evaluator's `ManifoldEstimator` settings; `Default` is its defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ManifoldConfig {
    /// Neighbourhood size k (`nhood_sizes = (3,)`).
    pub k: usize,
    /// Rows per distance block (`row_batch_size = 10000`).
    pub row_batch: usize,
    /// Columns per distance block (`col_batch_size = 10000`).
    pub col_batch: usize,
    pub distances: DistancePrecision,
}

impl Default for ManifoldConfig {
    fn default() -> Self {
        Self { k: 3, row_batch: 10_000, col_batch: 10_000, distances: DistancePrecision::Half }
    }
}

/// Precision (samples on the reference manifold) and recall (reference on the samples' manifold).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PrecisionRecall {
    pub precision: f64,
    pub recall: f64,
}

/// `max(|u|^2 - 2 u.v^T + |v|^2, 0)` in the inputs' dtype, in the evaluator's op order.
fn squared_distances(u: &Tensor, v: &Tensor) -> Tensor {
    let norm_u = u.square().sum_dim_intlist([1i64].as_slice(), true, None::<Kind>);
    let norm_v = v.square().sum_dim_intlist([1i64].as_slice(), false, None::<Kind>).unsqueeze(0);
    ((norm_u - u.matmul(&v.tr()) * 2.0) + norm_v).clamp_min(0.0)
}

/// Squared distances [n, m] between rows of `u` [n, d] and `v` [m, d] as f32, computed as
/// `precision` says (the evaluator's `DistanceBlock.distance_block`).
pub fn pairwise_distances(u: &Tensor, v: &Tensor, precision: DistancePrecision) -> Tensor {
    let _g = tch::no_grad_guard();
    let (u, v) = (u.to_kind(Kind::Float), v.to_kind(Kind::Float));
    if precision == DistancePrecision::Half {
        let d16 = squared_distances(&u.to_kind(Kind::Half), &v.to_kind(Kind::Half));
        if bool::try_from(d16.isfinite().all()).unwrap_or(false) {
            return d16.to_kind(Kind::Float);
        }
    }
    squared_distances(&u, &v)
}

fn check_features(name: &str, x: &Tensor, k: usize) -> Result<()> {
    let size = x.size();
    if size.len() != 2 {
        return Err(EvalError::Samples(format!(
            "precision/recall: {name} features must be [N, d], got shape {size:?}"
        )));
    }
    if size[0] < k as i64 + 1 {
        return Err(EvalError::Samples(format!(
            "precision/recall: {name} has {} feature vectors; the k = {k} neighbourhood radii need at least {}",
            size[0],
            k + 1
        )));
    }
    Ok(())
}

fn check_config(cfg: &ManifoldConfig) -> Result<()> {
    if cfg.k == 0 || cfg.row_batch == 0 || cfg.col_batch == 0 {
        return Err(EvalError::Samples(format!(
            "precision/recall: k, row_batch and col_batch must be positive, got {cfg:?}"
        )));
    }
    Ok(())
}

/// (start, len) of consecutive blocks of `size` over `n`.
fn blocks(n: i64, size: usize) -> impl Iterator<Item = (i64, i64)> {
    (0..n).step_by(size).map(move |s| (s, (size as i64).min(n - s)))
}

/// The k-NN radius (squared distance to the k-th nearest other point) of every row of
/// `features` [N, d], as f32 [N] on the features' device (`ManifoldEstimator.manifold_radii`).
pub fn manifold_radii(features: &Tensor, cfg: &ManifoldConfig) -> Result<Tensor> {
    check_config(cfg)?;
    check_features("the feature set", features, cfg.k)?;
    let _g = tch::no_grad_guard();
    let x = features.to_kind(Kind::Float);
    let n = x.size()[0];
    let keep = cfg.k as i64 + 1;
    let mut radii = Vec::new();
    for (r0, rn) in blocks(n, cfg.row_batch) {
        let rows = x.narrow(0, r0, rn);
        // The keep smallest distances of each row seen so far, ascending.
        let mut best: Option<Tensor> = None;
        for (c0, cn) in blocks(n, cfg.col_batch) {
            let d = pairwise_distances(&rows, &x.narrow(0, c0, cn), cfg.distances);
            let candidates = match best.take() {
                None => d,
                Some(b) => Tensor::cat(&[b, d], 1),
            };
            let m = keep.min(candidates.size()[1]);
            best = Some(candidates.topk(m, 1, false, true).0);
        }
        radii.push(best.expect("at least one column block").select(1, cfg.k as i64));
    }
    Ok(Tensor::cat(&radii, 0))
}

/// Precision and recall of `samples` [M, d] against `reference` [N, d] with their radii
/// (`ManifoldEstimator.evaluate_pr`): reference rows in blocks of `row_batch`, samples in
/// blocks of `col_batch`. Computed on the reference's device.
pub fn precision_recall_with_radii(
    reference: &Tensor,
    reference_radii: &Tensor,
    samples: &Tensor,
    sample_radii: &Tensor,
    cfg: &ManifoldConfig,
) -> Result<PrecisionRecall> {
    check_config(cfg)?;
    let device = reference.device();
    let on = |t: &Tensor| t.to_device(device).to_kind(Kind::Float);
    let (r, s, rr, sr) = (on(reference), on(samples), on(reference_radii), on(sample_radii));
    let (n, m) = (r.size()[0], s.size()[0]);
    if rr.size() != [n] || sr.size() != [m] {
        return Err(EvalError::Samples(format!(
            "precision/recall: radii of shapes {:?} and {:?} do not fit {n} reference and {m} sample features",
            rr.size(),
            sr.size()
        )));
    }
    let _g = tch::no_grad_guard();
    let mut reference_in: Vec<Tensor> = Vec::new();
    let mut sample_in: Vec<Tensor> =
        blocks(m, cfg.col_batch).map(|(_, cn)| Tensor::zeros([cn], (Kind::Bool, device))).collect();
    for (r0, rn) in blocks(n, cfg.row_batch) {
        let rows = r.narrow(0, r0, rn);
        let row_radii = rr.narrow(0, r0, rn).unsqueeze(1);
        let mut hit = Tensor::zeros([rn], (Kind::Bool, device));
        for (j, (c0, cn)) in blocks(m, cfg.col_batch).enumerate() {
            let d = pairwise_distances(&rows, &s.narrow(0, c0, cn), cfg.distances);
            // A reference point inside some sample's ball counts for recall ...
            hit =
                hit.logical_or(&d.le_tensor(&sr.narrow(0, c0, cn).unsqueeze(0)).any_dim(1, false));
            // ... a sample inside some reference point's ball for precision.
            sample_in[j] = sample_in[j].logical_or(&d.le_tensor(&row_radii).any_dim(0, false));
        }
        reference_in.push(hit);
    }
    let share = |parts: &[Tensor]| {
        Tensor::cat(parts, 0).to_kind(Kind::Double).mean(Kind::Double).double_value(&[])
    };
    Ok(PrecisionRecall { precision: share(&sample_in), recall: share(&reference_in) })
}

/// Precision and recall of `samples` against `reference` (pool3 features, [N, d] and [M, d])
/// as `Evaluator.compute_prec_recall` computes them.
pub fn precision_recall(
    reference: &Tensor,
    samples: &Tensor,
    cfg: &ManifoldConfig,
) -> Result<PrecisionRecall> {
    check_features("the reference", reference, cfg.k)?;
    check_features("the samples", samples, cfg.k)?;
    if reference.size()[1] != samples.size()[1] {
        return Err(EvalError::Samples(format!(
            "precision/recall: reference features have {} dimensions, samples {}",
            reference.size()[1],
            samples.size()[1]
        )));
    }
    let samples = samples.to_device(reference.device());
    let reference_radii = manifold_radii(reference, cfg)?;
    let sample_radii = manifold_radii(&samples, cfg)?;
    precision_recall_with_radii(reference, &reference_radii, &samples, &sample_radii, cfg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn grid(cols: i64, rows: i64) -> Tensor {
        let v: Vec<f32> =
            (0..cols).flat_map(|x| (0..rows).flat_map(move |y| [x as f32, y as f32])).collect();
        Tensor::from_slice(&v).view([cols * rows, 2])
    }

    fn both() -> [ManifoldConfig; 2] {
        // Small blocks, so that several (and ragged) blocks are exercised.
        let half = ManifoldConfig { row_batch: 37, col_batch: 23, ..Default::default() };
        [half, ManifoldConfig { distances: DistancePrecision::Float, ..half }]
    }

    #[test]
    fn identical_sets_have_precision_and_recall_one() {
        let _g = ddpm_nets::torch_rng_lock();
        tch::manual_seed(4);
        let x = (Tensor::randn([150, 64], (Kind::Float, Device::Cpu)) * 0.6 + 0.3).relu();
        for cfg in both() {
            let pr = precision_recall(&x, &x, &cfg).unwrap();
            assert_eq!((pr.precision, pr.recall), (1.0, 1.0), "{cfg:?}");
        }
    }

    #[test]
    fn far_apart_clusters_have_precision_and_recall_zero() {
        let _g = ddpm_nets::torch_rng_lock();
        tch::manual_seed(5);
        let a = Tensor::randn([80, 32], (Kind::Float, Device::Cpu));
        let b = Tensor::randn([60, 32], (Kind::Float, Device::Cpu)) + 40.0;
        for cfg in both() {
            let pr = precision_recall(&a, &b, &cfg).unwrap();
            assert_eq!((pr.precision, pr.recall), (0.0, 0.0), "{cfg:?}");
        }
    }

    /// Reference: the 20 x 20 integer lattice; samples: its left half, 10 x 20. Every lattice
    /// radius is 1 (squared), 2 at the corners: all samples coincide with reference points
    /// (precision 1) and the samples' balls reach one column past them (recall 11/20).
    #[test]
    fn a_subset_region_gives_the_asymmetric_values_worked_out_by_hand() {
        let (reference, samples) = (grid(20, 20), grid(10, 20));
        for cfg in both() {
            let radii = manifold_radii(&reference, &cfg).unwrap();
            let r: Vec<f32> = Vec::try_from(&radii).unwrap();
            assert_eq!(r[0], 2.0, "corner (0, 0)");
            assert_eq!(r[21], 1.0, "interior (1, 1)");
            let pr = precision_recall(&reference, &samples, &cfg).unwrap();
            assert_eq!((pr.precision, pr.recall), (1.0, 0.55), "{cfg:?}");
            // And the other way round: the samples' manifold covers 11 of 20 reference columns.
            let pr = precision_recall(&samples, &reference, &cfg).unwrap();
            assert_eq!((pr.precision, pr.recall), (0.55, 1.0), "{cfg:?}");
        }
    }

    /// The radius counts the point itself as position 0: with k = 1 it is the nearest other point.
    #[test]
    fn radius_excludes_the_point_itself() {
        let x = Tensor::from_slice(&[0.0f32, 1.0, 3.0, 7.0]).view([4, 1]);
        let cfg = ManifoldConfig { k: 1, ..Default::default() };
        let r: Vec<f32> = Vec::try_from(&manifold_radii(&x, &cfg).unwrap()).unwrap();
        assert_eq!(r, vec![1.0, 1.0, 4.0, 16.0]);
        let cfg = ManifoldConfig { k: 3, ..Default::default() };
        let r: Vec<f32> = Vec::try_from(&manifold_radii(&x, &cfg).unwrap()).unwrap();
        assert_eq!(r, vec![49.0, 36.0, 16.0, 49.0]);
    }

    /// Features whose squared norms overflow f16 (65504) fall back to f32 blocks.
    #[test]
    fn blocks_that_overflow_in_f16_are_computed_in_f32() {
        let x = Tensor::from_slice(&[300.0f32, 0.0, 0.0, 301.0]).view([2, 2]);
        let d = pairwise_distances(&x, &x, DistancePrecision::Half);
        let want = pairwise_distances(&x, &x, DistancePrecision::Float);
        assert!(d.equal(&want), "{d} vs {want}");
        assert_eq!(d.double_value(&[0, 1]), 300.0 * 300.0 + 301.0 * 301.0);
    }

    #[test]
    fn too_few_points_or_mismatched_dimensions_are_refused() {
        let cfg = ManifoldConfig::default();
        let x = Tensor::zeros([3, 4], (Kind::Float, Device::Cpu));
        let e = precision_recall(&x, &x, &cfg).unwrap_err().to_string();
        assert!(e.contains("3 feature vectors") && e.contains("at least 4"), "{e}");
        let y = Tensor::zeros([8, 5], (Kind::Float, Device::Cpu));
        let z = Tensor::zeros([8, 4], (Kind::Float, Device::Cpu));
        let e = precision_recall(&y, &z, &cfg).unwrap_err().to_string();
        assert!(e.contains("5") && e.contains("4"), "{e}");
    }
}
