//! `ddpm-eval` end to end on a tiny digits model: the classifier distance and the JSON
//! protocol; FID and IS with (random) Inception weights against reference statistics made by
//! `fid-stats`; 2-D distances; one-line errors.

use ddpm_testkit::{run_script, temp_dir};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;

fn train(config: &str, steps: u64) -> PathBuf {
    let runs = temp_dir("eval-cli-runs");
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../../configs/{config}.toml"));
    let mut c = ddpm_train::RunConfig::load(&path).unwrap();
    c.train.total_steps = steps;
    c.train.sample_every = 0;
    let mut t = ddpm_train::Trainer::new(c, &runs, tch::Device::Cpu).unwrap();
    t.train(&AtomicBool::new(false), &mut ddpm_train::LogProgress).unwrap();
    runs
}

fn eval(args: &[&str], runs: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ddpm-eval"))
        .args(args)
        .arg("--runs-dir")
        .arg(runs)
        .args(["--device", "cpu"])
        .output()
        .unwrap()
}

fn ok(o: &std::process::Output) -> String {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

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
    assert!(text.contains("digits FD") && text.contains("FID/IS skipped"), "{text}");
    let json: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert!(json["digits_fd"].as_f64().unwrap() > 0.0);
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
    run_script("ref_fid.py", &["weights", pth.to_str().unwrap()]);
    run_script("convert_inception.py", &[pth.to_str().unwrap(), w.to_str().unwrap()]);
    let imgs = dir.join("ref");
    std::fs::create_dir_all(&imgs).unwrap();
    for i in 0..12u8 {
        image::GrayImage::from_fn(8, 8, |x, y| {
            image::Luma([((x * 31 + y * 17 + i as u32 * 13) % 256) as u8])
        })
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
    assert!(json["fid"].as_f64().unwrap() > 0.0, "{json}");
    assert!(json["is_mean"].as_f64().unwrap() >= 1.0);
    assert_eq!(json["protocol"]["inception_sha256"].as_str().unwrap().len(), 64);
    assert_eq!(json["protocol"]["ref_sha256"].as_str().unwrap().len(), 64);
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
