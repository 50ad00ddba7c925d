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

/// Builds every binary of the workspace in one cargo invocation (release, the default members'
/// unified features), so that no command rebuilds what another built, and returns the
/// directory holding them.
fn build_all() -> Result<PathBuf, String> {
    must(&mut cargo_cmd(&["build", "--release"]), "building the binaries")?;
    Ok(env::target_dir().join("release"))
}

/// Sets up, builds and runs `bin` with `pre` then the user's arguments, from the project root.
/// On Unix the binary replaces this process (exec): SIGINT/SIGTERM from a terminal, `timeout`
/// or a scheduler reach the job itself, which checkpoints and exits.
pub fn binary(bin: &str, pre: &[&str], rest: &[String]) -> Result<u8, String> {
    let e = env::ensure()?;
    let exe = build_all()?.join(bin);
    let mut cmd = Command::new(&exe);
    cmd.args(pre).args(rest).current_dir(&e.root).env("DDPM_HOME", &e.home);
    exec(cmd, &format!("running {}", exe.display()))
}

/// `cargo xtask train [--nproc N] ...`: with `--nproc N`, the data-parallel job on this
/// machine exactly as PyTorch users launch one, through the venv's torchrun:
/// `torchrun --standalone --nproc-per-node N --no-python <ddpm-train> train ...` (exec'd, so
/// signals reach torchrun, which forwards them to every rank); without it, `ddpm-train train`.
pub fn train(rest: &[String]) -> Result<u8, String> {
    let (nproc, rest) = take_nproc(rest)?;
    let Some(nproc) = nproc else { return binary("ddpm-train", &["train"], &rest) };
    let e = env::ensure()?;
    let exe = build_all()?.join("ddpm-train");
    let torchrun = e.venv.join("bin/torchrun");
    let mut cmd = Command::new(&torchrun);
    cmd.args(["--standalone", "--nproc-per-node", &nproc.to_string(), "--no-python"])
        .arg(&exe)
        .arg("train")
        .args(&rest)
        .current_dir(&e.root)
        .env("DDPM_HOME", &e.home);
    exec(cmd, &format!("running {}", torchrun.display()))
}

/// Removes `--nproc N` (or `--nproc=N`) from the arguments and returns N.
fn take_nproc(args: &[String]) -> Result<(Option<usize>, Vec<String>), String> {
    let mut nproc = None;
    let mut rest = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let value = match a.strip_prefix("--nproc") {
            Some("") => it.next().map(String::as_str).unwrap_or(""),
            Some(v) if v.starts_with('=') => &v[1..],
            _ => {
                rest.push(a.clone());
                continue;
            }
        };
        match value.parse::<usize>() {
            Ok(n) if n >= 1 => nproc = Some(n),
            _ => {
                return Err(format!(
                    "--nproc must be a number of processes (1 or more), got {value:?}"
                ));
            }
        }
    }
    Ok((nproc, rest))
}

#[cfg(unix)]
fn exec(mut cmd: Command, what: &str) -> Result<u8, String> {
    use std::os::unix::process::CommandExt;
    // exec returns only on failure.
    let err = cmd.exec();
    Err(format!("{what}: {err}"))
}

#[cfg(not(unix))]
fn exec(mut cmd: Command, what: &str) -> Result<u8, String> {
    run(&mut cmd, what)
}

pub fn doctor(rest: &[String]) -> Result<u8, String> {
    let e = env::ensure()?;
    e.print_paths();
    let exe = build_all()?.join("ddpm-doctor");
    let code = run(Command::new(&exe).args(rest).current_dir(&e.root), "running ddpm-doctor")?;
    if code != 0 {
        eprintln!("xtask: the environment is broken (see above); `cargo xtask setup` rebuilds it");
    }
    Ok(code)
}

/// Every test: the libtorch-free core alone first (proving it needs no PyTorch), then
/// ddpm-core as a user of crates.io gets it (`core_crate`), then the whole workspace with the Python parity tests (`--include-ignored`). Style (rustfmt,
/// clippy) is `cargo xtask lint`'s job, so a formatting nit never hides a test result.
pub fn test(rest: &[String]) -> Result<u8, String> {
    env::ensure()?;
    // The binaries first, as every other command builds them: the tests that run
    // `cargo xtask ...` then start at once, and so does the user's next command.
    build_all()?;
    let mut core = cargo_cmd(&["test", "--release", "-p", "ddpm-core", "--no-default-features"]);
    core.args(["--", "--include-ignored"]);
    must(&mut core, "ddpm-core tests without libtorch")?;
    crate::core_crate::check()?;
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

/// The schedule tool (it uses no libtorch itself).
pub fn schedule(rest: &[String]) -> Result<u8, String> {
    binary("ddpm-schedule", &[], rest)
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
    let built = build_all()?;
    for bin in [
        "ddpm-doctor",
        "ddpm-bench",
        "ddpm-check",
        "ddpm-train",
        "ddpm-sample",
        "ddpm-eval",
        "ddpm-dist-bench",
    ] {
        let exe = built.join(bin);
        must(
            Command::new("strip").arg("--strip-debug").arg(&exe).arg("-o").arg(bin_dir.join(bin)),
            &format!("strip {bin}"),
        )?;
    }
    // The exported digits (the default job's data).
    let data = dest.join("home/data");
    fs::create_dir_all(&data).map_err(|err| format!("{}: {err}", data.display()))?;
    let digits = e.home.join("data/digits.bin");
    fs::copy(&digits, data.join("digits.bin"))
        .map_err(|err| format!("{}: {err}", digits.display()))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn nproc_is_taken_out_of_the_training_arguments() {
        let (n, rest) = take_nproc(&strings(&["--nproc", "4", "--config", "c.toml"])).unwrap();
        assert_eq!((n, rest), (Some(4), strings(&["--config", "c.toml"])));
        let (n, rest) = take_nproc(&strings(&["--steps", "9", "--nproc=2"])).unwrap();
        assert_eq!((n, rest), (Some(2), strings(&["--steps", "9"])));
        assert_eq!(
            take_nproc(&strings(&["--name", "x"])).unwrap(),
            (None, strings(&["--name", "x"]))
        );
        for bad in [&["--nproc"][..], &["--nproc", "0"], &["--nproc=two"]] {
            let e = take_nproc(&strings(bad)).unwrap_err();
            assert!(e.starts_with("--nproc must be a number of processes"), "{e}");
        }
    }
}
