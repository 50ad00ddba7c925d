//! `ddpm-bench`: our side of `cargo xtask bench` (scripts/bench_suite.py runs it beside
//! scripts/bench_reference.py and writes BENCHMARKS.md). Prints one JSON object.
//!
//! Workloads, each the same shapes as the reference's:
//! - train_small / train_cifar10: one training step (forward, eps-MSE, backward, clipping,
//!   Adam, EMA) through the trainer's own `TrainStep`; f32, and bf16 autocast on CUDA;
//! - optimiser: ATen operator calls per optimiser step (zero_grad + clip + Adam + EMA), the
//!   per-tensor loop against the fused/foreach path, on the CIFAR-10 model;
//! - sample_cifar10: DDIM steps (network forward + update) per second, optionally through a
//!   captured CUDA graph;
//! - inception: pool3 features of 32x32 images; frechet: the distance on 2048-d statistics;
//! - digits: images/s of every sampler at its usual step count on a trained digits run.
//!
//! With `--data-parallel`, only the data-parallel training step instead: this process is one
//! rank of the launcher's job (torchrun; alone without one), training the CIFAR-10 UNet on its
//! share of `--global-batch` through the trainer's `TrainStep` with the gradient all-reduce,
//! for a fixed number of steps (every rank must take as many); rank 0 prints the JSON.

use clap::Parser;
use ddpm_core::tensor::TensorDiffusion;
use ddpm_eval::{FidInception, Stats, frechet_distance};
use ddpm_nets::{ModelConfig, UNetConfig};
use ddpm_run::{DEFAULT_RUNS_DIR, RunDir, load_model};
use ddpm_sample::guidance::GuidedModel;
use ddpm_sample::noise::ImageNoise;
use ddpm_sample::samplers::{self, SamplerKind, SamplerOptions};
use ddpm_train::{Precision, RunConfig, StepInput, TrainStep};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

#[derive(Debug, Parser)]
struct Args {
    #[arg(long, default_value = "cpu")]
    device: String,
    #[arg(long, default_value_t = 2)]
    threads: i32,
    /// Seconds of measurement per workload.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// A trained digits run to time the samplers on.
    #[arg(long)]
    digits_run: Option<PathBuf>,
    /// Where the Frechet-distance statistics are written for the reference to reuse.
    #[arg(long, default_value = "target/bench")]
    stats_dir: PathBuf,
    /// Only the data-parallel training step, as one rank of the launcher's job.
    #[arg(long)]
    data_parallel: bool,
    /// The global batch of --data-parallel, split over the ranks.
    #[arg(long, default_value_t = 8)]
    global_batch: i64,
    /// Timed steps of --data-parallel (after 2 warm-up steps).
    #[arg(long, default_value_t = 8)]
    steps: usize,
}

fn small() -> UNetConfig {
    UNetConfig {
        ch: 64,
        ch_mult: vec![1, 2, 2],
        attention_resolutions: vec![16],
        ..UNetConfig::default()
    }
}

