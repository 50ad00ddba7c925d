//! # ddpm-core
//!
//! Noise schedules and all the Gaussian math of denoising diffusion probabilistic models
//! (Ho, Jain & Abbeel 2020, "Denoising Diffusion Probabilistic Models", arXiv:2006.11239),
//! with the extensions of improved DDPM (Nichol & Dhariwal 2021, arXiv:2102.09672).
//!
//! Everything here is f64 and needs no libtorch: [`GaussianDiffusion`] owns the schedule
//! arrays under improved-diffusion's names and offers the element-wise forward process,
//! posterior, reverse step and variational-bound terms. With the `tch` feature,
//! the `tensor` module gives the same math on libtorch tensors for training and sampling.
//!
//! ```toml
//! [dependencies]
//! ddpm-core = { version = "0.1", default-features = false }
//! ```
//!
//! # Example
//!
//! The paper's schedule (linear betas 1e-4 to 0.02, T = 1000), a draw from q(x_t | x_0)
//! (eq. 4), the posterior q(x_{t-1} | x_t, x_0) (eqs. 6-7) and a 50-step DDIM respacing:
//!
//! ```
//! use ddpm_core::{BetaSchedule, GaussianDiffusion};
//!
//! # fn main() -> ddpm_core::Result<()> {
//! let betas = BetaSchedule::paper_linear().betas(1000)?;
//! let process = GaussianDiffusion::new(betas)?;
//! // abar_T, the signal left at the last step (Ho et al. 2020, Sec. 4).
//! assert!((process.alphas_cumprod[999] - 4.0358e-5).abs() < 1e-8);
//!
//! // q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I), eq. (4).
//! let (x0, eps, t) = (0.5, -1.2, 400);
//! let x_t = process.q_sample(x0, t, eps);
//! let (mean, var, _) = process.q_mean_variance(x0, t);
//! assert!((x_t - (mean + var.sqrt() * eps)).abs() < 1e-12);
//! // Solving eq. (4) for x_0 gives it back.
//! assert!((process.x0_from_eps(x_t, t, eps) - x0).abs() < 1e-12);
//!
//! // The posterior's variance beta~_t = beta_t (1 - abar_{t-1}) / (1 - abar_t), eq. (7).
//! let (_, beta_tilde_1, _) = process.q_posterior_mean_variance(x0, x_t, 1);
//! assert!((beta_tilde_1 - 5.4532e-5).abs() < 1e-8);
//!
//! // 50 DDIM steps (stride 20); the respaced abar equals the original on the kept steps,
//! // and the network is still told the original step.
//! let ddim = process.respaced_str("ddim50")?;
//! assert_eq!(ddim.num_timesteps, 50);
//! assert_eq!(ddim.timestep_map[49], 980);
//! assert!((ddim.alphas_cumprod[49] - process.alphas_cumprod[980]).abs() < 1e-15);
//! # Ok(())
//! # }
//! ```

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
