//! `cargo xtask train` becomes the training process (exec), so a signal sent to the command the
//! user started — Ctrl-C, `timeout`, a scheduler's SIGTERM — reaches the job itself, which
//! writes a checkpoint and exits cleanly. Regression: xtask used to run the job as a child and
//! not pass signals on, so `timeout 580 cargo xtask train ...` left the job training alone.

#![cfg(unix)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn checkpoints(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> =
        std::fs::read_dir(dir).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    v.retain(|p| p.extension().is_some_and(|e| e == "safetensors"));
    v.sort();
    v
}

#[test]
fn sigterm_to_cargo_xtask_train_reaches_the_job() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let runs = std::env::temp_dir().join(format!("ddpm-xtask-exec-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&runs);
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut child = Command::new(cargo)
        .args(["xtask", "train", "--config", "configs/tiny.toml", "--steps", "1000000"])
        .args(["--name", "sig", "--runs-dir"])
        .arg(&runs)
        .current_dir(root)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let ckpts = runs.join("sig/checkpoints");
    let start = Instant::now();
    while checkpoints(&ckpts).is_empty() {
        // The first call may have to build the binaries.
        assert!(start.elapsed() < Duration::from_secs(1200), "training did not start");
        if let Some(status) = child.try_wait().unwrap() {
            panic!("cargo xtask train exited early with {status}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // The process we started is now the job itself: cargo and xtask replaced themselves.
    let comm = std::fs::read_to_string(format!("/proc/{}/comm", child.id())).unwrap();
    assert_eq!(comm.trim(), "ddpm-train", "the started process is not the job");
    let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}: {stderr}", out.status);
    assert!(stderr.contains("interrupted at step"), "{stderr}");
    let last = checkpoints(&ckpts).pop().unwrap();
    let name = last.file_name().unwrap().to_string_lossy().into_owned();
    let step: u64 =
        name.trim_start_matches("ckpt-").trim_end_matches(".safetensors").parse().unwrap();
    assert!(step >= 5, "the interrupt checkpoint is at step {step}");
    let _ = std::fs::remove_dir_all(&runs);
}