fn sync(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

/// Mean seconds per call after warm-up, measured for at least `seconds` and 3 calls.
fn timed(device: Device, seconds: f64, warmup: usize, mut f: impl FnMut()) -> f64 {
    for _ in 0..warmup {
        f();
    }
    sync(device);
    let start = Instant::now();
    let mut n = 0;
    loop {
        f();
        n += 1;
        sync(device);
        let el = start.elapsed().as_secs_f64();
        if el >= seconds && n >= 3 {
            return el / n as f64;
        }
    }
}

/// The trainer's step for a UNet of `cfg` (paper defaults otherwise), fused or per-tensor
/// optimiser, bf16 autocast on CUDA when asked.
fn setup(cfg: &UNetConfig, device: Device, fused: bool, bf16: bool) -> TrainStep {
    let mut config = RunConfig { model: ModelConfig::Unet(cfg.clone()), ..RunConfig::default() };
    config.optim.fused = fused;
    config.train.precision = if bf16 { Precision::Bf16 } else { Precision::F32 };
    TrainStep::new(&config, device).expect("a valid configuration")
}

/// One step as the trainer takes it, on a batch already on the device.
fn step(s: &mut TrainStep, x0: &Tensor, n: u64) {
    let t = Tensor::randint(1000, [x0.size()[0]], (Kind::Int64, x0.device()));
    let input = StepInput { x0, t: &t, weights: None, y: None };
    s.run(&input, n, 2e-4).expect("a training step (a collective failed)");
}

fn bench_train(cfg: &UNetConfig, batch: i64, device: Device, seconds: f64, bf16: bool) -> Value {
    let mut s = setup(cfg, device, true, bf16);
    let x0 = Tensor::randn([batch, 3, 32, 32], (Kind::Float, device));
    let mut n = 0;
    let sec = timed(device, seconds, 3, || {
        step(&mut s, &x0, n);
        n += 1;
    });
    let params: i64 = s.vs.trainable_variables().iter().map(|t| t.numel() as i64).sum();
    json!({ "seconds_per_step": sec, "images_per_s": batch as f64 / sec, "batch": batch, "params": params })
}

/// ATen operator calls of one optimiser step (clip + Adam + EMA + zero_grad) after a backward pass.
fn optimiser_ops(device: Device) -> Value {
    let mut out = json!({});
    for fused in [false, true] {
        let mut s = setup(&UNetConfig::ddpm_cifar10(), device, fused, false);
        let x0 = Tensor::randn([2, 3, 32, 32], (Kind::Float, device));
        step(&mut s, &x0, 0);
        let loss = s
            .net
            .forward_t(&x0, &Tensor::zeros([2], (Kind::Float, device)), None, true)
            .square()
            .mean(Kind::Float);
        loss.backward();
        let ((), ops) = ddpm_shim::count_ops(|| {
            let _ = s.adam.clip_grad_norm(1.0);
            s.adam.step(2e-4);
            s.ema.update(1);
            s.adam.zero_grad();
        })
        .unwrap();
        out[if fused { "fused" } else { "per_tensor" }] =
            json!({ "top_level": ops.top_level, "all": ops.all });
        out["parameter_tensors"] = json!(s.adam.params.len());
    }
    out
}

fn bench_sample(batch: i64, device: Device, seconds: f64, bf16: bool) -> Value {
    let s = setup(&UNetConfig::ddpm_cifar10(), device, true, false);
    let mut opts = SamplerOptions::new(SamplerKind::Ddim, 1000);
    opts.steps = 10;
    let indices: Vec<u64> = (0..batch as u64).collect();
    let sec = timed(device, seconds, 1, || {
        let mut noise = ImageNoise::new(0, &indices, &[3, 32, 32], device);
        let x_t = noise.draw();
        let guided = GuidedModel::new(&s.net, 1.0, bf16);
        let mut model = |x: &Tensor, t: &Tensor| guided.output(x, t, None);
        let _ = samplers::sample(&opts, &s.diffusion, &mut model, x_t, &mut noise, &mut |_| {})
            .unwrap();
    }) / opts.steps as f64;
    json!({ "seconds_per_step": sec, "image_steps_per_s": batch as f64 / sec, "batch": batch })
}

fn bench_inception(batch: i64, device: Device, seconds: f64) -> Value {
    let net = FidInception::new(device);
    let x = Tensor::rand([batch, 3, 32, 32], (Kind::Float, device));
    let sec = timed(device, seconds, 1, || {
        let _ = net.forward(&x);
    });
    json!({ "seconds_per_batch": sec, "images_per_s": batch as f64 / sec, "batch": batch })
}

/// The distance between two 2048-d statistics written to `dir` (a.npz, b.npz), so that the
/// reference times the same computation on the same input.
fn bench_frechet(dir: &std::path::Path) -> Value {
    let stats: Vec<Stats> = [0.0, 0.05]
        .iter()
        .enumerate()
        .map(|(i, &shift)| {
            let _rng = ddpm_nets::torch_rng_lock();
            tch::manual_seed(i as i64);
            let z = Tensor::randn([4096, 64], (Kind::Double, Device::Cpu))
                .matmul(&(Tensor::randn([64, 2048], (Kind::Double, Device::Cpu)) / 8.0))
                + shift;
            let f = (z + Tensor::randn([4096, 2048], (Kind::Double, Device::Cpu)) * 0.05).relu();
            Stats::from_features(&f).unwrap()
        })
        .collect();
    std::fs::create_dir_all(dir).unwrap();
    stats[0].save(&dir.join("a.npz")).unwrap();
    stats[1].save(&dir.join("b.npz")).unwrap();
    let start = Instant::now();
    let fid = frechet_distance(&stats[0], &stats[1]).unwrap();
    json!({ "seconds": start.elapsed().as_secs_f64(), "fid": fid })
}

/// Images/s of each sampler at its usual step count on a trained digits run.
fn bench_digits(run: &std::path::Path, device: Device) -> Value {
    let Ok(model) =
        RunDir::resolve(&run.display().to_string(), std::path::Path::new(DEFAULT_RUNS_DIR))
            .and_then(|r| load_model(&r, device, true))
    else {
        return Value::Null;
    };
    let process = TensorDiffusion::from_config(&model.diffusion, device).unwrap();
    let n = 64u64;
    let mut out = json!({ "checkpoint_step": model.step, "n": n });
    for kind in SamplerKind::ALL {
        let opts = SamplerOptions::new(kind, model.diffusion.steps);
        let indices: Vec<u64> = (0..n).collect();
        let shape = model.net.sample_shape();
        let sec = timed(device, 0.0, 0, || {
            let mut noise = ImageNoise::new(0, &indices, &shape, device);
            let x_t = noise.draw();
            let net = &model.net;
            let mut f = |x: &Tensor, t: &Tensor| net.forward_t(x, t, None, false);
            let _ =
                samplers::sample(&opts, &process, &mut f, x_t, &mut noise, &mut |_| {}).unwrap();
        });
        out[format!("{kind:?}").to_lowercase()] = json!({ "steps": opts.steps, "evaluations": opts.network_evaluations(), "images_per_s": n as f64 / sec });
    }
    out
}

/// Achieved bf16 matmul TFLOP/s (the practical ceiling), CUDA only.
fn matmul_ceiling(device: Device) -> f64 {
    let n = 8192;
    let a = Tensor::randn([n, n], (Kind::BFloat16, device));
    let b = Tensor::randn([n, n], (Kind::BFloat16, device));
    let sec = timed(device, 2.0, 3, || {
        let _ = a.matmul(&b);
    });
    2.0 * (n as f64).powi(3) / sec / 1e12
}

/// One rank's part of a data-parallel training benchmark (see the module doc).
fn bench_data_parallel(args: &Args) -> Result<(), String> {
    let env = ddpm_dist::DistEnv::from_env().map_err(|e| e.to_string())?;
    let device = env.device(&args.device, "--device")?;
    let dist = ddpm_dist::Dist::init(&env, device, ddpm_dist::DistOptions::default())
        .map_err(|e| e.to_string())?;
    let world = dist.world_size() as i64;
    if args.global_batch % world != 0 || args.steps == 0 {
        return Err(format!(
            "--global-batch {} must be a multiple of the {world} ranks, --steps at least 1",
            args.global_batch
        ));
    }
    let mut s = setup(&UNetConfig::ddpm_cifar10(), device, true, device.is_cuda());
    s.replicate(dist).map_err(|e| e.to_string())?;
    let x0 = Tensor::randn([args.global_batch / world, 3, 32, 32], (Kind::Float, device));
    let mut n = 0;
    let mut run = |s: &mut TrainStep| {
        step(s, &x0, n);
        n += 1;
    };
    for _ in 0..2 {
        run(&mut s);
    }
    s.dist.barrier().map_err(|e| e.to_string())?;
    sync(device);
    let start = Instant::now();
    for _ in 0..args.steps {
        run(&mut s);
    }
    sync(device);
    let sec = start.elapsed().as_secs_f64() / args.steps as f64;
    if s.dist.is_main() {
        let out = json!({
            "bench": "train_data_parallel",
            "model": "CIFAR-10 UNet (35.7M)",
            "world_size": world,
            "threads": args.threads,
            "backend": s.dist.backend().map(|b| b.to_string()),
            "global_batch": args.global_batch,
            "steps": args.steps,
            "seconds_per_step": sec,
            "images_per_s": args.global_batch as f64 / sec,
        });
        println!("{out}");
    }
    Ok(())
}

fn main() {
    let args: Args = ddpm_cli::parse_or_exit();
    tch::set_num_threads(args.threads);
    if args.data_parallel {
        if let Err(e) = bench_data_parallel(&args) {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
        return;
    }
    let device = match ddpm_nets::parse_device(&args.device, "--device") {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    let gpu = device.is_cuda();
    if gpu {
        ddpm_shim::set_cuda_math(true, true).unwrap();
    }
    let _g = tch::no_grad_guard();
    drop(_g);
    let mut out = json!({ "device": args.device, "threads": args.threads, "optimiser_ops": optimiser_ops(device) });
    let precisions: &[&str] = if gpu { &["f32", "bf16"] } else { &["f32"] };
    for prec in precisions {
        let bf16 = *prec == "bf16";
        out[format!("train_small_{prec}")] =
            bench_train(&small(), if gpu { 128 } else { 32 }, device, args.seconds, bf16);
        out[format!("train_cifar10_{prec}")] = bench_train(
            &UNetConfig::ddpm_cifar10(),
            if gpu { 128 } else { 8 },
            device,
            args.seconds,
            bf16,
        );
        out[format!("sample_cifar10_{prec}")] =
            bench_sample(if gpu { 256 } else { 8 }, device, args.seconds, bf16);
    }
    out["inception"] = bench_inception(if gpu { 200 } else { 10 }, device, args.seconds);
    out["frechet"] = bench_frechet(&args.stats_dir);
    if let Some(run) = &args.digits_run {
        out["digits"] = bench_digits(run, device);
    }
    if gpu {
        out["bf16_matmul_tflops"] = json!(matmul_ceiling(device));
    }
    println!("{out}");
}
