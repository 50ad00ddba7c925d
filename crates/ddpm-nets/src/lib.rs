//! # ddpm-nets
//!
//! Denoising networks over libtorch: the DDPM UNet of Ho et al. 2020 (arXiv:2006.11239,
//! Appendix B) with diffusers-compatible parameter names, a small MLP for 2-D data, the
//! parameter EMA, and safetensors I/O (never pickle).

pub mod config;
pub mod denoiser;
pub mod device;
pub mod diffusers;
pub mod ema;
pub mod embedding;
pub mod error;
pub mod init;
pub mod mlp;
pub mod placement;
pub mod tensorfile;
pub mod unet;

pub use config::{MlpConfig, ModelConfig, UNetConfig};
pub use denoiser::Denoiser;
pub use device::parse_device;
pub use ema::Ema;
pub use error::{NetError, Result};
pub use unet::UNet;

/// libtorch's default random generators are process-wide. Code that seeds them and then draws
/// (model initialisation, a training step's noise and dropout, previews) holds this lock, so
/// that concurrent callers in one process — parallel tests, above all — cannot interleave
/// their draws and break exact reproducibility.
pub fn torch_rng_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}
