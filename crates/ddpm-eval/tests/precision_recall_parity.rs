//! Precision and recall (`ddpm_eval::precision_recall`) against `scripts/ref_prdc.py`, a NumPy
//! statement of guided-diffusion's `evaluations/evaluator.py` (`ManifoldEstimator`,
//! `DistanceBlock`): no published package computes the evaluator's variant (f16 distance blocks
//! with an f32 fallback, k = 3 radii with self counted at position 0) outside TensorFlow 1, so the
//! restatement is the oracle here. The hand-made cases (identical sets, far-apart clusters, a
//! subset region) are unit tests beside the code.

use ddpm_eval::precision_recall::{
    DistancePrecision, ManifoldConfig, manifold_radii, precision_recall,
};
use ddpm_io::npy;
use ddpm_testkit::{NEEDS_VENV, f64s, run_json, temp_dir};
use std::path::Path;
use tch::{Device, Kind, Tensor};

/// Non-negative 2048-d features with Inception-like norms (|x|^2 in the hundreds) on a shared
/// 8-d manifold; `spread` scales the latent, so sets overlap partly.
fn features(n: i64, seed: i64, spread: f64) -> Tensor {
    let _g = ddpm_nets::torch_rng_lock();
    tch::manual_seed(1000);
    let proj = Tensor::randn([8, 2048], (Kind::Float, Device::Cpu)) / 6.0;
    tch::manual_seed(seed);
    let z = Tensor::randn([n, 8], (Kind::Float, Device::Cpu)) * spread;
    (z.matmul(&proj) + 0.3 + Tensor::randn([n, 2048], (Kind::Float, Device::Cpu)) * 0.01).relu()
}

fn save(path: &Path, x: &Tensor) {
    let shape: Vec<usize> = x.size().iter().map(|&d| d as usize).collect();
    npy::write_npy(path, &shape, &Vec::<f32>::try_from(x.flatten(0, -1)).unwrap()).unwrap();
}

fn compare(label: &str, reference: &Tensor, samples: &Tensor, cfg: &ManifoldConfig) -> i64 {
    let dir = temp_dir("prdc");
    let (rp, sp) = (dir.join("r.npy"), dir.join("s.npy"));
    save(&rp, reference);
    save(&sp, samples);
    let (rb, cb) = (cfg.row_batch.to_string(), cfg.col_batch.to_string());
    let mut args =
        vec![rp.to_str().unwrap(), sp.to_str().unwrap(), "--row-batch", &rb, "--col-batch", &cb];
    if cfg.distances == DistancePrecision::Float {
        args.push("--float");
    }
    let theirs = run_json("ref_prdc.py", &args);
    let ours = precision_recall(reference, samples, cfg).unwrap();
    let (n, m) = (reference.size()[0] as f64, samples.size()[0] as f64);
    let (tp, tr) = (theirs["precision"].as_f64().unwrap(), theirs["recall"].as_f64().unwrap());
    eprintln!(
        "{label}: precision {} (NumPy {tp}), recall {} (NumPy {tr}); {} f32 blocks",
        ours.precision, ours.recall, theirs["f32_blocks"]
    );
    // One point's worth: an f32-accumulation-order difference can move a distance by one f16
    // ulp right at a radius.
    assert!((ours.precision - tp).abs() <= 1.0 / m + 1e-12, "{label}: precision");
    assert!((ours.recall - tr).abs() <= 1.0 / n + 1e-12, "{label}: recall");
    assert!(ours.precision > 0.02 && ours.precision < 0.98, "{label}: a non-trivial case");
    for (set, key) in [(reference, "radii_ref"), (samples, "radii_samples")] {
        let radii: Vec<f32> = Vec::try_from(&manifold_radii(set, cfg).unwrap()).unwrap();
        let want = f64s(&theirs[key]);
        // A distance is |u|^2 - 2 u.v + |v|^2: its rounding error is set by the squared norms, not
        // by the (much smaller) distance. f16: two ulps of the largest squared norm (11
        // significant bits); f32: the 2048-term dot products accumulate in a different order
        // than NumPy's BLAS, so 1e-5 of it.
        let norm2 = set.square().sum_dim_intlist([1i64].as_slice(), false, None::<Kind>).max();
        let rel = if cfg.distances == DistancePrecision::Half { 2f64.powi(-9) } else { 1e-5 };
        let tol = rel * norm2.double_value(&[]);
        let off = radii.iter().zip(&want).filter(|(a, b)| (**a as f64 - **b).abs() > tol).count();
        let exact = radii.iter().zip(&want).filter(|(a, b)| **a as f64 == **b).count();
        eprintln!("{label} {key}: {exact} of {} radii identical, {off} beyond {tol:e}", want.len());
        assert_eq!(off, 0, "{label} {key}");
    }
    theirs["f32_blocks"].as_i64().unwrap()
}

#[test]
#[ignore = "needs the Python venv: run `cargo xtask test`"]
fn precision_recall_match_a_numpy_statement_of_the_evaluator() {
    let _ = NEEDS_VENV;
    let (reference, samples) = (features(300, 1, 1.0), features(260, 2, 1.6));
    // The evaluator's defaults (one block each way), then small ragged blocks.
    for cfg in [
        ManifoldConfig::default(),
        ManifoldConfig { row_batch: 128, col_batch: 96, ..Default::default() },
        ManifoldConfig { row_batch: 128, col_batch: 96, distances: DistancePrecision::Float, k: 3 },
    ] {
        let label = format!("{:?} {}x{}", cfg.distances, cfg.row_batch, cfg.col_batch);
        assert_eq!(compare(&label, &reference, &samples, &cfg), 0);
    }
}

/// Some points with squared norms past f16's range: their blocks fall back to f32 in both.
#[test]
#[ignore = "needs the Python venv: run `cargo xtask test`"]
fn blocks_overflowing_f16_fall_back_to_f32_as_in_the_evaluator() {
    let reference = features(200, 3, 1.0);
    let samples = features(180, 4, 1.6);
    // Rows 0..40 of the reference scaled far out (|x|^2 ~ 1e5 > 65504).
    let scaled = Tensor::cat(&[reference.narrow(0, 0, 40) * 12.0, reference.narrow(0, 40, 160)], 0);
    let cfg = ManifoldConfig { row_batch: 64, col_batch: 50, ..Default::default() };
    let f32_blocks = compare("overflow", &scaled, &samples, &cfg);
    assert!(f32_blocks > 0, "the case must exercise the fallback");
}
