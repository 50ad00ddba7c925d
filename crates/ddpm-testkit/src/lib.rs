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
    static SWEEP: std::sync::Once = std::sync::Once::new();
    SWEEP.call_once(remove_stale_temp_dirs);
    let dir =
        std::env::temp_dir().join(format!("ddpm-test-{}-{}-{name}", std::process::id(), unique()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

/// Removes the temporary folders of test processes that have ended (killed or failed tests
/// leave theirs), once they are an hour old, so that repeated runs do not fill the disk.
fn remove_stale_temp_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix("ddpm-test-").and_then(|r| r.split('-').next()) else {
            continue;
        };
        let alive = std::path::Path::new("/proc").join(pid).exists();
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age.as_secs() > 3600);
        if !alive && old && pid.parse::<u32>().is_ok() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
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

/// Where fault-injection tests damage a file of `len` bytes whose first `header` bytes are its
/// header: 20 distinct offsets, the first and last byte and a third of them inside the header
/// included, the rest spread over the body by a seeded generator (so a failure names an offset
/// that reproduces).
pub fn fault_offsets(len: usize, header: usize, seed: u64) -> Vec<usize> {
    assert!(len >= 40 && header < len, "a file of {len} bytes is too small to damage 20 ways");
    let mut state = seed;
    let mut next = move |below: usize| {
        // SplitMix64 (the testkit depends on nothing).
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) % below as u64) as usize
    };
    let mut v = vec![0, len - 1];
    while v.len() < 20 {
        let o = if v.len() < 8 && header > 1 { next(header) } else { header + next(len - header) };
        if !v.contains(&o) {
            v.push(o);
        }
    }
    v.sort();
    v
}

/// `bytes` with byte `at` changed (xor with a non-zero value derived from `at`).
pub fn flipped(bytes: &[u8], at: usize) -> Vec<u8> {
    let mut b = bytes.to_vec();
    b[at] ^= 1 + (at % 255) as u8;
    b
}

/// Runs `f`, turning a panic into a test failure that names `what`.
pub fn no_panic<T>(what: &str, f: impl FnOnce() -> T) -> T {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!("{what}: panicked instead of returning an error: {msg}")
        }
    }
}

/// An error message fit for a user: one line that names `file`.
pub fn assert_one_line_naming(what: &str, message: &str, file: &str) {
    assert!(!message.contains('\n'), "{what}: the error is more than one line: {message}");
    assert!(message.contains(file), "{what}: the error does not name {file}: {message}");
}
