//! `ddpm-eval` end to end on a tiny digits model: the classifier distance and the JSON
//! protocol; FID and IS with (random) Inception weights against reference statistics made by
//! `fid-stats`, checked against pytorch-fid on the same images and against known inputs (a set
//! against its own statistics gives FID 0; the first data half gives the distance of the data
//! halves); 2-D distances; one-line errors.

mod common;

use common::{eval, ok, train};
use ddpm_testkit::{run_json, run_script, temp_dir};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

#[test]
#[ignore = "needs the Python venv: run `cargo xtask test`"]
fn digits_run_gets_classifier_fd_and_with_weights_fid_and_is() {
    let runs = train("tiny", 3);
    let out = temp_dir("eval-out");
    let o = eval(
        &[
            "fid",
            "--checkpoint",
            "tiny",
            "-n",
            "20",
            "--sampler",
            "ddim",
            "--steps",
            "5",
            "--json",
            "--out",
            out.to_str().unwrap(),
            "--inception",
            "/no/such.safetensors",
        ],
        &runs,
    );
    let text = ok(&o);
    // --json: stdout is one JSON document; the summary lines are on stderr.
    let summary = String::from_utf8_lossy(&o.stderr);
    assert!(summary.contains("digits FD") && summary.contains("FID/IS skipped"), "{summary}");
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    // Three training steps make noise, not digits: far from the data, whose own halves (at the
    // same 20 images) are the floor.
    let (fd, floor) =
        (json["digits_fd"].as_f64().unwrap(), json["digits_fd_data_halves"].as_f64().unwrap());
    assert!(fd > 2.0 * floor && floor > 0.0, "{json}");
    assert!(json["digits_classifier_accuracy"].as_f64().unwrap() > 0.9);
    assert_eq!(json["protocol"]["n"], 20);
    assert_eq!(json["protocol"]["weights"], "ema");
    assert!(out.join("fid.json").exists());

    // Without -n, a digits model is sampled as often as the data half it is compared with,
    // not 50,000 times.
    let default_out = temp_dir("eval-out-default");
    let text = ok(&eval(
        &[
            "fid",
            "--checkpoint",
            "tiny",
            "--sampler",
            "dpm-solver++",
            "--steps",
            "2",
            "--json",
            "--out",
            default_out.to_str().unwrap(),
            "--inception",
            "/no/such.safetensors",
        ],
        &runs,
    ));
    let json: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(json["protocol"]["n"], 1797 / 2, "{json}");
    assert_eq!(json["digits_fd_images"], 1797 / 2, "{json}");

    // With Inception weights (random ones here) and reference statistics from fid-stats.
    let dir = temp_dir("eval-weights");
    let pth = dir.join("w.pth");
    let w = dir.join("w.safetensors");
    // Weights whose features depend on the image (PyTorch's init gives nearly constant ones:
    // FID ~0 and IS 1 whatever the images, which a weaker test took for a result).
    run_script("ref_fid.py", &["weights", pth.to_str().unwrap(), "--informative"]);
    run_script("convert_inception.py", &[pth.to_str().unwrap(), w.to_str().unwrap()]);
    let imgs = dir.join("ref");
    std::fs::create_dir_all(&imgs).unwrap();
    for i in 0..12u8 {
        image::GrayImage::from_fn(8, 8, |x, y| image::Luma([ref_pixel(i as u32, x, y)]))
            .save(imgs.join(format!("{i}.png")))
            .unwrap();
    }
    let stats = dir.join("ref.npz");
    ok(&eval(
        &[
            "fid-stats",
            "--data",
            imgs.to_str().unwrap(),
            "--out",
            stats.to_str().unwrap(),
            "--inception",
            w.to_str().unwrap(),
        ],
        &runs,
    ));
    let o = eval(
        &[
            "fid",
            "--samples",
            out.join("samples.npz").to_str().unwrap(),
            "--ref",
            stats.to_str().unwrap(),
            "--inception",
            w.to_str().unwrap(),
            "--json",
        ],
        &runs,
    );
    let text = ok(&o);
    let json: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(json["protocol"]["inception_sha256"].as_str().unwrap().len(), 64);
    assert_eq!(json["protocol"]["ref_sha256"].as_str().unwrap().len(), 64);
    // pytorch-fid on the same images (grey replicated to RGB, in [0, 1]) with the same weights:
    // features, statistics, calculate_frechet_distance and the Inception Score.
    let (shape, samples) = ddpm_io::npy::read_array(&out.join("samples.npz"), "samples").unwrap();
    let rgb = |n: usize, grey: &dyn Fn(usize, usize) -> f32| -> Vec<f32> {
        (0..n).flat_map(|i| (0..3).flat_map(move |_| (0..64).map(move |p| grey(i, p)))).collect()
    };
    let samples_rgb = rgb(shape[0], &|i, p| (samples[i * 64 + p] + 1.0) / 2.0);
    let ref_rgb =
        rgb(12, &|i, p| ref_pixel(i as u32, (p % 8) as u32, (p / 8) as u32) as f32 / 255.0);
    let (sp, rp) = (dir.join("samples.npy"), dir.join("ref.npy"));
    ddpm_io::npy::write_npy(&sp, &[shape[0], 3, 8, 8], &samples_rgb).unwrap();
    ddpm_io::npy::write_npy(&rp, &[12, 3, 8, 8], &ref_rgb).unwrap();
    let theirs = run_json(
        "ref_fid.py",
        &[
            "fid-is",
            pth.to_str().unwrap(),
            sp.to_str().unwrap(),
            rp.to_str().unwrap(),
            "--batch",
            "50",
        ],
    );
    let get = |v: &serde_json::Value, k: &str| v[k].as_f64().unwrap();
    let (fid, theirs_fid) = (get(&json, "fid"), get(&theirs, "fid"));
    assert!((fid - theirs_fid).abs() <= 1e-3 * theirs_fid, "FID {fid}, pytorch-fid {theirs_fid}");
    // IS is near 1 with random weights: compare its excess over 1, and its spread.
    let (is, theirs_is) = (get(&json, "is_mean"), get(&theirs, "is_mean"));
    assert!((is - theirs_is).abs() <= 0.02 * (theirs_is - 1.0), "IS {is}, NumPy {theirs_is}");
    let (sd, theirs_sd) = (get(&json, "is_std"), get(&theirs, "is_std"));
    assert!((sd - theirs_sd).abs() <= 0.02 * theirs_sd, "IS std {sd}, NumPy {theirs_sd}");
    // The samples are not the reference (FID far from 0), and the images' class probabilities
    // differ (IS above 1).
    assert!(fid > 1.0 && is > 1.001, "{json}");
    // A set against its own statistics: FID 0.
    let o = eval(
        &[
            "fid",
            "--samples",
            imgs.to_str().unwrap(),
            "--ref",
            stats.to_str().unwrap(),
            "--inception",
            w.to_str().unwrap(),
            "--json",
        ],
        &runs,
    );
    let json: serde_json::Value = serde_json::from_str(ok(&o).lines().last().unwrap()).unwrap();
    // 0 up to the rounding of a rank-11 covariance in 2048 dimensions: a millionth of the
    // distance above.
    let self_fid = get(&json, "fid");
    assert!(self_fid.abs() < 1e-5 * fid, "identical sets: {self_fid} (vs {fid})");
    // The weights take 200 MB: gone once the test has passed (kept for a failure's post-mortem).
    let _ = std::fs::remove_dir_all(&dir);
}

