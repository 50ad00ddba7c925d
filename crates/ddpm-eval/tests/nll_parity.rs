//! NLL in bits/dim against an independent computation: a small diffusers UNet2DModel with random
//! weights and T = 20, imported into our UNet; our bound over two 8-bit images equals
//! `scripts/ref_nll.py`'s (the same network in diffusers, the Gaussian math in NumPy f64) for the
//! same per-step noise. The NumPy half stays because no published package computes
//! improved-diffusion's full bound (discretized decoder, VLB terms, prior) outside that
//! code base, which is not on PyPI.

use ddpm_io::npy;
use ddpm_run::{RunDir, load_model};
use ddpm_sample::noise::ImageNoise;
use ddpm_testkit::{f64s, run_json, run_script, temp_dir};
use tch::{Device, Kind, Tensor};

#[test]
#[ignore = "needs the Python venv: run `cargo xtask test`"]
fn bound_matches_diffusers_network_with_numpy_gaussian_math() {
    let dir = temp_dir("nll");
    run_script("ref_unet.py", &["make", dir.to_str().unwrap(), "--seed", "6", "--timesteps", "20"]);
    let runs = dir.join("runs");
    ddpm_train::import::import_diffusers(&dir, "m", &runs).unwrap();
    let model = load_model(&RunDir::resolve("m", &runs).unwrap(), Device::Cpu, true).unwrap();
    assert_eq!(model.diffusion.steps, 20);
    // Two 8-bit images in [-1, 1], including the extreme bins.
    let mut rng = ddpm_core::rng::SplitMix64::new(4);
    let mut x: Vec<f32> =
        (0..2 * 3 * 16 * 16).map(|_| rng.below(256) as f32 / 127.5 - 1.0).collect();
    x[0] = -1.0;
    x[1] = 1.0;
    let x0 = Tensor::from_slice(&x).view([2, 3, 16, 16]);
    let r = ddpm_eval::nll::nll(&model, &x0, 2, 11, &mut |_| {}).unwrap();
    // The noise our evaluation drew at each t (T-1 down to 0), exported for the oracle.
    let mut noise = ImageNoise::new(11, &[0, 1], &[3, 16, 16], Device::Cpu);
    // Drawn for t = 19 .. 0; stored by t.
    let mut per_t: Vec<Tensor> = (0..20).map(|_| noise.draw()).collect();
    per_t.reverse();
    let noise_all = Tensor::stack(&per_t, 0);
    let (xp, np_) = (dir.join("x0.npy"), dir.join("noise.npy"));
    npy::write_npy(&xp, &[2, 3, 16, 16], &x).unwrap();
    npy::write_npy(
        &np_,
        &[20, 2, 3, 16, 16],
        &Vec::<f32>::try_from(noise_all.to_kind(Kind::Float).flatten(0, -1)).unwrap(),
    )
    .unwrap();
    let theirs = run_json(
        "ref_nll.py",
        &[dir.to_str().unwrap(), xp.to_str().unwrap(), np_.to_str().unwrap()],
    );
    let bpd = f64s(&theirs["bpd"]);
    let mean = bpd.iter().sum::<f64>() / 2.0;
    assert!((r.bpd - mean).abs() / mean < 1e-4, "ours {} vs reference {mean}", r.bpd);
    // The standard error over the two images: sample std / sqrt(2) = |a - b| / 2 (to within the
    // per-image tolerance of the mean above).
    let sem = (bpd[0] - bpd[1]).abs() / 2.0;
    assert!((r.bpd_sem - sem).abs() <= 2e-4 * mean, "standard error {} vs {sem}", r.bpd_sem);
    let terms: Vec<Vec<f64>> = theirs["terms"].as_array().unwrap().iter().map(f64s).collect();
    for t in 0..20 {
        let want = (terms[0][t] + terms[1][t]) / 2.0;
        assert!(
            (r.terms_bpd[t] - want).abs() <= 1e-4 * want.abs().max(1e-3),
            "L_{t}: {} vs {want}",
            r.terms_bpd[t]
        );
    }
}
