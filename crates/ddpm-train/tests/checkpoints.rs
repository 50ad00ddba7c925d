//! Checkpoints: written atomically, pruned to the newest K, a damaged newest file is passed
//! over in favour of the last good one, and a non-finite loss stops the run without writing
//! a checkpoint after it.

mod common;

use common::tiny_config;
use ddpm_run::RunDir;
use ddpm_train::{Outcome, TrainError, Trainer};
use std::sync::atomic::AtomicBool;
use tch::Device;

fn no_stop() -> AtomicBool {
    AtomicBool::new(false)
}

#[test]
fn keeps_the_newest_k_and_leaves_no_temporary_files() {
    let runs = ddpm_testkit::temp_dir("ckpt-keep");
    let mut c = tiny_config();
    c.train.total_steps = 12;
    c.train.checkpoint_every = 3;
    c.train.keep_checkpoints = 2;
    let mut t = Trainer::new(c, &runs, Device::Cpu).unwrap();
    t.train(&no_stop(), &mut ddpm_train::LogProgress).unwrap();
    let run = RunDir::new(runs.join("tiny"));
    let steps: Vec<u64> = run.list_checkpoints().into_iter().map(|(s, _)| s).collect();
    assert_eq!(steps, vec![9, 12]);
    let stray: Vec<_> = std::fs::read_dir(run.checkpoints_dir())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("tmp"))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
    for f in ["config.toml", "metrics.jsonl", "loss.svg", "samples.png"] {
        assert!(run.root.join(f).exists(), "{f} missing");
    }
}

/// A crash mid-write leaves a temporary file and at worst a truncated newest checkpoint (a
/// full disk); resuming passes over both and continues from the last good checkpoint.
#[test]
fn a_damaged_newest_checkpoint_falls_back_to_the_last_good_one() {
    let runs = ddpm_testkit::temp_dir("ckpt-damaged");
    let mut c = tiny_config();
    c.train.total_steps = 10;
    c.train.checkpoint_every = 5;
    Trainer::new(c.clone(), &runs, Device::Cpu)
        .unwrap()
        .train(&no_stop(), &mut ddpm_train::LogProgress)
        .unwrap();
    let run = RunDir::new(runs.join("tiny"));
    let newest = run.checkpoint_path(10);
    let bytes = std::fs::read(&newest).unwrap();
    std::fs::write(&newest, &bytes[..bytes.len() / 2]).unwrap();
    std::fs::write(run.checkpoints_dir().join(".ckpt-000000015.safetensors.tmp-999"), b"partial")
        .unwrap();
    let t = Trainer::new(c, &runs, Device::Cpu).unwrap();
    assert_eq!(t.step, 5, "resumed from the last good checkpoint");
}

/// Regression: pruning counted a damaged newer checkpoint toward `keep_checkpoints`, so after
/// resuming past it with `keep_checkpoints = 1` every new checkpoint was deleted as soon as it
/// was written, and the next crash restarted the run from step 0.
#[test]
fn a_damaged_newer_checkpoint_never_counts_toward_keep_so_new_ones_survive() {
    let runs = ddpm_testkit::temp_dir("ckpt-prune-damaged");
    let mut c = tiny_config();
    c.train.total_steps = 4;
    c.train.checkpoint_every = 2;
    c.train.keep_checkpoints = 1;
    Trainer::new(c.clone(), &runs, Device::Cpu)
        .unwrap()
        .train(&no_stop(), &mut ddpm_train::LogProgress)
        .unwrap();
    let run = RunDir::new(runs.join("tiny"));
    // A damaged file from later in the run (say, cut by a full disk) beside the good step 4.
    let bytes = std::fs::read(run.checkpoint_path(4)).unwrap();
    std::fs::write(run.checkpoint_path(50), &bytes[..bytes.len() / 3]).unwrap();
    c.train.total_steps = 8;
    let mut t = Trainer::new(c.clone(), &runs, Device::Cpu).unwrap();
    assert_eq!(t.step, 4);
    t.train(&no_stop(), &mut ddpm_train::LogProgress).unwrap();
    let steps: Vec<u64> = run.list_checkpoints().into_iter().map(|(s, _)| s).collect();
    assert_eq!(steps, vec![8, 50], "the newest good checkpoint is kept, the damaged one left");
    // A crash now resumes from step 8, not from 0.
    let t = Trainer::new(c, &runs, Device::Cpu).unwrap();
    assert_eq!(t.step, 8);
}

#[test]
fn a_non_finite_loss_stops_the_run_and_names_the_step() {
    let runs = ddpm_testkit::temp_dir("ckpt-nan");
    let mut c = tiny_config();
    c.name = "nan".into();
    c.train.total_steps = 40;
    c.train.checkpoint_every = 1;
    c.train.log_every = 1;
    c.optim.lr = 1e30;
    c.optim.warmup_steps = 0;
    c.optim.grad_clip = 0.0;
    let mut t = Trainer::new(c, &runs, Device::Cpu).unwrap();
    let err = t.train(&no_stop(), &mut ddpm_train::LogProgress).unwrap_err();
    let TrainError::NonFinite { step, last_good } = err else {
        panic!("expected NonFinite, got {err}")
    };
    let run = RunDir::new(runs.join("nan"));
    let newest = run.list_checkpoints().last().map(|(s, _)| *s);
    assert_eq!(newest, last_good, "no checkpoint after the last good one");
    assert!(newest.is_none_or(|n| n < step), "checkpoint {newest:?} not before bad step {step}");
    assert!(err_text(step, last_good).contains(&format!("step {step}")));
}

fn err_text(step: u64, last_good: Option<u64>) -> String {
    TrainError::NonFinite { step, last_good }.to_string()
}

#[test]
fn a_run_with_another_config_is_refused_by_name() {
    let runs = ddpm_testkit::temp_dir("ckpt-conflict");
    let c = tiny_config();
    let _ = Trainer::new(c.clone(), &runs, Device::Cpu).unwrap();
    let mut other = c.clone();
    other.optim.lr = 5e-4;
    let e = Trainer::new(other, &runs, Device::Cpu).unwrap_err().to_string();
    assert!(e.contains("optim.lr"), "{e}");
    // Only the step count may change: that extends the run.
    let mut longer = c;
    longer.train.total_steps = 99;
    assert!(Trainer::new(longer, &runs, Device::Cpu).is_ok());
    let _ = Outcome::Finished { step: 0 };
}
