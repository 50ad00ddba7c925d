//! Test support for parity tests against the Python reference implementations.
//!
//! Parity tests are marked `#[ignore = "needs the venv ..."]` so that a plain `cargo test` on a
//! machine without the venv lists them as ignored, never as passed; `cargo xtask test` sets the
//! venv up and runs them with `--include-ignored`. When they do run without a venv they fail
//! with the set-up instructions.

use std::path::PathBuf;
use std::process::Command;

pub mod ranks;

/// The reason string used on every `#[ignore]` parity test.
pub const NEEDS_VENV: &str = "needs the Python venv: run `cargo xtask test`";

/// The project's root directory.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("project root")
}

/// The `scripts/` directory holding the oracle scripts.
pub fn scripts_dir() -> PathBuf {
    root().join("scripts")
}

/// The venv's Python interpreter; panics with the set-up instructions when it is missing.
pub fn python() -> PathBuf {
    let p = std::env::var_os("DDPM_PYTHON")
        .map(PathBuf::from)
        .or_else(|| option_env!("DDPM_PYTHON").map(PathBuf::from))
        .unwrap_or_else(|| root().join(".ddpm/venv/bin/python"));
    if !p.exists() {
        panic!(
            "the Python reference environment is missing ({}): run `cargo xtask setup` \
             (or `cargo xtask test`, which sets it up and runs every test)",
            p.display()
        );
    }
    p
}

/// Runs `scripts/<script>` with the venv's Python and returns its stdout; panics with
/// the script's stderr on failure.
pub fn run_script(script: &str, args: &[&str]) -> String {
    let out = Command::new(python())
        .arg(scripts_dir().join(script))
        .args(args)
        .env("PYTHONHASHSEED", "0")
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap_or_else(|e| panic!("running {script}: {e}"));
    if !out.status.success() {
        panic!("{script} {args:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    }
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// Runs a script that prints one JSON value and parses it.
pub fn run_json(script: &str, args: &[&str]) -> serde_json::Value {
    let text = run_script(script, args);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{script} printed no JSON ({e}): {text}"))
}

/// A fresh, empty temporary directory for one test.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("ddpm-test-{}-{}-{name}", std::process::id(), unique()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// An f64 array from a JSON value.
pub fn f64s(v: &serde_json::Value) -> Vec<f64> {
    v.as_array().expect("array").iter().map(|x| x.as_f64().expect("number")).collect()
}

/// Largest relative difference max |a-b| / max(|b|, floor) over two arrays of equal length.
pub fn max_rel_diff(a: &[f64], b: &[f64], floor: f64) -> f64 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    a.iter().zip(b).map(|(x, y)| (x - y).abs() / y.abs().max(floor)).fold(0.0, f64::max)
}
