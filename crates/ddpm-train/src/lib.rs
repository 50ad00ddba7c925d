//! # ddpm-train
//!
//! The training loop of Ho et al. 2020 ("Denoising Diffusion Probabilistic Models",
//! arXiv:2006.11239), Algorithm 1, with the paper's recipe: Adam, linear warm-up, global-norm
//! clipping, EMA every step; every loss, parameterisation and variance type of `ddpm-core`;
//! class-conditional training with label dropout for classifier-free guidance; bf16 autocast
//! on CUDA; atomic, exactly resumable checkpoints; SIGINT/SIGTERM handling; and what a person
//! reads of a run: `metrics.jsonl`, `eval.jsonl`, TensorBoard event files under `tb/`, and the
//! self-contained `report.html`.

pub mod config;
pub mod error;
pub mod eval_log;
pub mod import;
pub mod metrics;
pub mod optim;
pub mod report;
pub mod tensorboard;
pub mod trainer;

pub use config::{LoopConfig, OptimConfig, Precision, TrainConfig};
pub use error::{Result, TrainError};
pub use eval_log::{EvalLine, EvalLog};
pub use report::{ReportError, write_report};
pub use tensorboard::{TbError, TbWriter};
pub use trainer::{Outcome, Trainer};

/// "auto" (CUDA when available), "cpu", "cuda" or "cuda:N".
pub fn parse_device(s: &str) -> std::result::Result<tch::Device, String> {
    match s {
        "auto" => Ok(tch::Device::cuda_if_available()),
        "cpu" => Ok(tch::Device::Cpu),
        "cuda" => Ok(tch::Device::Cuda(0)),
        _ => s
            .strip_prefix("cuda:")
            .and_then(|n| n.parse().ok())
            .map(tch::Device::Cuda)
            .ok_or_else(|| format!("device must be auto, cpu, cuda or cuda:N, got {s:?}")),
    }
}
