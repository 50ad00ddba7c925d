//! Parity of schedules and derived arrays with independent references, computed at test time
//! by `scripts/ref_schedule.py` in the project's venv:
//! - a NumPy (f64) statement of improved-diffusion's schedules, arrays and respacing, to 1e-12;
//! - diffusers' DDPMScheduler (which keeps f32 arrays), to f32 precision.
//!
//! The first set runs through the `ddpm-schedule` command itself, as `cargo xtask schedule` does.
//!
//! The NumPy statement remains the oracle for what no published package computes:
//! improved-diffusion's respacing ("50", "ddim25", "10,15,20" sections), the jsd and constant
//! schedules, and f64 agreement to 1e-12. The schedules themselves also have published oracles:
//! diffusers (below) and denoising-diffusion-pytorch (`denoising_diffusion_pytorch_oracle.rs`:
//! linear with its 1000/T scaling, cosine, tables).

use ddpm_core::{BetaSchedule, DiffusionConfig, GaussianDiffusion, ScheduleName};
use ddpm_testkit::{NEEDS_VENV, f64s, max_rel_diff, run_json};
use serde_json::Value;
use std::process::Command;

const KEYS: [&str; 7] = [
    "timestep_map",
    "betas",
    "alphas_cumprod",
    "posterior_variance",
    "posterior_log_variance_clipped",
    "posterior_mean_coef1",
    "posterior_mean_coef2",
];

fn schedule_cli(args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_ddpm-schedule"))
        .args(args)
        .arg("--json")
        .output()
        .expect("run ddpm-schedule");
    assert!(
        out.status.success(),
        "ddpm-schedule {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json")
}

fn check_against_numpy(args: &[&str]) {
    let ours = schedule_cli(args);
    let theirs = run_json("ref_schedule.py", args);
    for key in KEYS {
        let (a, b) = (f64s(&ours[key]), f64s(&theirs[key]));
        assert_eq!(a.len(), b.len(), "{key} length for {args:?}");
        // posterior_variance[0] is exactly 0: compare absolutely below 1e-300.
        let diff = max_rel_diff(&a, &b, 1e-300);
        assert!(diff <= 1e-12, "{key} for {args:?}: max relative difference {diff:e}");
    }
}

#[test]
#[ignore = "needs the Python venv: run `cargo xtask test`"]
fn schedule_command_matches_improved_diffusion_linear_1000() {
    let _ = NEEDS_VENV;
    for respace in [None, Some("50"), Some("ddim25"), Some("10,10")] {
        let mut args = vec!["--schedule", "linear", "--steps", "1000"];
        if let Some(r) = respace {
            args.extend(["--respace", r]);
        }
        check_against_numpy(&args);
    }
}

#[test]
#[ignore = "needs the Python venv: run `cargo xtask test`"]
fn schedule_command_matches_improved_diffusion_cosine_1000_and_4000() {
    for steps in ["1000", "4000"] {
        for respace in [None, Some("50"), Some("ddim25"), Some("10,10")] {
            let mut args = vec!["--schedule", "cosine", "--steps", steps];
            if let Some(r) = respace {
                args.extend(["--respace", r]);
            }
            check_against_numpy(&args);
        }
    }
}

#[test]
#[ignore = "needs the Python venv: run `cargo xtask test`"]
fn other_schedules_match_numpy() {
    for args in [
        &["--schedule", "quadratic", "--steps", "1000"][..],
        &["--schedule", "sigmoid", "--steps", "500", "--beta-start", "1e-4", "--beta-end", "0.03"],
        &["--schedule", "constant", "--steps", "100", "--beta-end", "0.01"],
        &["--schedule", "jsd", "--steps", "100"],
        &["--schedule", "linear", "--steps", "4000", "--scale-linear", "--respace", "ddim100"],
        &["--schedule", "cosine", "--steps", "300", "--respace", "10,15,20"],
    ] {
        check_against_numpy(args);
    }
}

/// The library's extra arrays (not printed by the command) against the same oracle.
#[test]
#[ignore = "needs the Python venv: run `cargo xtask test`"]
fn derived_arrays_match_numpy() {
    let d = GaussianDiffusion::new(BetaSchedule::paper_cosine().betas(1000).unwrap()).unwrap();
    let theirs = run_json("ref_schedule.py", &["--schedule", "cosine", "--steps", "1000"]);
    for (key, ours) in [
        ("alphas_cumprod_prev", &d.alphas_cumprod_prev),
        ("sqrt_recipm1_alphas_cumprod", &d.sqrt_recipm1_alphas_cumprod),
        ("fixedlarge_log_variance", &d.fixedlarge_log_variance),
    ] {
        let diff = max_rel_diff(ours, &f64s(&theirs[key]), 1e-300);
        assert!(diff <= 1e-12, "{key}: {diff:e}");
    }
}

