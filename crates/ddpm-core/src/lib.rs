//! # ddpm-core
//!
//! Noise schedules and all the Gaussian math of denoising diffusion probabilistic models
//! (Ho, Jain & Abbeel 2020, "Denoising Diffusion Probabilistic Models", arXiv:2006.11239),
//! with the extensions of improved DDPM (Nichol & Dhariwal 2021, arXiv:2102.09672).
//!
//! Everything here is f64 and needs no libtorch: [`GaussianDiffusion`] owns the schedule
//! arrays under improved-diffusion's names and offers the element-wise forward process,
//! posterior, reverse step and variational-bound terms. With the `tch` feature,
//! [`tensor`] gives the same math on libtorch tensors for training and sampling.

pub mod config;
pub mod diffusion;
pub mod error;
pub mod gaussian;
pub mod respace;
pub mod rng;
pub mod schedule;
#[cfg(feature = "tch")]
pub mod tensor;
pub mod timestep_sampler;

pub use config::{DiffusionConfig, ScheduleName};
pub use diffusion::{GaussianDiffusion, LossKind, ModelMean, ModelVar, PMeanVariance};
pub use error::{CoreError, Result};
pub use respace::space_timesteps;
pub use schedule::BetaSchedule;
pub use timestep_sampler::{TimestepSampler, TimestepSamplerKind};
