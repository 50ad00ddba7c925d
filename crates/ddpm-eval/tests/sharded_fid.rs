//! `ddpm-eval fid` on two CPU ranks (Gloo, one thread each), launched with the variables
//! torchrun gives its workers, against the same command in one process: the ranks share the
//! sampling (contiguous shares of the batches) and the Inception work (of the samples and of
//! the uncached reference); the samples equal one process's bit for bit, FID and IS equal its
//! values within 1e-9 relative, the reference statistics are cached once, and rank 0 alone
//! reports. Inception has random weights made here (the real ones cannot be downloaded), with
//! batch-norm statistics that keep its activations of order one.

use ddpm_eval::FidInception;
use ddpm_eval::fid::Stats;
use ddpm_testkit::ranks::spawn_ranks;
use ddpm_testkit::temp_dir;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::time::Duration;
use tch::{Device, Kind, Tensor};

const BIN: &str = env!("CARGO_BIN_EXE_ddpm-eval");

/// The tiny model trained for a few steps on the grey 8x8 images of `data` (so that its
/// measure is FID against that folder); returns the runs directory (run "tiny").
fn trained(dir: &Path, data: &Path) -> PathBuf {
    let runs = dir.join("runs");
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../configs/tiny.toml");
    let mut c = ddpm_train::RunConfig::load(&path).unwrap();
    c.data = ddpm_data::config_from_arg(&data.display().to_string());
    (c.data.channels, c.data.image_size) = (Some(1), Some(8));
    c.train.total_steps = 3;
    c.train.sample_every = 0;
    c.train.threads = 1;
    let mut t = ddpm_train::Trainer::new(c, &runs, Device::Cpu).unwrap();
    t.train(&AtomicBool::new(false), &mut ddpm_train::LogProgress).unwrap();
    runs
}

/// pytorch-fid's architecture with random weights: He-scaled convolutions, batch norms near the
/// identity with positive variances.
fn random_inception(path: &Path) {
    let net = FidInception::new(Device::Cpu);
    tch::manual_seed(11);
    tch::no_grad(|| {
        for (name, t) in net.vs.variables() {
            let size = t.size();
            let values = if name.ends_with("running_var") {
                Tensor::rand(size.as_slice(), (Kind::Float, Device::Cpu)) + 0.5
            } else if size.len() == 4 {
                let fan_in = (size[1] * size[2] * size[3]) as f64;
                Tensor::randn(size.as_slice(), (Kind::Float, Device::Cpu)) * (2.0 / fan_in).sqrt()
            } else if name.ends_with("bn.weight") {
                Tensor::randn(size.as_slice(), (Kind::Float, Device::Cpu)) * 0.1 + 1.0
            } else {
                Tensor::randn(size.as_slice(), (Kind::Float, Device::Cpu)) * 0.05
            };
            t.shallow_clone().copy_(&values);
        }
    });
    net.vs.save(path).unwrap();
}

/// A folder of `n` random 8x8 grey PNGs (the training data and FID reference).
fn reference(dir: &Path, n: usize) {
    let mut rng = ddpm_core::rng::SplitMix64::new(4);
    for i in 0..n {
        let v: Vec<f32> = (0..64).map(|_| (2.0 * rng.next_f64() - 1.0) as f32).collect();
        ddpm_viz::save_image(&dir.join(format!("{i:03}.png")), &v, 1, 8, 8).unwrap();
    }
}

fn json_line(output: &str) -> serde_json::Value {
    let line = output.lines().rfind(|l| l.starts_with('{')).unwrap_or_else(|| panic!("{output}"));
    serde_json::from_str(line).unwrap()
}

fn rel(a: &serde_json::Value, b: &serde_json::Value) -> f64 {
    let (a, b) = (a.as_f64().unwrap(), b.as_f64().unwrap());
    (a - b).abs() / b.abs()
}

fn stats_file(home: &Path) -> PathBuf {
    let files: Vec<PathBuf> = std::fs::read_dir(home.join("fid-stats"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "npz"))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    files[0].clone()
}

