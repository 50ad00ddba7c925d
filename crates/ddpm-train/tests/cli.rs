//! The `ddpm-train` binary end to end: a short run produces the run directory; SIGTERM and
//! SIGINT write a checkpoint and exit cleanly; bad input gives one line and exit code 2.

use ddpm_run::RunDir;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ddpm-train"));
    c.env("RUST_LOG", "info");
    c
}

fn tiny() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../configs/tiny.toml")
}

fn run_dir(runs: &Path, name: &str) -> RunDir {
    RunDir::new(runs.join(name))
}

#[test]
fn a_short_run_writes_config_checkpoint_metrics_and_pictures() {
    let runs = ddpm_testkit::temp_dir("cli-run");
    let out = bin()
        .args(["train", "--config"])
        .arg(tiny())
        .args(["--steps", "8", "--name", "short", "--runs-dir"])
        .arg(&runs)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let run = run_dir(&runs, "short");
    assert_eq!(run.list_checkpoints().last().unwrap().0, 8);
    for f in ["config.toml", "metrics.jsonl", "loss.svg", "samples.png"] {
        assert!(run.root.join(f).exists(), "{f}");
    }
    let metrics = std::fs::read_to_string(run.root.join("metrics.jsonl")).unwrap();
    let last: serde_json::Value = serde_json::from_str(metrics.lines().last().unwrap()).unwrap();
    assert_eq!(last["step"], 8);
    assert!(last["loss"].as_f64().unwrap().is_finite());
    // Running the finished command again resumes and has nothing left to do.
    let again = bin()
        .args(["train", "--config"])
        .arg(tiny())
        .args(["--steps", "8", "--name", "short", "--runs-dir"])
        .arg(&runs)
        .output()
        .unwrap();
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("resumed"));
}

fn interrupt_with(signal: &str) {
    let runs = ddpm_testkit::temp_dir(&format!("cli-{signal}"));
    let name = format!("sig{signal}");
    let child = bin()
        .args(["train", "--config"])
        .arg(tiny())
        .args(["--steps", "1000000", "--name", &name, "--runs-dir"])
        .arg(&runs)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until training is under way (the first checkpoint exists), then signal.
    let run = run_dir(&runs, &name);
    let start = Instant::now();
    while run.list_checkpoints().is_empty() {
        assert!(start.elapsed() < Duration::from_secs(120), "training did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}: {stderr}", out.status);
    assert!(stderr.contains("interrupted at step"), "{stderr}");
    let (last, path) = run.list_checkpoints().pop().unwrap();
    assert!(last > 5, "a checkpoint at the interrupted step, got {last}");
    ddpm_nets::tensorfile::TensorFile::open(&path).expect("the interrupt checkpoint is whole");
}

#[test]
fn sigterm_writes_a_checkpoint_and_exits_cleanly() {
    interrupt_with("TERM");
}

#[test]
fn sigint_writes_a_checkpoint_and_exits_cleanly() {
    interrupt_with("INT");
}

fn fails_with(args: &[&str], needle: &str) {
    let runs = ddpm_testkit::temp_dir("cli-bad");
    let out = bin().args(args).arg("--runs-dir").arg(&runs).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{args:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    let last = err.lines().last().unwrap_or_default();
    assert!(last.starts_with("error:") && last.contains(needle), "{args:?}: {err}");
}

#[test]
fn bad_input_is_one_line_and_exit_code_2() {
    let dir = ddpm_testkit::temp_dir("cli-bad-config");
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[optim]\nlearning_rate = 1\n").unwrap();
    fails_with(&["train", "--config", bad.to_str().unwrap()], "optim.learning_rate");
    std::fs::write(&bad, "[train]\ntotal_steps = -3\n").unwrap();
    fails_with(&["train", "--config", bad.to_str().unwrap()], "train.total_steps");
    fails_with(
        &["train", "--config", tiny().to_str().unwrap(), "--data", "/no/such/dir"],
        "/no/such/dir",
    );
    fails_with(&["train", "--config", tiny().to_str().unwrap(), "--device", "tpu"], "--device");
    // The tiny UNet takes 1x8x8 images; the swiss roll gives 2-D points.
    fails_with(&["train", "--config", tiny().to_str().unwrap(), "--data", "swissroll"], "shape");
    fails_with(&["import", "--diffusers", "/no/such/dir", "--name", "x"], "/no/such/dir");
}

/// Regression: a failed start used to write `runs/<name>/config.toml` before the data was
/// loaded, so the corrected command was refused as a config conflict. Now a wrong --data leaves
/// no run directory, and the corrected command trains.
#[test]
fn a_failed_start_leaves_nothing_and_the_corrected_command_trains() {
    let runs = ddpm_testkit::temp_dir("cli-failed-start");
    let start = |data: &str| {
        bin()
            .args(["train", "--config"])
            .arg(tiny())
            .args(["--steps", "2", "--name", "fixme", "--data", data, "--runs-dir"])
            .arg(&runs)
            .output()
            .unwrap()
    };
    let bad = start("/no/such/dir");
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("/no/such/dir"));
    assert!(!runs.join("fixme").exists(), "the failed start left {}", runs.join("fixme").display());
    let good = start("digits");
    assert!(good.status.success(), "{}", String::from_utf8_lossy(&good.stderr));
    assert_eq!(run_dir(&runs, "fixme").list_checkpoints().last().map(|c| c.0), Some(2));
}

/// Every count or size argument of `ddpm-train` given 0 is a one-line error naming the field,
/// exit code 2, and no run directory.
#[test]
fn every_count_or_size_argument_of_0_is_refused() {
    for (args, needle) in [
        (&["--steps", "0"][..], "train.total_steps: must be at least 1"),
        (&["--batch-size", "0"][..], "optim.batch_size: must be at least 1"),
    ] {
        let runs = ddpm_testkit::temp_dir("cli-zero");
        let out = bin()
            .args(["train", "--config"])
            .arg(tiny())
            .args(args)
            .arg("--runs-dir")
            .arg(&runs)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert_eq!(std::fs::read_dir(&runs).unwrap().count(), 0, "{args:?} wrote a run");
    }
}