/// diffusers computes its arrays in f32, so agreement is to f32 precision, but it is a
/// reference written by other people from the same papers.
#[test]
#[ignore = "needs the Python venv: run `cargo xtask test`"]
fn schedules_match_diffusers_ddpm_scheduler() {
    for (name, steps) in [
        (ScheduleName::Linear, 1000usize),
        (ScheduleName::Cosine, 1000),
        (ScheduleName::Quadratic, 1000),
        (ScheduleName::Sigmoid, 1000),
    ] {
        let config = DiffusionConfig { schedule: name, steps, ..Default::default() };
        let d = config.build().unwrap();
        let arg = format!("{name:?}").to_lowercase();
        let theirs = run_json(
            "ref_schedule.py",
            &["--oracle", "diffusers", "--schedule", &arg, "--steps", &steps.to_string()],
        );
        let betas = max_rel_diff(&d.betas, &f64s(&theirs["betas"]), 1e-30);
        assert!(betas < 3e-7, "{arg} betas: {betas:e}");
        let abar = max_rel_diff(&d.alphas_cumprod, &f64s(&theirs["alphas_cumprod"]), 1e-30);
        // f32 cumulative products drift over 1000 steps; relative error grows as abar shrinks.
        assert!(abar < 2e-4, "{arg} alphas_cumprod: {abar:e}");
        let pv = f64s(&theirs["posterior_variance"]);
        // diffusers re-derives beta_t = 1 - abar_t/abar_{t-1} in f32: cancellation costs up to
        // f32-epsilon / beta_1 ~ 1e-3 relative at small t.
        let var = max_rel_diff(&d.posterior_variance[1..], &pv[1..], 1e-30);
        assert!(var < 2e-3, "{arg} posterior variance: {var:e}");
    }
}

/// Bad arguments give a one-line error naming the argument, and exit code 2.
#[test]
fn bad_arguments_exit_2_naming_the_argument() {
    for (args, needle) in [
        (&["--steps", "0"][..], "--steps"),
        (&["--steps", "1000", "--respace", "7,7,7,7000"][..], "--respace"),
        (&["--respace", "ddim999"][..], "--respace"),
        (&["--beta-start", "-0.1"][..], "--beta-start"),
        (&["--schedule", "constant", "--beta-end", "1.5"][..], "--beta-start/--beta-end"),
        (&["--schedule", "bogus"][..], "--schedule"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_ddpm-schedule")).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim().lines().count(), 1, "one line for {args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

/// Every count argument of `ddpm-schedule` given 0 (T, and the step counts inside --respace)
/// is a one-line error naming the argument, exit code 2.
#[test]
fn every_count_argument_of_0_is_refused() {
    for (args, needle) in [
        (&["--steps", "0"][..], "--steps: the number of diffusion steps must be at least 1, got 0"),
        (&["--respace", "0"][..], "--respace: bad timestep spacing \"0\": keeps no steps"),
        (&["--respace", "ddim0"][..], "--respace: bad timestep spacing \"ddim0\""),
        (&["--respace", "0,0"][..], "--respace"),
        (&["--schedule", "custom", "--betas", ""][..], "--betas"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_ddpm-schedule")).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim().lines().count(), 1, "one line for {args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

#[test]
fn config_file_is_read_and_its_errors_are_named() {
    let dir = ddpm_testkit::temp_dir("schedule-config");
    let good = dir.join("run.toml");
    std::fs::write(&good, "[model]\nch = 64\n[diffusion]\nsteps = 4000\nschedule = \"cosine\"\n")
        .unwrap();
    let v = schedule_cli(&["--config", good.to_str().unwrap(), "--respace", "ddim25"]);
    assert_eq!(v["num_timesteps"], 25);
    assert_eq!(v["original_num_steps"], 4000);
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[diffusion]\nstepz = 10\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ddpm-schedule"))
        .args(["--config", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("stepz") && err.contains("bad.toml"), "{err}");
}

#[test]
fn summary_names_t_and_snr_range() {
    let out = Command::new(env!("CARGO_BIN_EXE_ddpm-schedule")).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("1000") && text.contains("SNR") && text.contains("2.000000e-2"),
        "{text}"
    );
}
