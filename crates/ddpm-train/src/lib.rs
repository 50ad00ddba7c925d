//! # ddpm-train
//!
//! The training loop of Ho et al. 2020 ("Denoising Diffusion Probabilistic Models",
//! arXiv:2006.11239), Algorithm 1, with the paper's recipe: Adam, linear warm-up, global-norm
//! clipping, EMA every step; every loss, parameterisation and variance type of `ddpm-core`;
//! class-conditional training with label dropout for classifier-free guidance; bf16 autocast
//! on CUDA; atomic, exactly resumable checkpoints; SIGINT/SIGTERM handling.

pub mod config;
pub mod error;
pub mod import;
pub mod launch;
pub mod metrics;
pub mod optim;
pub mod preview;
pub mod progress;
pub mod step;
pub mod trainer;

pub use config::{OptimConfig, Precision, RunConfig, TrainConfig};
pub use error::{Result, TrainError};
pub use progress::{LogProgress, Progress};
pub use step::{StepInput, StepOutput, TrainStep};
pub use trainer::{Outcome, Trainer};
