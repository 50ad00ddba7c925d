//! `ddpm-dist-bench`: the distributed pieces, run under a launcher.
//!
//! ```text
//! torchrun --nproc-per-node 2 --no-python target/release/ddpm-dist-bench allreduce
//! torchrun --nproc-per-node 2 --no-python target/release/ddpm-dist-bench check
//! ```
//!
//! `allreduce` times [`GradReducer::all_reduce_mean`] over the gradients of the CIFAR-10 UNet
//! (35,746,307 f32, DDP's 25 MiB buckets) and prints, on rank 0, one JSON line with seconds per
//! step (median), the algorithm bandwidth (gradient bytes / time), and the c10d all-reduce alone
//! over buffers of the bucket sizes (`c10d_seconds_per_step`, without packing and unpacking). `check` is the launcher check:
//! every rank reads the launcher's variables, joins the group, all-reduces and broadcasts known
//! values, verifies them and prints one JSON line; `--fail-rank R --fail-attempt A` makes rank R
//! exit with status 3 in restart A, to exercise `torchrun --max-restarts`.

use anyhow::{Context, Result, ensure};
use clap::{Parser, Subcommand};
use ddpm_dist::{Dist, DistEnv, DistOptions, GradReducer};
use ddpm_nets::{UNet, UNetConfig};
use std::time::{Duration, Instant};
use tch::{Device, Kind, Tensor};

#[derive(Parser)]
#[command(about = "Benchmark and launcher check of ddpm-dist, run under torchrun")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
    /// Intra-op threads per rank.
    #[arg(long, default_value_t = 1, global = true)]
    threads: i32,
    /// Bound on the rendezvous and each collective, in seconds.
    #[arg(long, default_value_t = 300, global = true)]
    timeout_s: u64,
}

#[derive(Subcommand)]
enum Cmd {
    /// Time the bucketed gradient all-reduce of the CIFAR-10 UNet (35,746,307 f32).
    Allreduce {
        /// Timed steps (after the warm-up).
        #[arg(long, default_value_t = 10)]
        steps: usize,
        #[arg(long, default_value_t = 2)]
        warmup: usize,
        /// Bucket size in MiB (DDP's bucket_cap_mb).
        #[arg(long, default_value_t = 25.0)]
        bucket_mb: f64,
    },
    /// Join the group, check an all-reduce, a broadcast and a barrier, print one JSON line.
    Check {
        /// This rank exits with status 3 after its first collective...
        #[arg(long)]
        fail_rank: Option<usize>,
        /// ...in this restart (TORCHELASTIC_RESTART_COUNT).
        #[arg(long, default_value_t = 0)]
        fail_attempt: u32,
    },
}

fn main() {
    if let Err(e) = run(Cli::parse()) {
        eprintln!("ddpm-dist-bench: {e:#}");
        std::process::exit(2);
    }
}

fn run(cli: Cli) -> Result<()> {
    tch::set_num_threads(cli.threads);
    let env = DistEnv::from_env()?;
    let options = DistOptions { timeout: Duration::from_secs(cli.timeout_s), ..Default::default() };
    let dist = Dist::init(&env, Device::Cpu, options).context("joining the process group")?;
    match cli.cmd {
        Cmd::Allreduce { steps, warmup, bucket_mb } => {
            allreduce(&dist, cli.threads, steps, warmup, bucket_mb)
        }
        Cmd::Check { fail_rank, fail_attempt } => check(&dist, fail_rank, fail_attempt),
    }
}

