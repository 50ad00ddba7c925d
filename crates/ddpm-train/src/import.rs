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
    DiffusersFolder, SchedulerConfig, load_weights, scheduler_config, unet_config,
};
use ddpm_nets::{ModelConfig, UNet};
use ddpm_run::{Checkpoint, CheckpointMeta, RunDir};
use ddpm_sample::samplers::{SigmaSpacing, Skip, TimeSteps};
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
    // diffusers' sampling defaults where the folder has no scheduler config.
    let (scheduler, scheduler_path) = match &folder.scheduler {
        Some(p) => (scheduler_config(p)?, p.display().to_string()),
        None => (SchedulerConfig::default(), folder.config.display().to_string()),
    };
    let in_scheduler = |reason: String| TrainError::Mismatch(format!("{scheduler_path}: {reason}"));
    // Without a scheduler config the process is the paper's (our default), as it always was.
    let diffusion = match &folder.scheduler {
        Some(_) => ddpm_core::DiffusionConfig::try_from(&scheduler).map_err(in_scheduler)?,
        None => ddpm_core::DiffusionConfig::default(),
    };
    let sampling = sampling_config(&scheduler).map_err(in_scheduler)?;
    if sampling.steps_offset >= diffusion.steps {
        return Err(in_scheduler(format!(
            "steps_offset = {} must be below num_train_timesteps = {}",
            sampling.steps_offset, diffusion.steps
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
        sampling,
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
/// convention (or the one ddpm-rs's export recorded), and the scheduler config's clipping,
/// final alpha, step offset and DDIM/DDPM `timestep_spacing` (or the spacing ddpm-rs's export
/// recorded), the noise levels (`use_karras_sigmas`, `use_exponential_sigmas`, a multistep
/// scheduler's linspace) and UniPC's `solver_order`. `clip_sample` clips in DDPM and DDIM only
/// (as in diffusers, whose other schedulers clip only with `thresholding`); `thresholding` at
/// 1.0 clips in all. A multistep scheduler variant we do not have (`algorithm_type`,
/// `solver_type`, `lower_order_final = false`, `predict_x0 = false`) is an error naming the key. What we do not implement is an error naming the key: a
/// clip range other than 1 (our data lie in [-1, 1]), a spacing diffusers does not have either,
/// and dynamic thresholding with `sample_max_value` above 1.
pub fn sampling_config(s: &SchedulerConfig) -> std::result::Result<SamplingConfig, String> {
    if s.thresholding {
        if s.sample_max_value != 1.0 {
            return Err(format!(
                "thresholding with sample_max_value = {} (dynamic thresholding) is not \
                 supported; only sample_max_value = 1.0, which is clipping to [-1, 1]",
                s.sample_max_value
            ));
        }
    } else if s.clip_sample && s.clip_sample_range != 1.0 {
        return Err(format!(
            "clip_sample_range = {} is not supported (only 1.0: data in [-1, 1])",
            s.clip_sample_range
        ));
    }
    let named = |key: &str, name: &str| -> std::result::Result<Skip, String> {
        serde_json::from_value(serde_json::Value::String(name.to_owned()))
            .map_err(|_| format!("{key} = {name:?} is not a DDIM spacing"))
    };
    let timestep_spacing = match (&s.ddpm_rs_timestep_spacing, s.timestep_spacing.as_str()) {
        (Some(ours), _) => named("_ddpm_rs_timestep_spacing", ours)?,
        (None, name @ ("leading" | "trailing" | "linspace")) => named("timestep_spacing", name)?,
        (None, other) => {
            return Err(format!(
                "timestep_spacing = {other:?} is not supported (leading, trailing or linspace)"
            ));
        }
    };
    let multistep =
        matches!(s.class_name.as_str(), "DPMSolverMultistepScheduler" | "UniPCMultistepScheduler");
    let unsupported = |key: &str, value: &str, ours: &str| {
        Err(format!("{key} = {value:?} is not supported by {} (only {ours})", s.class_name))
    };
    match (s.class_name.as_str(), s.algorithm_type.as_deref(), s.solver_type.as_deref()) {
        ("DPMSolverMultistepScheduler", Some(a), _) if !a.ends_with("dpmsolver++") => {
            return unsupported("algorithm_type", a, "dpmsolver++ and sde-dpmsolver++");
        }
        ("DPMSolverMultistepScheduler", _, Some(t)) if t != "midpoint" => {
            return unsupported("solver_type", t, "midpoint");
        }
        ("UniPCMultistepScheduler", _, Some(t)) if t != "bh2" => {
            return unsupported("solver_type", t, "bh2");
        }
        _ => {}
    }
    if multistep && s.lower_order_final == Some(false) {
        return unsupported("lower_order_final", "false", "true");
    }
    if s.predict_x0 == Some(false) {
        return unsupported("predict_x0", "false", "true");
    }
    let (time_steps, sigmas) = match (s.use_karras_sigmas, s.use_exponential_sigmas) {
        (true, _) => (Some(TimeSteps::Karras), Some(SigmaSpacing::Karras)),
        (false, true) => (Some(TimeSteps::LogSnr), Some(SigmaSpacing::Exponential)),
        // The multistep schedulers' own default placement.
        _ if multistep && s.timestep_spacing == "linspace" => (Some(TimeSteps::Uniform), None),
        _ => (None, None),
    };
    let order = match s.class_name.as_str() {
        "UniPCMultistepScheduler" => Some(s.solver_order.unwrap_or(2)),
        _ => None,
    };
    let clip_convention = match &s.clip_convention {
        None => ClipConvention::Diffusers,
        Some(name) => serde_json::from_value(serde_json::Value::String(name.clone()))
            .map_err(|_| format!("_ddpm_rs_clip_convention = {name:?} is not a clip convention"))?,
    };
    Ok(SamplingConfig {
        // clip_sample clips in DDPMScheduler and DDIMScheduler; thresholding at 1.0 clips in
        // every scheduler that has it.
        clip: match (s.thresholding, s.clip_sample) {
            (true, _) => Some(true),
            (false, true) => None,
            (false, false) => Some(false),
        },
        clip_solvers: (!s.thresholding && s.clip_sample).then_some(false),
        time_steps,
        sigmas,
        order,
        clip_convention,
        final_abar_one: s.set_alpha_to_one,
        steps_offset: s.steps_offset,
        timestep_spacing,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> std::result::Result<SamplingConfig, String> {
        let dir = ddpm_testkit::temp_dir("sched");
        let p = dir.join("scheduler_config.json");
        std::fs::write(&p, text).unwrap();
        match scheduler_config(&p) {
            Ok(s) => sampling_config(&s).map_err(|e| format!("{}: {e}", p.display())),
            Err(e) => Err(e.to_string()),
        }
    }

    #[test]
    fn scheduler_settings_become_the_runs_sampling_defaults() {
        let diffusers_default = SamplingConfig {
            clip: None,
            clip_solvers: Some(false),
            clip_convention: ClipConvention::Diffusers,
            final_abar_one: true,
            steps_offset: 0,
            timestep_spacing: Skip::Leading,
            ..Default::default()
        };
        assert_eq!(read("{}").unwrap(), diffusers_default);
        let c = read(
            r#"{"clip_sample": false, "set_alpha_to_one": false, "steps_offset": 1,
                "timestep_spacing": "leading"}"#,
        )
        .unwrap();
        assert_eq!((c.clip, c.final_abar_one, c.steps_offset), (Some(false), false, 1));
        let c = read(r#"{"thresholding": true, "sample_max_value": 1.0, "clip_sample": false}"#);
        assert_eq!(c.unwrap().clip, Some(true));
        // A range is irrelevant when nothing is clipped.
        assert!(read(r#"{"clip_sample": false, "clip_sample_range": 2.0}"#).is_ok());
        // The convention our export records comes back.
        let c = read(r#"{"_ddpm_rs_clip_convention": "improved-diffusion"}"#).unwrap();
        assert_eq!(c.clip_convention, ClipConvention::ImprovedDiffusion);
        // diffusers' three spacings, and ours under ddpm-rs's key.
        for (text, skip) in [
            (r#"{"timestep_spacing": "trailing"}"#, Skip::Trailing),
            (r#"{"timestep_spacing": "linspace"}"#, Skip::Linspace),
            (
                r#"{"timestep_spacing": "leading", "_ddpm_rs_timestep_spacing": "uniform"}"#,
                Skip::Uniform,
            ),
        ] {
            assert_eq!(read(text).unwrap().timestep_spacing, skip, "{text}");
        }
        // The multistep and Euler schedulers' keys: their noise levels and UniPC's order.
        let c = read(
            r#"{"_class_name": "UniPCMultistepScheduler", "solver_order": 3, "solver_type": "bh2",
                "timestep_spacing": "linspace"}"#,
        )
        .unwrap();
        assert_eq!((c.order, c.time_steps, c.sigmas), (Some(3), Some(TimeSteps::Uniform), None));
        let c = read(
            r#"{"_class_name": "DPMSolverMultistepScheduler", "use_karras_sigmas": true,
                "algorithm_type": "sde-dpmsolver++", "timestep_spacing": "linspace"}"#,
        )
        .unwrap();
        assert_eq!(
            (c.order, c.time_steps, c.sigmas),
            (None, Some(TimeSteps::Karras), Some(SigmaSpacing::Karras))
        );
        let c =
            read(r#"{"_class_name": "EulerDiscreteScheduler", "use_exponential_sigmas": true}"#);
        assert_eq!(c.unwrap().sigmas, Some(SigmaSpacing::Exponential));
        // clip_sample without thresholding clips in DDPM and DDIM only, as in diffusers.
        let c = read(r#"{"clip_sample": true}"#).unwrap();
        assert_eq!((c.clip, c.clip_solvers), (None, Some(false)));
    }

    #[test]
    fn multistep_variants_we_do_not_have_are_one_line_errors_naming_the_key() {
        for (text, needle) in [
            (
                r#"{"_class_name": "DPMSolverMultistepScheduler", "algorithm_type": "dpmsolver"}"#,
                "algorithm_type = \"dpmsolver\"",
            ),
            (
                r#"{"_class_name": "DPMSolverMultistepScheduler", "solver_type": "heun"}"#,
                "solver_type = \"heun\"",
            ),
            (
                r#"{"_class_name": "UniPCMultistepScheduler", "solver_type": "bh1"}"#,
                "solver_type = \"bh1\"",
            ),
            (
                r#"{"_class_name": "UniPCMultistepScheduler", "lower_order_final": false}"#,
                "lower_order_final",
            ),
            (r#"{"_class_name": "UniPCMultistepScheduler", "predict_x0": false}"#, "predict_x0"),
        ] {
            let e = read(text).unwrap_err();
            assert!(e.contains("scheduler_config.json") && e.contains(needle), "{text}: {e}");
            assert!(!e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn unsupported_or_mistyped_scheduler_keys_are_one_line_errors_naming_them() {
        for (text, needle) in [
            (r#"{"clip_sample_range": 1.5}"#, "clip_sample_range = 1.5"),
            (r#"{"timestep_spacing": "karras"}"#, "timestep_spacing = \"karras\""),
            (r#"{"_ddpm_rs_timestep_spacing": "cubic"}"#, "_ddpm_rs_timestep_spacing"),
            (r#"{"thresholding": true, "sample_max_value": 1.5}"#, "sample_max_value = 1.5"),
            (r#"{"steps_offset": -1}"#, "steps_offset"),
            (r#"{"clip_sample": "yes"}"#, "clip_sample"),
            (r#"{"_ddpm_rs_clip_convention": "mine"}"#, "_ddpm_rs_clip_convention"),
        ] {
            let e = read(text).unwrap_err();
            assert!(e.contains("scheduler_config.json") && e.contains(needle), "{text}: {e}");
            assert_eq!(e.lines().count(), 1, "{e}");
        }
    }
}
