//! A trained network ready to sample from or evaluate.

use crate::error::{Result, RunError};
use crate::run_dir::RunDir;
use ddpm_core::DiffusionConfig;
use ddpm_nets::{Denoiser, ModelConfig};
use std::path::{Path, PathBuf};
use tch::Device;
use tch::nn::VarStore;

/// A run's network with its weights loaded, and what it was trained with.
#[derive(Debug)]
pub struct LoadedModel {
    pub net: Denoiser,
    pub vs: VarStore,
    pub model: ModelConfig,
    pub diffusion: DiffusionConfig,
    pub step: u64,
    /// Whether these are the EMA weights.
    pub ema: bool,
    pub checkpoint: PathBuf,
}

/// Builds the run's network on `device` and loads the EMA (or raw) weights of its latest good
/// (or pinned) checkpoint.
pub fn load_model(run: &RunDir, device: Device, ema: bool) -> Result<LoadedModel> {
    let model: ModelConfig = run.section("model")?;
    let diffusion: DiffusionConfig = run.section("diffusion")?;
    diffusion.validate().map_err(|e| RunError::Invalid {
        path: run.config_path(),
        reason: format!("[diffusion] {e}"),
    })?;
    let mut skipped = Vec::new();
    let Some(file) = run.latest_checkpoint(&mut skipped) else {
        return Err(match skipped.into_iter().next() {
            Some(e) => e,
            None => RunError::NoCheckpoint { path: run.checkpoints_dir() },
        });
    };
    let vs = VarStore::new(device);
    let net = Denoiser::new(&vs.root(), &model, diffusion.model_var.is_learned())?;
    file.load_weights(&vs, ema)?;
    Ok(LoadedModel {
        net,
        vs,
        model,
        diffusion,
        step: file.step(),
        ema,
        checkpoint: file.path().clone(),
    })
}

/// `--checkpoint NAME` (a run under `runs_dir`, a run directory or a checkpoint file) loaded on
/// `device`: the run and its network with EMA (or, with `raw`, the trained) weights.
pub fn open_model(
    checkpoint: &str,
    runs_dir: &Path,
    device: Device,
    raw: bool,
) -> Result<(RunDir, LoadedModel)> {
    let run = RunDir::resolve(checkpoint, runs_dir)?;
    let model = load_model(&run, device, !raw)?;
    Ok((run, model))
}
