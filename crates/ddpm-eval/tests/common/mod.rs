//! What the `ddpm-eval` end-to-end tests share: a briefly trained run of a repository config,
//! and the binary run against it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::AtomicBool;

/// `configs/<config>.toml` trained for `steps` steps (no previews) into a fresh runs folder.
pub fn train(config: &str, steps: u64) -> PathBuf {
    let runs = ddpm_testkit::temp_dir("eval-cli-runs");
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../../configs/{config}.toml"));
    let mut c = ddpm_train::RunConfig::load(&path).unwrap();
    c.train.total_steps = steps;
    c.train.sample_every = 0;
    let mut t = ddpm_train::Trainer::new(c, &runs, tch::Device::Cpu).unwrap();
    t.train(&AtomicBool::new(false), &mut ddpm_train::LogProgress).unwrap();
    runs
}

/// `ddpm-eval ARGS --runs-dir RUNS --device cpu`.
pub fn eval(args: &[&str], runs: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ddpm-eval"))
        .args(args)
        .arg("--runs-dir")
        .arg(runs)
        .args(["--device", "cpu"])
        .output()
        .unwrap()
}

/// The stdout of a command that must succeed (else its stderr in the panic).
pub fn ok(o: &Output) -> String {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}