/// The reference images' grey level at (x, y) of image i.
fn ref_pixel(i: u32, x: u32, y: u32) -> u8 {
    ((x * 31 + y * 17 + i * 13) % 256) as u8
}

/// Known inputs for the classifier distance: the first (seeded) half of the digits given as
/// samples is exactly what the distance of the data halves compares, so the two numbers agree.
#[test]
fn digits_fd_of_the_first_data_half_is_the_data_halves_distance() {
    let (data, _) = ddpm_data::load(&ddpm_data::DataConfig::default()).unwrap();
    let ddpm_data::Dataset::Images(set) = data else { panic!("digits are images") };
    let mut order: Vec<usize> = (0..set.n).collect();
    ddpm_core::rng::SplitMix64::new(ddpm_eval::protocol::DIGITS_SPLIT_SEED).shuffle(&mut order);
    let half = set.n / 2;
    let per = set.channels * set.height * set.width;
    let values: Vec<f32> = order[..half]
        .iter()
        .flat_map(|&i| set.image(i).iter().map(|&v| v as f32 / set.max_value as f32 * 2.0 - 1.0))
        .collect();
    assert_eq!(values.len(), half * per);
    let dir = temp_dir("eval-digits-known");
    let npz = dir.join("samples.npz");
    let shape = [half, set.channels, set.height, set.width];
    ddpm_io::npy::write_npz(&npz, &[("samples", &shape[..], &values[..])], false).unwrap();
    let text = ok(&eval(
        &[
            "fid",
            "--samples",
            npz.to_str().unwrap(),
            "--ref",
            "digits",
            "--inception",
            "/no/such.safetensors",
            "--json",
        ],
        &dir,
    ));
    let json: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    let (fd, halves) =
        (json["digits_fd"].as_f64().unwrap(), json["digits_fd_data_halves"].as_f64().unwrap());
    assert_eq!(json["digits_fd_images"], half);
    assert!(halves > 0.1, "{json}");
    assert!((fd - halves).abs() <= 1e-9 * halves, "first half {fd} vs data halves {halves}");
}

