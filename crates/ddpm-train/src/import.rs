//! `cargo xtask import --diffusers DIR --name NAME`: a diffusers UNet2DModel folder becomes the
//! run directory `runs/NAME` (config.toml + a step-0 checkpoint whose model and EMA weights are
//! the imported ones, with zero Adam moments so it can also be fine-tuned), usable anywhere as
//! `--checkpoint NAME`. The schedule comes from the folder's scheduler config when present, and
//! so do the run's sampling defaults (`[sampling]`): diffusers' clipping convention for DDIM,
//! its `clip_sample`/`thresholding`, `set_alpha_to_one` and `steps_offset`, so that the run
//! samples as diffusers' pipelines sample it unless the command line says otherwise.

use crate::config::RunConfig;
use crate::error::{Result, TrainError, io};
use ddpm_nets::diffusers::{
    DiffusersFolder, SchedulerSampling, diffusion_config, load_weights, scheduler_sampling,
    unet_config,
};
use ddpm_nets::{ModelConfig, UNet};
use ddpm_run::{Checkpoint, CheckpointMeta, RunDir};
use ddpm_sample::{ClipConvention, SamplingConfig};
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
    let sampling = match &folder.scheduler {
        Some(p) => scheduler_sampling(p)?,
        None => SchedulerSampling::default(),
    };
    if sampling.steps_offset >= diffusion.steps {
        return Err(TrainError::Mismatch(format!(
            "{}: steps_offset = {} must be below num_train_timesteps = {}",
            folder.scheduler.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
            sampling.steps_offset,
            diffusion.steps
        )));
    }
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
        sampling: sampling_config(&sampling),
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

/// The `[sampling]` defaults of a run imported from diffusers: diffusers' DDIM clipping
/// convention, and its scheduler config's clipping, final alpha and step offset. `clip_sample`
/// clips in DDPM and DDIM only (each sampler's own default); thresholding at 1.0 clips in all.
pub fn sampling_config(s: &SchedulerSampling) -> SamplingConfig {
    SamplingConfig {
        clip: match (s.threshold_clip, s.clip_sample) {
            (true, _) => Some(true),
            (false, true) => None,
            (false, false) => Some(false),
        },
        clip_convention: ClipConvention::Diffusers,
        final_abar_one: s.set_alpha_to_one,
        steps_offset: s.steps_offset,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheduler_settings_become_the_runs_sampling_defaults() {
        let s = SchedulerSampling::default();
        assert_eq!(
            sampling_config(&s),
            SamplingConfig {
                clip: None,
                clip_convention: ClipConvention::Diffusers,
                final_abar_one: true,
                steps_offset: 0
            }
        );
        let s = SchedulerSampling {
            clip_sample: false,
            threshold_clip: false,
            set_alpha_to_one: false,
            steps_offset: 1,
        };
        let c = sampling_config(&s);
        assert_eq!((c.clip, c.final_abar_one, c.steps_offset), (Some(false), false, 1));
        let s = SchedulerSampling { clip_sample: false, threshold_clip: true, ..s };
        assert_eq!(sampling_config(&s).clip, Some(true));
    }
}
