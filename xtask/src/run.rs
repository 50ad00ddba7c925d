//! The tasks: build a binary with cargo and run it from the project root, or run the test suite.

use crate::env::{self, cargo};
use std::fs;
use std::path::PathBuf;
use std::process::Command;

fn exit_code(st: std::process::ExitStatus) -> u8 {
    st.code().map(|c| c.clamp(0, 255) as u8).unwrap_or(1)
}

fn run(cmd: &mut Command, what: &str) -> Result<u8, String> {
    let st = cmd.status().map_err(|e| format!("{what}: {e}"))?;
    Ok(exit_code(st))
}

fn must(cmd: &mut Command, what: &str) -> Result<(), String> {
    match run(cmd, what)? {
        0 => Ok(()),
        code => Err(format!("{what} failed (exit code {code})")),
    }
}

fn cargo_cmd(args: &[&str]) -> Command {
    let mut c = Command::new(cargo());
    c.args(args).current_dir(env::root());
    c
}

/// Builds `bin` of `package` in release mode and returns its path.
fn build_release(package: &str, bin: &str) -> Result<PathBuf, String> {
    must(
        &mut cargo_cmd(&["build", "--release", "-p", package, "--bin", bin]),
        &format!("building {bin}"),
    )?;
    Ok(env::target_dir().join("release").join(bin))
}

/// Sets up, builds `bin` and runs it with `pre` then the user's arguments, from the project root.
pub fn binary(package: &str, bin: &str, pre: &[&str], rest: &[String]) -> Result<u8, String> {
    let e = env::ensure()?;
    let exe = build_release(package, bin)?;
    run(
        Command::new(&exe).args(pre).args(rest).current_dir(&e.root).env("DDPM_HOME", &e.home),
        &format!("running {}", exe.display()),
    )
}

pub fn doctor(rest: &[String]) -> Result<u8, String> {
    let e = env::ensure()?;
    e.print_paths();
    let exe = build_release("ddpm-nets", "ddpm-doctor")?;
    let code = run(Command::new(&exe).args(rest).current_dir(&e.root), "running ddpm-doctor")?;
    if code != 0 {
        eprintln!("xtask: the environment is broken (see above); `cargo xtask setup` rebuilds it");
    }
    Ok(code)
}

/// Every test: the libtorch-free core alone first (proving it needs no PyTorch), then the
/// whole workspace with the Python parity tests (`--include-ignored`). Style (rustfmt,
/// clippy) is `cargo xtask lint`'s job, so a formatting nit never hides a test result.
pub fn test(rest: &[String]) -> Result<u8, String> {
    env::ensure()?;
    let mut core = cargo_cmd(&["test", "--release", "-p", "ddpm-core", "--no-default-features"]);
    core.args(["--", "--include-ignored"]);
    must(&mut core, "ddpm-core tests without libtorch")?;
    let mut all = cargo_cmd(&["test", "--release", "--workspace", "--no-fail-fast"]);
    all.args(["--", "--include-ignored"]).args(rest);
    must(&mut all, "workspace tests")?;
    Ok(0)
}

pub fn lint() -> Result<u8, String> {
    env::ensure()?;
    must(&mut cargo_cmd(&["fmt", "--all", "--", "--check"]), "cargo fmt --check")?;
    must(
        &mut cargo_cmd(&[
            "clippy",
            "--release",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]),
        "cargo clippy",
    )?;
    Ok(0)
}

/// The schedule tool needs no libtorch and no venv.
pub fn schedule(rest: &[String]) -> Result<u8, String> {
    let exe = build_release("ddpm-core", "ddpm-schedule")?;
    run(Command::new(&exe).args(rest).current_dir(env::root()), "running ddpm-schedule")
}

pub fn convert_inception(rest: &[String]) -> Result<u8, String> {
    let e = env::ensure()?;
    if rest.len() != 2 {
        return Err(
            "usage: cargo xtask convert-inception pt_inception-2015-12-05-6726825d.pth OUT.safetensors"
                .into(),
        );
    }
    run(
        Command::new(&e.python).arg(e.root.join("scripts/convert_inception.py")).args(rest),
        "scripts/convert_inception.py",
    )
}

pub fn bench(rest: &[String]) -> Result<u8, String> {
    let e = env::ensure()?;
    run(
        Command::new(&e.python)
            .arg(e.root.join("scripts/bench_suite.py"))
            .args(rest)
            .current_dir(&e.root)
            .env("CARGO", cargo()),
        "scripts/bench_suite.py",
    )
}

/// Release binaries, the digits run and the pure-Python reference packages, in the git-ignored
/// `.device-bin/`: what `scripts/gpu_suite.sh` needs on a GPU machine that has PyTorch 2.11.0
/// but no Rust toolchain and no network. Binaries are stripped of debug info to travel light.
pub fn device_bundle() -> Result<u8, String> {
    let e = env::ensure()?;
    let dest = e.root.join(".device-bin");
    let bin_dir = dest.join("bin");
    fs::create_dir_all(&bin_dir).map_err(|err| format!("{}: {err}", bin_dir.display()))?;
    for (package, bin) in [
        ("ddpm-nets", "ddpm-doctor"),
        ("ddpm-eval", "ddpm-bench"),
        ("ddpm-train", "ddpm-train"),
        ("ddpm-sample", "ddpm-sample"),
    ] {
        let exe = build_release(package, bin)?;
        must(
            Command::new("strip").arg("--strip-debug").arg(&exe).arg("-o").arg(bin_dir.join(bin)),
            &format!("strip {bin}"),
        )?;
    }
    // The default digits run (for the sampler table): its config and newest checkpoint.
    let run = e.root.join("runs/digits");
    let newest = fs::read_dir(run.join("checkpoints"))
        .ok()
        .into_iter()
        .flatten()
        .filter_map(|d| d.ok().map(|d| d.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .max();
    match newest {
        Some(ckpt) => {
            let to = dest.join("digits/checkpoints");
            let _ = fs::remove_dir_all(&to);
            fs::create_dir_all(&to).map_err(|err| format!("{}: {err}", to.display()))?;
            for (from, into) in [
                (run.join("config.toml"), dest.join("digits/config.toml")),
                (ckpt.clone(), to.join(ckpt.file_name().unwrap())),
            ] {
                fs::copy(&from, &into).map_err(|err| format!("{}: {err}", from.display()))?;
            }
        }
        None => eprintln!(
            "xtask: no runs/digits checkpoint (run `cargo xtask train`); bundling without it"
        ),
    }
    // diffusers, pytorch-fid and huggingface_hub are pure Python: copied from the venv.
    must(
        Command::new(&e.python)
            .arg(e.root.join("scripts/bundle_reference.py"))
            .arg(dest.join("site")),
        "scripts/bundle_reference.py",
    )?;
    println!("{}", dest.display());
    Ok(0)
}
