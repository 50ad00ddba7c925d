//! `ddpm-core` as the crate a user adds from crates.io: its docs build with warnings denied,
//! `cargo package` packs and builds it on its own, and a scratch crate outside this workspace
//! (so none of its `.cargo/config.toml`, toolchain file or environment applies) depends on it
//! by path with `default-features = false`, builds with no libtorch anywhere in its
//! environment, and runs the crate-level example's numbers.

use crate::env;
use std::fs;
use std::path::Path;
use std::process::Command;

/// What the scratch crate's `main` prints when every value holds.
const OK_LINE: &str = "ddpm-core as a dependency: ok";

const MAIN_RS: &str = r#"use ddpm_core::{BetaSchedule, GaussianDiffusion};

fn main() {
    let process = GaussianDiffusion::new(BetaSchedule::paper_linear().betas(1000).unwrap()).unwrap();
    let abar_t = process.alphas_cumprod[999];
    let beta_tilde_1 = process.posterior_variance[1];
    let ddim = process.respaced_str("ddim50").unwrap();
    println!("abar_T = {abar_t:.4e}, beta~_1 = {beta_tilde_1:.4e}, ddim50 ends at step {}", ddim.timestep_map[49]);
    assert!((abar_t - 4.0358e-5).abs() < 1e-8, "abar_T = {abar_t}");
    assert!((beta_tilde_1 - 5.4532e-5).abs() < 1e-8, "beta~_1 = {beta_tilde_1}");
    assert_eq!(ddim.timestep_map[49], 980);
    println!("ddpm-core as a dependency: ok");
}
"#;

fn cargo_in(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env::cargo());
    c.args(args).current_dir(dir);
    c
}

fn must(cmd: &mut Command, what: &str) -> Result<std::process::Output, String> {
    let out = cmd.output().map_err(|e| format!("{what}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{what} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(out)
}

pub fn check() -> Result<(), String> {
    let root = env::root();
    eprintln!(
        "xtask: ddpm-core as a published crate: docs, cargo package, a crate outside the workspace"
    );
    must(
        cargo_in(&root, &["doc", "-q", "-p", "ddpm-core", "--no-deps", "--no-default-features"])
            .env("RUSTDOCFLAGS", "-D warnings"),
        "cargo doc -p ddpm-core (warnings denied)",
    )?;
    // `--allow-dirty`: the check runs on a developer's uncommitted work too; CI's clone is clean.
    must(
        &mut cargo_in(&root, &["package", "-q", "-p", "ddpm-core", "--allow-dirty"]),
        "cargo package -p ddpm-core",
    )?;

    let scratch = std::env::temp_dir().join(format!("ddpm-core-user-{}", std::process::id()));
    let _ = fs::remove_dir_all(&scratch);
    let write = |rel: &str, text: String| {
        let path = scratch.join(rel);
        fs::create_dir_all(path.parent().unwrap())
            .map_err(|e| format!("{}: {e}", path.display()))?;
        fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))
    };
    let core = root.join("crates/ddpm-core");
    write(
        "Cargo.toml",
        format!(
            "[package]\nname = \"ddpm-core-user\"\nversion = \"0.0.0\"\nedition = \"2024\"\npublish = false\n\n\
             [dependencies]\nddpm-core = {{ path = {:?}, default-features = false }}\n\n[workspace]\n",
            core.display().to_string()
        ),
    )?;
    write("src/main.rs", MAIN_RS.to_owned())?;
    // The same toolchain as the workspace's (the default one may be absent or older).
    fs::copy(root.join("rust-toolchain.toml"), scratch.join("rust-toolchain.toml"))
        .map_err(|e| format!("rust-toolchain.toml: {e}"))?;
    let mut run = cargo_in(&scratch, &["run", "-q"]);
    run.env("CARGO_TARGET_DIR", env::target_dir().join("ddpm-core-user"));
    for var in ["LIBTORCH", "LIBTORCH_CXX11_ABI", "LIBTORCH_USE_PYTORCH", "LD_LIBRARY_PATH"] {
        run.env_remove(var);
    }
    let result = must(&mut run, "the scratch crate that depends on ddpm-core");
    let lock = fs::read_to_string(scratch.join("Cargo.lock")).unwrap_or_default();
    let _ = fs::remove_dir_all(&scratch);
    let out = String::from_utf8_lossy(&result?.stdout).into_owned();
    if !out.contains(OK_LINE) {
        return Err(format!("the scratch crate ran but did not print {OK_LINE:?}:\n{out}"));
    }
    if lock.contains("name = \"torch-sys\"") {
        return Err("ddpm-core with default-features = false pulled in torch-sys".into());
    }
    eprint!("xtask: {out}");
    Ok(())
}
