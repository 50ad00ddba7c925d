//! # ddpm-sample
//!
//! Sampling from trained DDPMs: ancestral DDPM (Ho et al. 2020, Algorithm 2), DDIM,
//! DPM-Solver++(2M) and its 2M and 3M SDE variants, UniPC, and Heun, Euler and Euler-ancestral
//! solvers of the probability-flow ODE; classifier-free guidance;
//! per-image noise streams so that sharded jobs reproduce single jobs; streamed, resumable
//! output (`samples.npz`, `grid.png`, PNGs); and the paper's figures.

pub mod batch;
pub mod config;
pub mod error;
pub mod figure_request;
pub mod figures;
pub mod graph;
pub mod guidance;
pub mod job;
pub mod noise;
pub mod request;
pub mod samplers;

pub use config::SamplingConfig;
pub use error::{Result, SampleError};
pub use request::{SampleRequest, SamplerArgs};
pub use samplers::{ClipConvention, SamplerKind, SamplerOptions, Skip, Solver, TimeSteps};