/// Every count or size argument of `ddpm-eval` given 0 is a one-line error naming it, with
/// exit code 2.
#[test]
fn every_count_or_size_argument_of_0_is_refused() {
    let runs = train("tiny", 2);
    let out = temp_dir("eval-zero").join("never");
    let o = out.to_str().unwrap();
    for (args, needle) in [
        (&["fid", "--checkpoint", "tiny", "-n", "0", "--out", o][..], "-n must be at least 1"),
        (&["fid", "--checkpoint", "tiny", "--steps", "0", "--out", o][..], "--steps must be in"),
        (&["fid", "--checkpoint", "tiny", "--batch-size", "0", "--out", o][..], "--batch-size"),
        (&["fid-stats", "--data", "digits", "--out", o, "--batch-size", "0"][..], "--batch-size"),
        (&["nll", "--checkpoint", "tiny", "-n", "0"][..], "-n must be at least 1"),
        (&["nll", "--checkpoint", "tiny", "--batch-size", "0"][..], "--batch-size"),
    ] {
        let o = eval(args, &runs);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!out.exists(), "{args:?} wrote {}", out.display());
    }
}

#[test]
fn two_d_runs_get_a_sliced_wasserstein_distance() {
    let runs = train("swissroll", 50);
    let out = temp_dir("eval-2d");
    let text = ok(&eval(
        &[
            "fid",
            "--checkpoint",
            "swissroll",
            "-n",
            "500",
            "--sampler",
            "ddim",
            "--steps",
            "20",
            "--json",
            "--out",
            out.to_str().unwrap(),
        ],
        &runs,
    ));
    let json: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    let (sw, base) = (
        json["sliced_wasserstein"].as_f64().unwrap(),
        json["sliced_wasserstein_data_vs_data"].as_f64().unwrap(),
    );
    assert!(sw > 0.0 && base > 0.0 && base < sw, "{json}");
}

/// Regression: `fid --checkpoint` on an image run opened the Inception weights (and the
/// reference) only after every sample was drawn, so a wrong path cost the whole sampling. Both
/// are checked first: the command stops with one line and samples nothing.
#[test]
#[ignore = "needs the Python venv: run `cargo xtask test`"]
fn missing_inception_weights_or_a_bad_reference_stop_fid_before_any_sample() {
    let runs = temp_dir("eval-check-first");
    let imgs = runs.join("imgs");
    std::fs::create_dir_all(&imgs).unwrap();
    for i in 0..16u32 {
        image::GrayImage::from_fn(8, 8, |x, y| image::Luma([ref_pixel(i, x, y)]))
            .save(imgs.join(format!("{i}.png")))
            .unwrap();
    }
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../configs/tiny.toml");
    let mut c = ddpm_train::RunConfig::load(&path).unwrap();
    c.name = "pngs".into();
    c.train.total_steps = 2;
    c.train.sample_every = 0;
    c.data.dataset = "folder".into();
    c.data.path = Some(imgs.clone());
    c.data.image_size = Some(8);
    c.data.channels = Some(1);
    let mut t = ddpm_train::Trainer::new(c, &runs, tch::Device::Cpu).unwrap();
    t.train(&AtomicBool::new(false), &mut ddpm_train::LogProgress).unwrap();
    let not_stats = runs.join("not-stats.npz");
    ddpm_io::npy::write_npz(&not_stats, &[("x", &[1usize][..], &[0.0f32][..])], false).unwrap();
    let dir = temp_dir("eval-check-first-w");
    let pth = dir.join("w.pth");
    let w = dir.join("w.safetensors");
    run_script("ref_fid.py", &["weights", pth.to_str().unwrap()]);
    run_script("convert_inception.py", &[pth.to_str().unwrap(), w.to_str().unwrap()]);
    for (args, needle) in [
        (vec!["--inception", "/no/w.safetensors"], "/no/w.safetensors"),
        (vec!["--inception", w.to_str().unwrap(), "--ref", not_stats.to_str().unwrap()], "\"mu\""),
    ] {
        let base = ["fid", "--checkpoint", "pngs", "-n", "4", "--sampler", "ddim", "--steps", "2"];
        let o = eval(&[&base[..], &args[..]].concat(), &runs);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!runs.join("pngs/fid").exists(), "{args:?}: samples were drawn first");
    }
}

