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
pub mod evaluate;
pub mod export;
pub mod import;
pub mod importance;
pub mod intervals;
pub mod launch;
pub mod metrics;
pub mod optim;
pub mod preview;
pub mod progress;
pub mod report;
pub mod step;
pub mod streams;
pub mod tensorboard;
pub mod trainer;

pub use config::{LrSchedule, OptimConfig, Precision, RunConfig, TrainConfig};
pub use error::{Result, TrainError};
pub use eval_log::{EvalLine, EvalLog};
pub use progress::{LogProgress, Progress};
pub use report::{ReportError, write_report};
pub use step::{StepInput, StepOutput, TrainStep};
pub use tensorboard::{TbError, TbWriter};
pub use trainer::{Outcome, Trainer};