fn allreduce(dist: &Dist, threads: i32, steps: usize, warmup: usize, bucket_mb: f64) -> Result<()> {
    ensure!(steps > 0, "--steps must be at least 1, got 0");
    let vs = tch::nn::VarStore::new(Device::Cpu);
    let _unet = UNet::new(&vs.root(), &UNetConfig::ddpm_cifar10(), 3)?;
    let params = vs.trainable_variables();
    let numel: i64 = params.iter().map(|p| p.numel() as i64).sum();
    // Gradients rank + 1 everywhere: their mean over ranks is (world + 1) / 2.
    let scale = (dist.rank() + 1) as f64;
    let loss = params.iter().map(|p| p.sum(Kind::Float)).fold(Tensor::from(0f32), |a, b| a + b);
    (loss * scale).backward();
    let t = Instant::now();
    dist.broadcast_parameters(&params)?;
    let broadcast_seconds = t.elapsed().as_secs_f64();
    let reducer = GradReducer::with_bucket_cap(&params, (bucket_mb * 1048576.0) as usize)?;
    for _ in 0..warmup {
        reducer.all_reduce_mean(dist, &params)?;
    }
    dist.barrier()?;
    let mut times = Vec::with_capacity(steps);
    for _ in 0..steps {
        let t = Instant::now();
        reducer.all_reduce_mean(dist, &params)?;
        times.push(t.elapsed().as_secs_f64());
    }
    // The collective alone, over buffers of the same sizes: what pack and unpack add to it.
    let flats: Vec<Tensor> = reducer
        .bucket_numels()
        .iter()
        .map(|&n| Tensor::ones([n], (Kind::Float, Device::Cpu)))
        .collect();
    let mut c10d_times = Vec::with_capacity(steps);
    for _ in 0..steps {
        let t = Instant::now();
        for f in &flats {
            dist.all_reduce_sum(std::slice::from_ref(f))?;
        }
        c10d_times.push(t.elapsed().as_secs_f64());
    }
    c10d_times.sort_by(f64::total_cmp);
    let want = (dist.world_size() + 1) as f64 / 2.0;
    let got = params[0].grad().flatten(0, -1).double_value(&[0]);
    ensure!(got == want, "averaged gradient is {got}, expected {want}");
    let mean = times.iter().sum::<f64>() / steps as f64;
    times.sort_by(f64::total_cmp);
    let median = times[steps / 2];
    let bytes = numel * 4;
    if dist.is_main() {
        let out = serde_json::json!({
            "bench": "allreduce",
            "implementation": "ddpm-dist GradReducer over c10d ProcessGroupGloo",
            "world_size": dist.world_size(),
            "threads": threads,
            "params": numel,
            "bytes": bytes,
            "bucket_cap_mb": bucket_mb,
            "buckets": reducer.num_buckets(),
            "steps": steps,
            "seconds_per_step": median,
            "mean_seconds_per_step": mean,
            "gb_per_s": bytes as f64 / median / 1e9,
            "c10d_seconds_per_step": c10d_times[steps / 2],
            "broadcast_seconds": broadcast_seconds,
        });
        println!("{out}");
    }
    Ok(())
}

fn check(dist: &Dist, fail_rank: Option<usize>, fail_attempt: u32) -> Result<()> {
    let (rank, world) = (dist.rank(), dist.world_size());
    let sum = Tensor::from_slice(&[(rank + 1) as f64]);
    dist.all_reduce_sum(std::slice::from_ref(&sum))?;
    let sum = sum.double_value(&[0]);
    ensure!(sum == (world * (world + 1) / 2) as f64, "all-reduce gave {sum}");
    if fail_rank == Some(rank) && dist.env().restart_count == fail_attempt {
        eprintln!("rank {rank}: exiting with status 3 on purpose (restart {fail_attempt})");
        std::process::exit(3);
    }
    let weights = Tensor::from_slice(&[rank as f32 * 10.0 + 1.0, 2.0]);
    dist.broadcast_parameters(std::slice::from_ref(&weights))?;
    ensure!(Vec::<f32>::try_from(&weights)? == [1.0, 2.0], "broadcast gave {weights:?}");
    dist.barrier()?;
    let env = dist.env();
    let out = serde_json::json!({
        "check": "ok",
        "rank": rank,
        "world_size": world,
        "local_rank": env.local_rank,
        "local_world_size": env.local_world_size,
        "restart_count": env.restart_count,
        "agent_store": env.rendezvous.as_ref().map(|r| r.agent_store),
        "backend": dist.backend().map(|b| b.to_string()),
        "sum": sum,
    });
    println!("{out}");
    Ok(())
}