#[test]
fn bad_input_is_one_line_and_exit_code_2() {
    let runs = temp_dir("eval-bad");
    for (args, needle) in [
        (&["fid"][..], "--checkpoint"),
        (&["fid", "--checkpoint", "nope"][..], "nope"),
        (&["fid", "--samples", "/no/such.npz", "--ref", "digits"][..], "/no/such.npz"),
        (
            &[
                "fid-stats",
                "--data",
                "digits",
                "--out",
                "/tmp/x.npz",
                "--inception",
                "/no/w.safetensors",
            ][..],
            "convert-inception",
        ),
    ] {
        let o = eval(args, &runs);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

/// A class-conditional Fashion-MNIST model (2 steps on the real files): `fid --checkpoint`
/// reports the class accuracy of its samples (each asked for a class drawn from the seed),
/// with and without guidance, beside FD, KID and the floor; `nll --split test` measures the
/// test images at the run's size, which differ from the training images' bits/dim; a split
/// that does not exist is one line naming it.
#[test]
fn fashion_runs_report_class_accuracy_and_nll_takes_the_test_split() {
    let runs = temp_dir("eval-cli-fashion");
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../configs/fashion-mnist.toml");
    let mut c = ddpm_train::RunConfig::load(&path).unwrap();
    c.optim.batch_size = 8;
    c.train.total_steps = 2;
    c.train.sample_every = 0;
    c.train.eval_every = 0;
    let mut t = ddpm_train::Trainer::new(c, &runs, tch::Device::Cpu).unwrap();
    t.train(&AtomicBool::new(false), &mut ddpm_train::LogProgress).unwrap();
    let out = temp_dir("eval-cli-fashion-out");
    let fid = |w: &str| -> serde_json::Value {
        let dir = out.join(format!("w{w}"));
        let args = ["fid", "--checkpoint", "fashion-mnist", "-n", "20", "--sampler", "ddim"];
        let more = ["--steps", "2", "--guidance", w, "--json", "--out", dir.to_str().unwrap()];
        let text = ok(&eval(&[&args[..], &more[..]].concat(), &runs));
        serde_json::from_str(text.lines().last().unwrap()).unwrap()
    };
    for w in ["1", "2"] {
        let j = fid(w);
        assert_eq!(j["fashion_images"].as_u64(), Some(20), "{j}");
        let acc = j["fashion_class_accuracy"].as_f64().unwrap_or(-1.0);
        // 20 samples: a multiple of 1/20.
        assert!((0.0..=1.0).contains(&acc) && (acc * 20.0 - (acc * 20.0).round()).abs() < 1e-9);
        assert!(j["fashion_fd"].as_f64().unwrap() > j["fashion_fd_floor"].as_f64().unwrap());
    }
    let nll = |split: &str| -> std::process::Output {
        eval(
            &["nll", "--checkpoint", "fashion-mnist", "--split", split, "-n", "2", "--json"],
            &runs,
        )
    };
    let bpd = |o: &std::process::Output| -> f64 {
        let j: serde_json::Value =
            serde_json::from_str(ok(o).trim().lines().last().unwrap()).unwrap();
        j["bpd"].as_f64().unwrap()
    };
    let (test, train) = (bpd(&nll("test")), bpd(&nll("train")));
    assert!(test.is_finite() && test > 0.0 && (test - train).abs() > 1e-6, "{test} {train}");
    let o = nll("validation");
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("split") && err.contains("validation"), "{err}");
}
