//! `ddpm-check`: the device checks of `scripts/gpu_suite.sh`, each one line of JSON and exit
//! code 0 (passed) or 1 (failed), so that a GPU machine without Rust or Python packages can
//! prove the GPU path with our binaries alone.
//!
//! - `adam`: fused and per-tensor Adam (the trainer's `TrainStep`, f32, deterministic kernels)
//!   give the same CIFAR-10 UNet weights after N steps, within a tolerance;
//! - `inception`: Inception features of the same images and (seeded random) weights on the
//!   device and on the CPU agree, relative to the features' scale;
//! - `same-weights A B`: two checkpoints hold the same tensors (bit-identical at tolerance 0);
//! - `same-samples A B`: two `samples.npz` hold the same images within a tolerance;
//! - `collective-timeout`: a one-rank group's all-reduce queued behind GPU work longer than the
//!   group's timeout comes back as an error (NCCL's blocking wait is in effect, so a hung peer
//!   is reported, not waited on forever); on the CPU (Gloo) the work finishes before the
//!   collective starts, and the all-reduce must succeed. One GPU cannot lose a peer: a dead
//!   rank under NCCL is not checked by this.

use clap::{Parser, Subcommand};
use ddpm_eval::FidInception;
use ddpm_nets::tensorfile::TensorFile;
use ddpm_nets::{ModelConfig, UNetConfig};
use ddpm_train::{Precision, RunConfig, StepInput, TrainStep};
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;
use tch::{Device, Kind, Tensor};

#[derive(Debug, Parser)]
#[command(name = "ddpm-check", about = "Device checks for scripts/gpu_suite.sh")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Fused against per-tensor Adam on the CIFAR-10 UNet.
    Adam {
        #[arg(long, default_value = "cuda")]
        device: String,
        #[arg(long, default_value_t = 10)]
        steps: u64,
        #[arg(long, default_value_t = 8)]
        batch: i64,
        #[arg(long, default_value_t = 1e-5)]
        tol: f64,
    },
    /// Inception features on the device against the CPU.
    Inception {
        #[arg(long, default_value = "cuda")]
        device: String,
        #[arg(long, default_value_t = 1e-3)]
        tol: f64,
    },
    /// Two checkpoints (or safetensors files) hold the same tensors.
    SameWeights {
        a: PathBuf,
        b: PathBuf,
        /// Compare only tensors under this prefix (e.g. model/).
        #[arg(long, default_value = "")]
        prefix: String,
        #[arg(long, default_value_t = 0.0)]
        tol: f64,
    },
    /// A one-rank group's all-reduce behind work longer than its timeout is an error (CUDA).
    CollectiveTimeout {
        #[arg(long, default_value = "cuda")]
        device: String,
        /// The group's timeout, seconds.
        #[arg(long, default_value_t = 2)]
        timeout: u64,
    },
    /// Two samples.npz hold the same images.
    SameSamples {
        a: PathBuf,
        b: PathBuf,
        #[arg(long, default_value_t = 0.0)]
        tol: f64,
    },
}

fn device(s: &str) -> Device {
    ddpm_nets::parse_device(s, "--device").unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(2)
    })
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a.to_kind(Kind::Double) - b.to_kind(Kind::Double)).abs().max().double_value(&[])
}

/// Fused and per-tensor Adam from the same initialisation over the same batches.
fn adam(device: Device, steps: u64, batch: i64) -> f64 {
    ddpm_shim::set_cuda_math(false, false).expect("cuda math");
    ddpm_shim::set_deterministic(true).expect("deterministic");
    let mut config =
        RunConfig { model: ModelConfig::Unet(UNetConfig::ddpm_cifar10()), ..RunConfig::default() };
    config.train.precision = Precision::F32;
    config.optim.warmup_steps = 0;
    let run = |fused: bool| {
        let mut c = config.clone();
        c.optim.fused = fused;
        let mut s = TrainStep::new(&c, device).expect("train step");
        for i in 0..steps {
            let x0 = (Tensor::arange(batch * 3 * 32 * 32, (Kind::Float, device))
                * (0.013 * (i + 1) as f64))
                .sin()
                .view([batch, 3, 32, 32]);
            let t =
                (Tensor::arange(batch, (Kind::Int64, device)) * 97 + i as i64 * 13).remainder(1000);
            let _ = s.run(&StepInput { x0: &x0, t: &t, weights: None, y: None }, i, 2e-4);
        }
        s.adam.params.iter().map(|p| p.detach().copy()).collect::<Vec<_>>()
    };
    let (a, b) = (run(true), run(false));
    a.iter().zip(&b).map(|(x, y)| max_abs_diff(x, y)).fold(0.0, f64::max)
}

/// Relative difference of pool3 features on the device and on the CPU, with the same seeded
/// random weights (He-scaled convolutions, identity batch norms).
fn inception(device: Device) -> f64 {
    ddpm_shim::set_cuda_math(false, false).expect("cuda math");
    let cpu = FidInception::new(Device::Cpu);
    {
        let _rng = ddpm_nets::torch_rng_lock();
        tch::manual_seed(7);
        tch::no_grad(|| {
            for (name, mut v) in cpu.vs.variables() {
                if name.ends_with("conv.weight") {
                    let fan_in: i64 = v.size()[1..].iter().product();
                    let _ = v.normal_(0.0, (2.0 / fan_in as f64).sqrt());
                } else if name == "fc.weight" {
                    let _ = v.normal_(0.0, 0.01);
                }
            }
        });
    }
    let mut on_device = FidInception::new(device);
    on_device.vs.copy(&cpu.vs).expect("copy weights");
    let x =
        (Tensor::arange(8 * 3 * 32 * 32, (Kind::Float, Device::Cpu)) * 0.0071).sin() * 0.5 + 0.5;
    let x = x.view([8, 3, 32, 32]);
    let _g = tch::no_grad_guard();
    let a = cpu.forward(&x).pool3;
    let b = on_device.forward(&x).pool3.to_device(Device::Cpu);
    max_abs_diff(&a, &b) / a.abs().max().double_value(&[]).max(1e-12)
}

