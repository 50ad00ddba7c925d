//! KID ([`ddpm_eval::kid`]) against clean-fid's `kernel_distance` on the same features
//! (`scripts/ref_kid.py`): clean-fid's random subsets replaced by ours, so every subset's
//! MMD^2_u, their mean and their standard deviation compare; and one subset of all features,
//! where clean-fid's own draw is deterministic.

use ddpm_core::rng::SplitMix64;
use ddpm_eval::kid;
use ddpm_testkit::{NEEDS_VENV, f64s, max_rel_diff, run_json, temp_dir};
use tch::{Device, Kind, Tensor};

#[test]
#[ignore = "needs the Python venv: run `cargo xtask test`"]
fn kid_matches_clean_fids_kernel_distance_on_the_same_subsets() {
    let _ = NEEDS_VENV;
    tch::manual_seed(7);
    // Feature-like: non-negative (after ReLU), 128-d, two different distributions.
    let a = Tensor::randn([600, 128], (Kind::Double, Device::Cpu)).relu();
    let b = (Tensor::randn([500, 128], (Kind::Double, Device::Cpu)) * 1.1 + 0.1).relu();
    let (s, m) = (12, 200);
    let ia = kid::subsets(600, m, s, &mut SplitMix64::new(1));
    let ib = kid::subsets(500, m, s, &mut SplitMix64::new(2));
    let ours = kid::kernel_distance_on(&a, &b, &ia, &ib).unwrap();
    let per: Vec<f64> = ia
        .iter()
        .zip(&ib)
        .map(|(x, y)| {
            kid::mmd2_unbiased(
                &a.index_select(0, &Tensor::from_slice(x)),
                &b.index_select(0, &Tensor::from_slice(y)),
            )
        })
        .collect();
    let dir = temp_dir("kid-parity");
    let path = dir.join("features.npz");
    let flat = |t: &Tensor| Vec::<f64>::try_from(t.flatten(0, -1)).unwrap();
    let idx = |v: &[Vec<i64>]| v.iter().flatten().map(|&i| i as f64).collect::<Vec<f64>>();
    let (fa, fb, xa, xb) = (flat(&a), flat(&b), idx(&ia), idx(&ib));
    ddpm_io::npy::write_npz::<f64>(
        &path,
        &[
            ("feats1", &[600, 128], &fa),
            ("feats2", &[500, 128], &fb),
            ("idx1", &[s, m], &xa),
            ("idx2", &[s, m], &xb),
        ],
        false,
    )
    .unwrap();
    let theirs = run_json("ref_kid.py", &[path.to_str().unwrap()]);
    let rel = |x: f64, y: f64| (x - y).abs() / y.abs();
    let d = max_rel_diff(&per, &f64s(&theirs["per_subset"]), 1e-300);
    assert!(d < 1e-9, "per-subset MMD^2_u: max relative difference {d:e}");
    let mean = theirs["mean"].as_f64().unwrap();
    assert!(rel(ours.mean, mean) < 1e-9, "mean {} vs clean-fid {mean}", ours.mean);
    let std = theirs["std"].as_f64().unwrap();
    assert!(rel(ours.std, std) < 1e-9, "std {} vs numpy {std}", ours.std);
    let full = theirs["full"].as_f64().unwrap();
    let one = kid::kernel_distance(&a.narrow(0, 0, 500), &b, 1, 1000, 3).unwrap();
    assert!(rel(one.mean, full) < 1e-9, "one subset of all: {} vs clean-fid {full}", one.mean);
    println!(
        "KID parity: mean {} vs {mean} (rel {:e}); std {} vs {std}; full {} vs {full} (rel {:e})",
        ours.mean,
        rel(ours.mean, mean),
        ours.std,
        one.mean,
        rel(one.mean, full)
    );
}
