//! `ddpm-eval fid --metrics fid,is,sfid,pr` end to end, on a folder of images and on a
//! checkpoint, with (random) pytorch-fid Inception weights: `fid-stats --features` writes the
//! reference (statistics with sFID's mu_s/sigma_s, and float16 pool3 features), and a set
//! measured against itself gives the closed-form answers: FID = sFID = 0 and precision =
//! recall = 1.

use ddpm_testkit::{run_script, temp_dir};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;

fn eval(args: &[&str]) -> serde_json::Value {
    let o = Command::new(env!("CARGO_BIN_EXE_ddpm-eval"))
        .args(args)
        .args(["--device", "cpu"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    serde_json::from_str(text.lines().last().unwrap()).unwrap_or(serde_json::Value::Null)
}

/// Random Inception weights converted as users convert the real ones.
fn weights(dir: &Path) -> PathBuf {
    let pth = dir.join("w.pth");
    let w = dir.join("w.safetensors");
    run_script("ref_fid.py", &["weights", pth.to_str().unwrap()]);
    run_script("convert_inception.py", &[pth.to_str().unwrap(), w.to_str().unwrap()]);
    w
}

/// 24 distinct 8x8 RGB images.
fn folder(dir: &Path) -> PathBuf {
    let imgs = dir.join("imgs");
    std::fs::create_dir_all(&imgs).unwrap();
    for i in 0..24u32 {
        image::RgbImage::from_fn(8, 8, |x, y| {
            image::Rgb([
                ((x * 29 + y * 7 + i * 13) % 256) as u8,
                ((i * 37 + x) % 256) as u8,
                ((y * i) % 256) as u8,
            ])
        })
        .save(imgs.join(format!("{i:02}.png")))
        .unwrap();
    }
    imgs
}

#[test]
#[ignore = "needs the Python venv: run `cargo xtask test`"]
fn every_metric_of_a_set_against_itself_has_its_closed_form_value() {
    let dir = temp_dir("metrics-cli");
    let w = weights(&dir);
    let imgs = folder(&dir);
    let (stats, feats) = (dir.join("ref.npz"), dir.join("ref-features.npz"));
    let s = |p: &Path| p.to_str().unwrap().to_string();
    eval(&[
        "fid-stats",
        "--data",
        &s(&imgs),
        "--out",
        &s(&stats),
        "--features",
        &s(&feats),
        "--inception",
        &s(&w),
    ]);
    // The statistics carry the spatial ones; the features are float16 [24, 2048].
    let names = ddpm_io::npy::npz_names(&stats).unwrap();
    assert_eq!(names, vec!["mu", "sigma", "mu_s", "sigma_s"]);
    let f = ddpm_eval::feature_file::load_features(&feats).unwrap();
    assert_eq!(f.size(), vec![24, 2048]);

    let json = eval(&[
        "fid",
        "--samples",
        &s(&imgs),
        "--ref",
        &s(&stats),
        "--ref-features",
        &s(&feats),
        "--metrics",
        "fid,is,sfid,pr",
        "--inception",
        &s(&w),
        "--json",
    ]);
    assert!(json["fid"].as_f64().unwrap().abs() < 1e-6, "{json}");
    assert!(json["sfid"].as_f64().unwrap().abs() < 1e-6, "{json}");
    assert_eq!(json["precision"].as_f64(), Some(1.0), "{json}");
    assert_eq!(json["recall"].as_f64(), Some(1.0), "{json}");
    assert!(json["is_mean"].as_f64().unwrap() >= 1.0);
    assert_eq!(json["protocol"]["metrics"], "fid,is,sfid,pr");

    // Asking for a metric the reference cannot serve is one line naming what is missing.
    let o = Command::new(env!("CARGO_BIN_EXE_ddpm-eval"))
        .args(["fid", "--samples", &s(&imgs), "--ref", &s(&stats), "--metrics", "pr"])
        .args(["--inception", &s(&w), "--device", "cpu"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("precision/recall need the reference's pool3 features"), "{err}");
    let o = Command::new(env!("CARGO_BIN_EXE_ddpm-eval"))
        .args(["fid", "--samples", &s(&imgs), "--ref", &s(&stats), "--metrics", "fid,kid"])
        .args(["--inception", &s(&w), "--device", "cpu"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown metric \"kid\""));
}

#[test]
#[ignore = "needs the Python venv: run `cargo xtask test`"]
fn a_checkpoint_gets_sfid_and_precision_recall_against_a_cached_data_reference() {
    let dir = temp_dir("metrics-ckpt");
    let w = weights(&dir);
    let imgs = folder(&dir);
    let runs = temp_dir("metrics-runs");
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../configs/tiny.toml");
    let mut c = ddpm_train::RunConfig::load(&path).unwrap();
    c.train.total_steps = 2;
    c.train.sample_every = 0;
    ddpm_train::Trainer::new(c, &runs, tch::Device::Cpu)
        .unwrap()
        .train(&AtomicBool::new(false), &mut ddpm_train::LogProgress)
        .unwrap();
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let out = dir.join("out");
    let args = [
        "fid",
        "--checkpoint",
        "tiny",
        "--runs-dir",
        &s(&runs),
        "-n",
        "12",
        "--sampler",
        "ddim",
        "--steps",
        "3",
        "--ref",
        &s(&imgs),
        "--metrics",
        "sfid,pr",
        "--inception",
        &s(&w),
        "--out",
        &s(&out),
        "--json",
    ];
    let json = eval(&args);
    for k in ["sfid", "precision", "recall"] {
        assert!(json[k].as_f64().is_some(), "{k} missing: {json}");
    }
    assert!(json.get("fid").is_none(), "fid was not asked for: {json}");
    let (p, r) = (json["precision"].as_f64().unwrap(), json["recall"].as_f64().unwrap());
    assert!((0.0..=1.0).contains(&p) && (0.0..=1.0).contains(&r));
    // The reference went to the cache once: the same command again reuses it.
    assert!(json["protocol"]["ref"].as_str().unwrap().contains("cached"), "{json}");
    let again = eval(&args);
    // Equal up to the last bits: this sFID is about 5e-9 (samples and reference nearly share
    // their statistics), and the matrix square root's LAPACK reduction order may follow the
    // threads free at the time (a run under load differed by 3e-24).
    let close = |a: &serde_json::Value, b: &serde_json::Value| {
        let (a, b) = (a.as_f64().unwrap(), b.as_f64().unwrap());
        (a - b).abs() <= 1e-15 + 1e-9 * b.abs()
    };
    assert!(close(&again["sfid"], &json["sfid"]), "{} vs {}", again["sfid"], json["sfid"]);
    assert_eq!(again["protocol"]["ref"], json["protocol"]["ref"]);
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("fid.json")).unwrap()).unwrap();
    assert_eq!(written["sfid"], again["sfid"], "fid.json holds the last run's value");
    // Regression: the cache was keyed by the folder's path, so an edited folder kept its stale
    // statistics. It is keyed by the contents: a changed image gives new statistics.
    image::RgbImage::from_pixel(8, 8, image::Rgb([250, 10, 10])).save(imgs.join("00.png")).unwrap();
    let edited = eval(&args);
    assert_ne!(edited["protocol"]["ref"], json["protocol"]["ref"], "{edited}");
    assert_ne!(edited["sfid"], json["sfid"], "the reference statistics were not recomputed");
}
