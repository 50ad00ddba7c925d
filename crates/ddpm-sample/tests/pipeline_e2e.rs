//! End to end against diffusers: a small UNet2DModel with random weights, imported with
//! `ddpm-train import` (its library function), sampled by `ddpm-sample sample --sampler ddim --steps 20 --eta 0` from
//! the same initial noise, gives the same images as diffusers' DDIMPipeline.

use ddpm_io::npy;
use ddpm_testkit::{run_script, temp_dir};
use std::path::{Path, PathBuf};
use std::process::Command;

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ddpm-sample"))
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn compare(dir: &Path, runs: &Path, clip: bool) {
    let noise = dir.join("noise.npy");
    let theirs_path = dir.join(format!("theirs-{clip}.npy"));
    let mut args =
        vec![dir.to_str().unwrap(), noise.to_str().unwrap(), "20", theirs_path.to_str().unwrap()];
    if clip {
        args.push("--clip");
    }
    run_script("ref_pipeline.py", &args);
    let out = dir.join(format!("ours-{clip}"));
    run(Command::new(bin())
        .args([
            "sample",
            "--checkpoint",
            "imported",
            "--sampler",
            "ddim",
            "--steps",
            "20",
            "--eta",
            "0",
            "-n",
            "3",
        ])
        .args([
            "--clip",
            if clip { "true" } else { "false" },
            "--device",
            "cpu",
            "--no-png",
            "--noise",
        ])
        .arg(&noise)
        .arg("--runs-dir")
        .arg(runs)
        .arg("--out")
        .arg(&out));
    let (shape, ours) = npy::read_array(&out.join("samples.npz"), "samples").unwrap();
    let (tshape, theirs) = npy::read_array(&theirs_path, "x").unwrap();
    assert_eq!(shape, tshape);
    let diff = ours.iter().zip(&theirs).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(diff <= 1e-3, "clip={clip}: max abs difference {diff}");
    assert!(theirs.iter().any(|v| v.abs() > 0.1), "images are not trivially flat");
}

#[test]
#[ignore = "needs the Python venv: run `cargo xtask test`"]
fn ddim_matches_diffusers_ddim_pipeline_on_an_imported_model() {
    let dir = temp_dir("pipeline");
    run_script("ref_unet.py", &["make", dir.to_str().unwrap(), "--seed", "4"]);
    let runs = dir.join("runs");
    ddpm_train::import::import_diffusers(&dir, "imported", &runs).unwrap();
    // Initial noise as float32 N x C x H x W.
    let mut noise = Vec::new();
    let mut rng = ddpm_core::rng::SplitMix64::new(21);
    for _ in 0..3 * 3 * 16 * 16 {
        noise.push(rng.next_normal() as f32);
    }
    npy::write_npy(&dir.join("noise.npy"), &[3, 3, 16, 16], &noise).unwrap();
    compare(&dir, &runs, false);
    compare(&dir, &runs, true);
}
