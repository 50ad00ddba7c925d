//! # ddpm-dist
//!
//! Data-parallel training and sharded evaluation over libtorch's own distributed engine, c10d:
//! the engine behind `torch.distributed` and DistributedDataParallel, launched the way PyTorch
//! users launch it, with `torchrun --nproc-per-node N --no-python <binary> ...`.
//!
//! - [`DistEnv`]: the launcher's variables (torchrun's RANK, WORLD_SIZE, LOCAL_RANK,
//!   LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT, TORCHELASTIC_*; or Slurm's), checked.
//! - [`Dist`]: the process group (TCPStore rendezvous, Gloo on CPU, NCCL on CUDA) with
//!   parameter broadcast, metric all-reduce and barrier; every collective is bounded by a
//!   timeout and a dead peer is an error naming the rank, never a hang.
//! - [`GradReducer`]: DDP's bucketed gradient averaging (25 MiB flat buckets, one all-reduce
//!   each).
//! - [`FeatureMoments`]: f64 feature sums whose all-reduce gives the single-process FID
//!   statistics from rank-sharded images.
//!
//! The recipe a data-parallel trainer follows (what DDP does for a PyTorch script):
//! 1. `let env = DistEnv::from_env()?;` pick the device (`env.cuda_device()` on GPUs, else
//!    CPU) and `let dist = Dist::init(&env, device, DistOptions::default())?;`
//! 2. build the model with the same seed everywhere, then `dist.broadcast_parameters(&params)`
//!    so every rank starts from rank 0's weights; build `GradReducer::new(&params)`.
//! 3. each step, on this rank's shard of the global batch: forward, backward,
//!    `reducer.all_reduce_mean(&dist, &params)`, then clip and step the optimiser exactly as a
//!    single process would (every rank then holds the same weights).
//! 4. at logging intervals only, `dist.all_reduce_sum(&[loss_sum, count])`; rank 0
//!    (`dist.is_main()`) alone writes checkpoints, samples and metrics, after `dist.barrier()`.

mod bucket_plan;
mod buckets;
mod env;
mod error;
mod group;
mod moments;

pub use bucket_plan::DEFAULT_BUCKET_CAP_BYTES;
pub use buckets::GradReducer;
pub use ddpm_shim::dist::{Backend, GlooDevice};
pub use env::{DEFAULT_MASTER_PORT, DistEnv, Rendezvous};
pub use error::{DistError, EnvError, Result, SRUN_HINT, TORCHRUN_HINT};
pub use group::{Dist, DistOptions, backend_for, nccl_error_mode, shard};
pub use moments::FeatureMoments;