/// Runs the check: Ok(seconds until the all-reduce returned, its error if any).
fn collective_timeout(device: Device, timeout: u64) -> Result<(f64, Option<String>), String> {
    let env = ddpm_dist::DistEnv {
        rendezvous: Some(ddpm_dist::Rendezvous {
            addr: "127.0.0.1".into(),
            port: free_port(),
            agent_store: false,
        }),
        ..ddpm_dist::DistEnv::single()
    };
    let options = ddpm_dist::DistOptions {
        timeout: std::time::Duration::from_secs(timeout),
        failure_grace: std::time::Duration::from_secs(1),
    };
    let dist = ddpm_dist::Dist::init(&env, device, options).map_err(|e| e.to_string())?;
    ddpm_shim::set_cuda_math(false, false).map_err(|e| e.to_string())?;
    let _g = tch::no_grad_guard();
    // About 5x the timeout of f32 matmuls on an H100/H200 (16384^2: ~9 TFLOP each), all queued.
    let n = if device.is_cuda() { 16384 } else { 512 };
    let mut x = Tensor::randn([n, n], (Kind::Float, device)) / (n as f64).sqrt();
    for _ in 0..(60 * timeout as usize / 2).max(4) {
        x = x.mm(&x).tanh();
    }
    let sum = x.sum(Kind::Float).view([1]);
    let start = std::time::Instant::now();
    let result = dist.all_reduce_sum(std::slice::from_ref(&sum));
    Ok((start.elapsed().as_secs_f64(), result.err().map(|e| e.to_string())))
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local address").port()
}

fn same_weights(a: &PathBuf, b: &PathBuf, prefix: &str) -> Result<(f64, usize), String> {
    let (fa, fb) = (
        TensorFile::open(a).map_err(|e| e.to_string())?,
        TensorFile::open(b).map_err(|e| e.to_string())?,
    );
    let keys: Vec<&String> = fa.tensors.keys().filter(|k| k.starts_with(prefix)).collect();
    let mut worst = 0.0f64;
    for k in &keys {
        let (x, y) =
            (fa.tensor(k).map_err(|e| e.to_string())?, fb.tensor(k).map_err(|e| e.to_string())?);
        if x.size() != y.size() {
            return Err(format!("{k}: shapes {:?} and {:?}", x.size(), y.size()));
        }
        worst = worst.max(max_abs_diff(&x, &y));
    }
    Ok((worst, keys.len()))
}

fn same_samples(a: &PathBuf, b: &PathBuf) -> Result<f64, String> {
    let read = |p: &PathBuf| ddpm_io::npy::read_array(p, "samples").map_err(|e| e.to_string());
    let ((sa, va), (sb, vb)) = (read(a)?, read(b)?);
    if sa != sb {
        return Err(format!("shapes {sa:?} and {sb:?}"));
    }
    Ok(va.iter().zip(&vb).map(|(x, y)| (x - y).abs() as f64).fold(0.0, f64::max))
}

fn verdict(check: &str, value: f64, tol: f64, extra: serde_json::Value) -> ExitCode {
    let pass = value <= tol;
    println!(
        "{}",
        json!({ "check": check, "value": value, "tol": tol, "pass": pass, "detail": extra })
    );
    if pass { ExitCode::SUCCESS } else { ExitCode::from(1) }
}

fn main() -> ExitCode {
    let cli: Cli = ddpm_cli::parse_or_exit();
    match cli.command {
        Command::Adam { device: d, steps, batch, tol } => {
            let diff = adam(device(&d), steps, batch);
            verdict(
                "adam_fused_vs_per_tensor",
                diff,
                tol,
                json!({ "steps": steps, "batch": batch }),
            )
        }
        Command::Inception { device: d, tol } => {
            verdict("inception_device_vs_cpu", inception(device(&d)), tol, json!({ "device": d }))
        }
        Command::SameWeights { a, b, prefix, tol } => match same_weights(&a, &b, &prefix) {
            Ok((d, n)) => {
                verdict("same_weights", d, tol, json!({ "tensors": n, "bit_identical": d == 0.0 }))
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
        Command::CollectiveTimeout { device: d, timeout } => {
            let dev = device(&d);
            match collective_timeout(dev, timeout) {
                // CUDA: the error must come back (value 0 passes); CPU: no error.
                Ok((secs, err)) => {
                    let failed_as_expected = err.is_some() == dev.is_cuda();
                    verdict(
                        "collective_timeout",
                        if failed_as_expected { 0.0 } else { 1.0 },
                        0.0,
                        json!({ "device": d, "timeout_s": timeout, "returned_after_s": secs, "error": err }),
                    )
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::SameSamples { a, b, tol } => match same_samples(&a, &b) {
            Ok(d) => verdict("same_samples", d, tol, json!({ "bit_identical": d == 0.0 })),
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
    }
}
