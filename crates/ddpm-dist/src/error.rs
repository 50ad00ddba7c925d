//! Errors of ddpm-dist: one line each, carrying the variable, value, rank or collective at fault.

use ddpm_shim::ShimError;
use ddpm_shim::dist::Backend;
use std::time::Duration;

/// How torchrun's variables are set, for [`EnvError::Missing`].
pub const TORCHRUN_HINT: &str = "launch with torchrun, which sets RANK, WORLD_SIZE, LOCAL_RANK, \
                                 LOCAL_WORLD_SIZE, MASTER_ADDR and MASTER_PORT";
/// How Slurm's variables are set, for [`EnvError::Missing`].
pub const SRUN_HINT: &str = "start each task with srun, which sets SLURM_PROCID, SLURM_NTASKS, \
                             SLURM_LOCALID, SLURM_NODEID and SLURM_TASKS_PER_NODE";

/// A launcher environment (torchrun's or Slurm's variables) that cannot describe a process
/// group. Every message names the variable and its value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    #[error("{var} is not set, but {set_var}={set_value} is: {hint}")]
    Missing { var: &'static str, set_var: &'static str, set_value: String, hint: &'static str },
    #[error("SLURM_JOB_ID is not set: this process is not a Slurm task (start it with srun)")]
    NotInSlurm,
    #[error("SLURM_NODEID={node} is past the {nodes} nodes of SLURM_TASKS_PER_NODE={list:?}")]
    NodeNotListed { node: usize, nodes: usize, list: String },
    #[error("{var}={value:?} is not a non-negative integer")]
    NotAnInteger { var: &'static str, value: String },
    #[error("{var}=0 must be at least 1")]
    Zero { var: &'static str },
    #[error("{var}={value} must be less than {bound_var}={bound}")]
    NotLess { var: &'static str, value: usize, bound_var: &'static str, bound: usize },
    #[error("{var}={value} must not exceed {bound_var}={bound}")]
    Exceeds { var: &'static str, value: usize, bound_var: &'static str, bound: usize },
    #[error("MASTER_PORT={value:?} is not a TCP port (1 to 65535)")]
    BadPort { value: String },
    #[error("{var}={value:?} names no host: set it to the address of rank 0's node")]
    NoHost { var: &'static str, value: String },
    #[error("{var}={value:?} is not a Slurm {what}")]
    Slurm { var: &'static str, value: String, what: &'static str },
}

/// What ddpm-dist's operations return.
pub type Result<T, E = DistError> = std::result::Result<T, E>;

/// A failed distributed operation.
#[derive(Debug, thiserror::Error)]
pub enum DistError {
    #[error(transparent)]
    Env(#[from] EnvError),
    /// The TCPStore rendezvous failed: the server could not bind, a client could not connect,
    /// or not every rank joined within the timeout.
    #[error(
        "rank {rank} could not {role} the TCPStore at {addr}:{port} within {timeout:?}: {source}"
    )]
    Rendezvous {
        rank: usize,
        role: &'static str,
        addr: String,
        port: u16,
        timeout: Duration,
        source: ShimError,
    },
    #[error("creating the {backend} process group failed on rank {rank} of {world_size}: {source}")]
    Init { backend: Backend, rank: usize, world_size: usize, source: ShimError },
    #[error("a process group runs on CPU (Gloo) or CUDA (NCCL) devices, not {device}")]
    Device { device: String },
    /// A collective failed; `diagnosis` says which ranks did not answer afterwards.
    #[error("{op} #{seq} failed on rank {rank} of {world_size}: {diagnosis}; {source}")]
    Collective {
        op: &'static str,
        seq: u64,
        rank: usize,
        world_size: usize,
        diagnosis: String,
        source: ShimError,
    },
    /// A collective after a failed one: c10d groups do not recover, the processes must restart.
    #[error(
        "{op} refused: the process group failed earlier ({first}); restart the job (torchrun --max-restarts)"
    )]
    Failed { op: &'static str, first: String },
    /// A parameter had no gradient when the all-reduce ran (DDP's "unused parameter" error).
    #[error(
        "parameter {index} (shape {shape:?}) has no gradient: every parameter must take part in \
         the loss on every rank"
    )]
    MissingGrad { index: usize, shape: Vec<i64> },
    /// The tensors given to a reducer are not the ones it was built for.
    #[error("{what}: expected {expected}, got {got}")]
    Mismatch { what: &'static str, expected: String, got: String },
    #[error("feature statistics need at least 2 samples, got {0}")]
    TooFewSamples(i64),
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    #[error(transparent)]
    Shim(#[from] ShimError),
}