#[test]
fn two_ranks_sample_and_measure_what_one_process_does() {
    let dir = temp_dir("sharded-fid");
    let (weights, data) = (dir.join("inception.safetensors"), dir.join("data"));
    reference(&data, 16);
    let runs = trained(&dir, &data);
    random_inception(&weights);
    // 20 samples in sampling batches of 5 (2 for each rank) and Inception batches of 4 (3 for
    // rank 0, 2 for rank 1); the reference is the run's data, 16 images, uncached.
    let args = |out: &str| -> Vec<String> {
        let s = |p: &Path| p.display().to_string();
        let out = s(&dir.join(out));
        let (runs, weights) = (s(&runs), s(&weights));
        #[rustfmt::skip]
        let a = [
            "fid", "--checkpoint", "tiny", "--runs-dir", &runs, "--device", "cpu", "-n", "20",
            "--sampler", "ddim", "--steps", "5", "--inception", &weights,
            "--sample-batch-size", "5", "--batch-size", "4", "--json", "--out", &out,
        ];
        a.map(String::from).to_vec()
    };
    // Fresh homes: no cached reference statistics.
    let (home1, home2) = (dir.join("home1"), dir.join("home2"));
    let started = std::time::Instant::now();
    let one = Command::new(BIN)
        .args(args("one"))
        .env("DDPM_HOME", &home1)
        .env("OMP_NUM_THREADS", "1")
        .env_remove("RANK")
        .env_remove("WORLD_SIZE")
        .output()
        .unwrap();
    let one_out = String::from_utf8_lossy(&one.stdout);
    assert!(one.status.success(), "{}", String::from_utf8_lossy(&one.stderr));
    let one_s = started.elapsed();
    let home = home2.display().to_string();
    let exits = spawn_ranks(Path::new(BIN), &args("two"), 2, &dir, &[("DDPM_HOME", &home)])
        .wait(Duration::from_secs(300));
    for (r, e) in exits.iter().enumerate() {
        assert_eq!(e.code, Some(0), "rank {r}:\n{}", e.output);
    }
    assert!(!exits[1].output.contains('{'), "rank 1 reported:\n{}", exits[1].output);
    println!("one process {one_s:.1?}, two ranks {:.1?}", exits[0].after);
    let (a, b) = (json_line(&one_out), json_line(&exits[0].output));

    // The samples: the same bytes.
    let samples = |d: &str| std::fs::read(dir.join(d).join("samples.npz")).unwrap();
    assert_eq!(samples("one"), samples("two"), "2-rank samples differ from 1 process's");
    assert!(!dir.join("two/parts").exists());

    // The reference statistics, computed by both ranks, cached once.
    let (s1, s2) = (stats_file(&home1), stats_file(&home2));
    let (x, y) = (Stats::load(&s1).unwrap(), Stats::load(&s2).unwrap());
    for (key, p, q) in [("mu", &x.mu, &y.mu), ("sigma", &x.sigma, &y.sigma)] {
        let scale = q.abs().max().double_value(&[]);
        let diff = (p - q).abs().max().double_value(&[]);
        assert!(diff <= 1e-12 * scale, "{key}: {diff:e} of {scale:e}");
    }

    let (fid, is) = (rel(&b["fid"], &a["fid"]), rel(&b["is_mean"], &a["is_mean"]));
    println!(
        "FID {} vs {} (relative difference {fid:.1e}), IS {} vs {} ({is:.1e})",
        b["fid"], a["fid"], b["is_mean"], a["is_mean"]
    );
    assert!(a["fid"].as_f64().unwrap() > 0.0 && a["is_mean"].as_f64().unwrap() > 1.0, "{a}");
    assert!(fid <= 1e-9 && is <= 1e-9, "FID {fid:e}, IS {is:e}");
    assert!(rel(&b["is_std"], &a["is_std"]) <= 1e-6, "{a} {b}");
    assert_eq!(b["protocol"]["ranks"], 2);
    assert!(a["protocol"].get("ranks").is_none());
    std::fs::remove_dir_all(&dir).unwrap();
}
