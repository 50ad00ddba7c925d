//! `ddpm-sample` end to end on a tiny trained model: outputs, bit-identical reruns, sharding,
//! resume after an interruption, and one-line errors with exit code 2 that touch nothing.

use ddpm_io::npy;
use ddpm_run::{RunDir, load_model};
use ddpm_sample::job::{self, JobOptions, Labels, Manifest};
use ddpm_sample::{SamplerKind, SamplerOptions};
use ddpm_testkit::temp_dir;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;

/// A tiny model trained for a few steps; returns the runs directory (run "tiny").
fn trained() -> PathBuf {
    let runs = temp_dir("sample-cli-runs");
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../configs/tiny.toml");
    let mut c = ddpm_train::RunConfig::load(&path).unwrap();
    c.train.total_steps = 3;
    let mut t = ddpm_train::Trainer::new(c, &runs, tch::Device::Cpu).unwrap();
    t.train(&AtomicBool::new(false), &mut ddpm_train::LogProgress).unwrap();
    runs
}

fn sample(runs: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let checkpoint: &[&str] =
        if extra.contains(&"--checkpoint") { &[] } else { &["--checkpoint", "tiny"] };
    Command::new(env!("CARGO_BIN_EXE_ddpm-sample"))
        .arg("sample")
        .args(checkpoint)
        .args(["--device", "cpu", "--runs-dir"])
        .arg(runs)
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .unwrap()
}

fn ok(o: std::process::Output) {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

fn samples(out: &Path) -> (Vec<usize>, Vec<f32>) {
    npy::read_array(&out.join("samples.npz"), "samples").unwrap()
}

#[test]
fn writes_grid_pngs_and_npz() {
    let runs = trained();
    let out = temp_dir("sample-out").join("s");
    ok(sample(&runs, &out, &["--sampler", "ddim", "--steps", "5", "-n", "5", "--batch-size", "2"]));
    let (shape, v) = samples(&out);
    assert_eq!(shape, vec![5, 1, 8, 8]);
    assert!(v.iter().all(|x| (-1.0..=1.0).contains(x)));
    assert!(out.join("grid.png").exists() && out.join("images/000004.png").exists());
    assert!(out.join("manifest.json").exists() && !out.join("parts").exists());
}

#[test]
fn reruns_are_bit_identical_and_shards_reproduce_the_whole() {
    let runs = trained();
    let dir = temp_dir("sample-det");
    for sampler in ["ddpm", "ddim", "dpm-solver++", "heun"] {
        let steps =
            ["--sampler", sampler, "--steps", "4", "--batch-size", "3", "--seed", "7", "--no-png"];
        let (a, b) = (dir.join(format!("{sampler}-a")), dir.join(format!("{sampler}-b")));
        ok(sample(&runs, &a, &[&steps[..], &["-n", "6"]].concat()));
        ok(sample(&runs, &b, &[&steps[..], &["-n", "6"]].concat()));
        assert_eq!(
            std::fs::read(a.join("samples.npz")).unwrap(),
            std::fs::read(b.join("samples.npz")).unwrap(),
            "{sampler}"
        );
        let (s1, s2) = (dir.join(format!("{sampler}-s1")), dir.join(format!("{sampler}-s2")));
        ok(sample(&runs, &s1, &[&steps[..], &["-n", "3", "--start", "0"]].concat()));
        ok(sample(&runs, &s2, &[&steps[..], &["-n", "3", "--start", "3"]].concat()));
        let whole = samples(&a).1;
        let parts = [samples(&s1).1, samples(&s2).1].concat();
        assert_eq!(whole, parts, "{sampler}: shards differ from the whole job");
    }
}

#[test]
fn an_interrupted_job_resumes_where_it_stopped() {
    let runs = trained();
    let model =
        load_model(&RunDir::resolve("tiny", &runs).unwrap(), tch::Device::Cpu, true).unwrap();
    let mut opts = SamplerOptions::new(SamplerKind::Ddpm, 100);
    opts.steps = 5;
    let manifest = Manifest {
        checkpoint: "tiny".into(),
        checkpoint_step: model.step,
        ema: true,
        sampler: opts,
        seed: 1,
        start: 0,
        n: 6,
        batch_size: 2,
        labels: Labels::None,
        noise_file: None,
        sample_shape: model.net.sample_shape(),
    };
    let dir = temp_dir("sample-resume");
    let whole = JobOptions { out: dir.join("whole"), pngs: false, bf16: false, graph: None };
    job::run(&model, &manifest, &whole, None, &mut |_| {}).unwrap();
    let cut = JobOptions { out: dir.join("cut"), pngs: false, bf16: false, graph: None };
    // Stop after the first batch, as a kill would.
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        job::run(&model, &manifest, &cut, None, &mut |done| {
            if done >= 2 {
                panic!("interrupted")
            }
        })
    }));
    assert!(r.is_err());
    assert!(cut.out.join("parts/part-000000000.npy").exists());
    assert!(!cut.out.join("samples.npz").exists());
    let mut sampled_batches = 0;
    job::run(&model, &manifest, &cut, None, &mut |_| sampled_batches += 1).unwrap();
    assert_eq!(samples(&whole.out), samples(&cut.out));
    // A different job into the same folder is refused.
    let mut other = manifest.clone();
    other.seed = 2;
    let e = job::run(&model, &other, &cut, None, &mut |_| {}).unwrap_err().to_string();
    assert!(e.contains("different job"), "{e}");
}

fn fails(runs: &Path, args: &[&str], needle: &str) {
    let out = temp_dir("sample-bad").join("never");
    let o = sample(runs, &out, args);
    assert_eq!(o.status.code(), Some(2), "{args:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
    assert!(err.contains(needle), "{args:?}: {err}");
    assert!(!out.exists(), "{args:?} wrote into --out despite failing");
}

#[test]
fn bad_input_is_one_line_exit_2_and_writes_nothing() {
    let runs = trained();
    fails(&runs, &["--sampler", "euler"], "--sampler");
    fails(&runs, &["--steps", "2000"], "--steps must be in 1..=T = 100, got 2000");
    fails(&runs, &["--guidance", "3"], "unconditional");
    fails(&runs, &["--sampler", "ddpm", "--eta", "0.5"], "--eta");
    let noise = temp_dir("sample-noise").join("n.npy");
    npy::write_npy(&noise, &[2, 1, 4, 4], &[0.0; 32]).unwrap();
    fails(&runs, &["-n", "2", "--noise", noise.to_str().unwrap()], "expected [2, 1, 8, 8]");
    // A truncated checkpoint, named.
    let run = RunDir::new(runs.join("tiny"));
    let (_, ckpt) = run.list_checkpoints().pop().unwrap();
    let bytes = std::fs::read(&ckpt).unwrap();
    std::fs::write(&ckpt, &bytes[..bytes.len() - 1000]).unwrap();
    fails(&runs, &[], "truncated");
    std::fs::write(&ckpt, &bytes).unwrap();
    // A config describing another architecture than the checkpoint's weights.
    let cfg = std::fs::read_to_string(run.config_path()).unwrap();
    std::fs::write(run.config_path(), cfg.replace("ch = 16", "ch = 24")).unwrap();
    fails(&runs, &[], "shape");
    fails(&runs, &["--checkpoint", "nosuchrun"], "nosuchrun");
}
