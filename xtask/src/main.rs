//! `cargo xtask`: sets up the environment, builds and runs everything.
//!
//! Every command first makes sure the environment exists (a virtual environment with
//! PyTorch 2.11.0, whose libtorch tch links against, and the Python reference packages the
//! tests use), which takes a couple of minutes once and milliseconds after that.

mod core_crate;
mod env;
mod run;

use std::process::ExitCode;

const HELP: &str = "\
cargo xtask <command> [args]

Set-up and checks:
  setup                 create/refresh the environment (PyTorch venv, .ddpm/ links, digits data)
  doctor                torch version, CUDA/cuDNN availability, GPU, threads, paths
  test                  every test, the Python parity tests included (what CI runs)
  lint                  rustfmt --check and clippy -D warnings
  core-crate            ddpm-core as crates.io would ship it: docs with warnings denied,
                        cargo package, and a crate outside the workspace using it (part of test)
  bench [args]          the side-by-side benchmark suite; rewrites BENCHMARKS.md
  device-bundle         stripped release binaries, the digits run and the reference packages in
                        .device-bin/, for scripts/gpu_suite.sh on a GPU machine without Rust

Main jobs (arguments go to the binary; --help lists them):
  train [args]          train (default: the embedded digits job, configs/digits.toml);
                        --nproc N: N data-parallel processes on this machine, through torchrun
  sample [args]         sample from a checkpoint: --checkpoint NAME --sampler ddim --steps 50 ...
  figures [args]        the paper's figures: progressive generation, interpolation, 2-D trajectories
  fid [args]            FID/IS (or the digits classifier distance) of a checkpoint or of samples
  fid-stats [args]      reference statistics of a data set: --data DIR_OR_DATASET --out FILE.npz
  nll [args]            the variational bound in bits/dim over a data set
  sampler-sweep [args]  every sampler at 5, 10, 20, 50 NFE (and ancestral at T) on the run's measure
  import [args]         import a diffusers UNet2DModel folder: --diffusers DIR --name NAME
  export [args]         write a run as a diffusers DDPMPipeline folder: --checkpoint NAME --diffusers OUT
  convert-inception IN.pth OUT.safetensors
                        convert pytorch-fid's Inception weights (once, in Python) for `fid`
  schedule [args]       print a noise schedule: --schedule cosine --steps 4000 --respace ddim25 --json
";

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(cmd) = args.next() else {
        eprint!("{HELP}");
        return ExitCode::from(2);
    };
    let rest: Vec<String> = args.collect();
    let result = match cmd.as_str() {
        "setup" => env::ensure().map(|e| {
            e.print_paths();
            0
        }),
        "doctor" => run::doctor(&rest),
        "test" => run::test(&rest),
        "lint" => run::lint(),
        "core-crate" => env::ensure().and_then(|_| core_crate::check()).map(|()| 0),
        "bench" => run::bench(&rest),
        "device-bundle" => run::device_bundle(),
        "train" => run::train(&rest),
        "import" => run::binary("ddpm-train", &["import"], &rest),
        "export" => run::binary("ddpm-train", &["export"], &rest),
        "sample" => run::binary("ddpm-sample", &["sample"], &rest),
        "figures" => run::binary("ddpm-sample", &["figures"], &rest),
        "fid" => run::binary("ddpm-eval", &["fid"], &rest),
        "fid-stats" => run::binary("ddpm-eval", &["fid-stats"], &rest),
        "nll" => run::binary("ddpm-eval", &["nll"], &rest),
        "sampler-sweep" => run::binary("ddpm-eval", &["sampler-sweep"], &rest),
        "convert-inception" => run::convert_inception(&rest),
        "schedule" => run::schedule(&rest),
        "help" | "--help" | "-h" => {
            print!("{HELP}");
            Ok(0)
        }
        other => Err(format!("unknown command {other:?}; `cargo xtask help` lists them")),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(msg) => {
            eprintln!("xtask: {msg}");
            ExitCode::from(2)
        }
    }
}
