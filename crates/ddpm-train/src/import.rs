//! `cargo xtask import --diffusers DIR --name NAME`: a diffusers UNet2DModel folder becomes the
//! run directory `runs/NAME` (config.toml + a step-0 checkpoint whose model and EMA weights are
//! the imported ones, with zero Adam moments so it can also be fine-tuned), usable anywhere as
//! `--checkpoint NAME`. The schedule comes from the folder's scheduler config when present.

use crate::config::RunConfig;
use crate::error::{Result, TrainError, io};
use ddpm_nets::diffusers::{DiffusersFolder, diffusion_config, load_weights, unet_config};
use ddpm_nets::{ModelConfig, UNet};
use ddpm_run::{Checkpoint, CheckpointMeta, RunDir};
use std::path::Path;

#[derive(Debug)]
pub struct Imported {
    pub run: RunDir,
    pub parameters: usize,
}

pub fn import_diffusers(dir: &Path, name: &str, runs_dir: &Path) -> Result<Imported> {
    let folder = DiffusersFolder::locate(dir)?;
    let unet = unet_config(&folder.config)?;
    let diffusion = match &folder.scheduler {
        Some(p) => diffusion_config(p)?,
        None => ddpm_core::DiffusionConfig::default(),
    };
    let out = unet.out_channels.unwrap_or(unet.in_channels);
    let expected = unet.in_channels * if diffusion.model_var.is_learned() { 2 } else { 1 };
    if out != expected {
        return Err(TrainError::Mismatch(format!(
            "{}: out_channels = {out} does not fit variance_type {:?} (expected {expected})",
            folder.config.display(),
            diffusion.model_var
        )));
    }
    let mut config = RunConfig {
        name: name.into(),
        model: ModelConfig::Unet(unet.clone()),
        diffusion,
        ..RunConfig::default()
    };
    config.train.sample_steps = config.train.sample_steps.min(config.diffusion.steps);
    config.validate()?;
    let run = RunDir::new(runs_dir.join(name));
    if run.config_path().exists() {
        return Err(TrainError::Mismatch(format!(
            "{} already exists: choose another --name",
            run.root.display()
        )));
    }
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let _net = UNet::new(&vs.root(), &unet, out)?;
    load_weights(&vs, &folder.weights)?;
    std::fs::create_dir_all(run.checkpoints_dir()).map_err(io(run.checkpoints_dir()))?;
    let meta = CheckpointMeta::imported(format!("diffusers {}", dir.display()));
    Checkpoint::write(&run.checkpoint_path(0), &vs, &vs, None, &meta)?;
    // The config last: a run directory with a config is a usable run.
    run.write_config(&config.to_toml())?;
    let parameters = vs.trainable_variables().iter().map(|t| t.numel()).sum();
    Ok(Imported { run, parameters })
}
