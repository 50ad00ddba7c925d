//! `cargo xtask export --checkpoint NAME --diffusers OUT [--raw] [--step N]`: a run becomes a
//! diffusers `DDPMPipeline` folder that `DDPMPipeline.from_pretrained(OUT)` loads with no code
//! of ours:
//!
//! ```text
//! OUT/model_index.json                          DDPMPipeline = UNet2DModel + DDPMScheduler
//! OUT/unet/config.json                          the UNet (ddpm_nets::diffusers::UNet2DModelConfig)
//! OUT/unet/diffusion_pytorch_model.safetensors  EMA weights (the trained ones with --raw)
//! OUT/scheduler/scheduler_config.json           betas, T, prediction, variance, clipping
//! OUT/README.md                                 a model card: data, steps, what was measured
//! ```
//!
//! The configs go through the same typed structs as the import, and the run's `[sampling]`
//! defaults are written as the scheduler keys the import reads back, so `import(export(run))`
//! is the run's weights bit for bit with the same `[sampling]`. What diffusers cannot express
//! is refused by name before anything is written. The folder is assembled beside OUT and
//! renamed into place: a failed export leaves nothing at OUT, and an existing OUT is never
//! touched.

use crate::config::RunConfig;
use crate::error::{Result, TrainError, io};
use crate::eval_log::{EvalLine, read_evals};
use ddpm_nets::ModelConfig;
use ddpm_nets::diffusers::{DIFFUSERS_VERSION, SchedulerConfig, UNet2DModelConfig, write_weights};
use ddpm_run::{LoadedModel, RunDir, load_model};
use ddpm_sample::SamplingConfig;
use std::path::{Path, PathBuf};

/// What an export wrote.
#[derive(Debug)]
pub struct Exported {
    pub out: PathBuf,
    /// The checkpoint's step.
    pub step: u64,
    /// EMA weights (false: the trained weights, `--raw`).
    pub ema: bool,
    pub parameters: usize,
}

/// The scheduler keys for the run's `[sampling]` defaults (the inverse of
/// `import::sampling_config`): clipping for DDPM and DDIM only (`clip_sample`, each sampler's
/// default) or for every scheduler (`thresholding` at 1.0), the final alpha, the step offset,
/// DDIM's timestep spacing, and DDIM's clip convention under ddpm-rs's own key.
pub fn scheduler_sampling_keys(s: &SamplingConfig, sched: &mut SchedulerConfig) {
    sched.clip_sample = s.clip != Some(false);
    sched.thresholding = s.clip == Some(true);
    sched.sample_max_value = 1.0;
    sched.clip_sample_range = 1.0;
    sched.set_alpha_to_one = s.final_abar_one;
    sched.steps_offset = s.steps_offset;
    // Our own spacings (improved-diffusion's uniform stride, quadratic) have no diffusers name:
    // diffusers gets "leading" (the same steps where S divides T), and the import ours.
    let spacing = s.timestep_spacing;
    sched.timestep_spacing = spacing.diffusers_spacing().unwrap_or("leading").into();
    sched.ddpm_rs_timestep_spacing =
        spacing.diffusers_spacing().is_none().then(|| spacing.name().into());
    sched.clip_convention = Some(s.clip_convention.name().into());
}

fn unsupported(run: &RunDir, reason: String) -> TrainError {
    TrainError::Unsupported(format!("{}: {reason}", run.config_path().display()))
}

fn to_json<T: serde::Serialize>(v: &T) -> Vec<u8> {
    let mut text = serde_json::to_vec_pretty(v).expect("configs serialise");
    text.push(b'\n');
    text
}

pub fn export_diffusers(
    checkpoint: &str,
    runs_dir: &Path,
    out: &Path,
    raw: bool,
    step: Option<u64>,
) -> Result<Exported> {
    if out.exists() {
        return Err(TrainError::Mismatch(format!(
            "{} exists: an export writes a new folder only; choose another --diffusers path",
            out.display()
        )));
    }
    let mut run = RunDir::resolve(checkpoint, runs_dir)?;
    if let Some(step) = step {
        let path = run.checkpoint_path(step);
        if !path.is_file() {
            let steps: Vec<String> =
                run.list_checkpoints().iter().map(|(s, _)| s.to_string()).collect();
            return Err(TrainError::Mismatch(format!(
                "{}: no checkpoint of step {step} (the run has steps {})",
                path.display(),
                if steps.is_empty() { "none".to_owned() } else { steps.join(", ") }
            )));
        }
        run.pinned = Some(path);
    }
    let config = RunConfig::load(&run.config_path())?;
    // Everything that can be refused is checked before the weights are read.
    let ModelConfig::Unet(unet) = &config.model else {
        return Err(unsupported(
            &run,
            "the model is an MLP; only UNet models export to diffusers' UNet2DModel".into(),
        ));
    };
    let mut scheduler =
        SchedulerConfig::from_diffusion(&config.diffusion).map_err(|e| unsupported(&run, e))?;
    scheduler_sampling_keys(&config.sampling, &mut scheduler);
    let out_channels = unet.out_channels.unwrap_or(unet.in_channels);
    let unet_json =
        UNet2DModelConfig::from_unet(unet, out_channels).map_err(|e| unsupported(&run, e))?;
    let model = load_model(&run, tch::Device::Cpu, !raw)?;
    let parameters = model.vs.trainable_variables().iter().map(|t| t.numel()).sum();

    let name = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let partial = out.with_file_name(format!(".{name}.partial-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&partial);
    let written =
        write_folder(&partial, out, &run, &config, &model, &unet_json, &scheduler, parameters)
            .and_then(|()| std::fs::rename(&partial, out).map_err(io(out)));
    if let Err(e) = written {
        let _ = std::fs::remove_dir_all(&partial);
        return Err(e);
    }
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        let _ = std::fs::File::open(parent).and_then(|d| d.sync_all());
    }
    Ok(Exported { out: out.to_path_buf(), step: model.step, ema: model.ema, parameters })
}

fn write_folder(
    dir: &Path,
    out: &Path,
    run: &RunDir,
    config: &RunConfig,
    model: &LoadedModel,
    unet: &UNet2DModelConfig,
    scheduler: &SchedulerConfig,
    parameters: usize,
) -> Result<()> {
    let write = |rel: &str, bytes: &[u8]| {
        let path = dir.join(rel);
        ddpm_io::write_atomic(&path, bytes).map_err(io(path))
    };
    let model_index = serde_json::json!({
        "_class_name": "DDPMPipeline",
        "_diffusers_version": DIFFUSERS_VERSION,
        "scheduler": ["diffusers", "DDPMScheduler"],
        "unet": ["diffusers", "UNet2DModel"],
    });
    write("model_index.json", &to_json(&model_index))?;
    write("unet/config.json", &to_json(unet))?;
    write("scheduler/scheduler_config.json", &to_json(scheduler))?;
    write_weights(&model.vs, &dir.join("unet/diffusion_pytorch_model.safetensors"))?;
    let evals = read_evals(&run.eval_log_path()).map_err(io(run.eval_log_path()))?;
    write("README.md", model_card(out, run, config, model, &evals, parameters).as_bytes())
}

/// The model card: what was trained on what, for how long, and what was measured.
fn model_card(
    out: &Path,
    run: &RunDir,
    config: &RunConfig,
    model: &LoadedModel,
    evals: &[EvalLine],
    parameters: usize,
) -> String {
    let d = &config.diffusion;
    let data = toml::to_string(&config.data).unwrap_or_default();
    let classes = match &config.model {
        ModelConfig::Unet(u) => u.num_classes,
        ModelConfig::Mlp(_) => None,
    };
    let measured = {
        let at_step: Vec<&EvalLine> = evals.iter().filter(|l| l.step == model.step).collect();
        let (lines, when) = if at_step.is_empty() {
            let last = evals.iter().map(|l| l.step).max();
            (
                evals.iter().filter(|l| Some(l.step) == last).collect::<Vec<_>>(),
                last.map(|s| {
                    format!("at step {s}, the run's last evaluation (not this checkpoint's)")
                }),
            )
        } else {
            (at_step, Some(format!("at step {}, this checkpoint", model.step)))
        };
        match when {
            None => "Not measured during training (the run has no `eval.jsonl`).".to_owned(),
            Some(when) => {
                let mut s =
                    format!("Measured by ddpm-rs during training, {when}, EMA weights:\n\n");
                s.push_str("| metric | value | floor (data against data) | samples | sampler |\n|---|---|---|---|---|\n");
                for l in lines {
                    s.push_str(&format!(
                        "| {} | {:.4} | {} | {} | {} |\n",
                        l.metric,
                        l.value,
                        l.baseline.map(|b| format!("{b:.4}")).unwrap_or_else(|| "-".into()),
                        l.samples.map(|n| n.to_string()).unwrap_or_else(|| "-".into()),
                        match (&l.sampler, l.sampler_steps) {
                            (Some(s), Some(n)) => format!("{s}, {n} steps"),
                            (Some(s), None) => s.clone(),
                            _ => "-".into(),
                        }
                    ));
                }
                s.push_str("\nThe protocol of each metric is ddpm-rs's docs/metrics.md.\n");
                s
            }
        }
    };
    let conditioning = match classes {
        Some(k) => format!(
            "class-conditional, {k} classes (`class_labels` 0..{}); the table's last row, {k}, \
             is the null class of classifier-free guidance",
            k - 1
        ),
        None => "unconditional".into(),
    };
    format!(
        "---\nlibrary_name: diffusers\ntags:\n- ddpm\n- ddpm-rs\n- unconditional-image-generation\n---\n\n\
         # {name}\n\n\
         A denoising diffusion probabilistic model (Ho et al. 2020) trained with ddpm-rs and exported \
         to diffusers' `DDPMPipeline` layout.\n\n\
         - **Weights**: {weights} of step {step} ({parameters} parameters), from `{ckpt}`.\n\
         - **Network**: `UNet2DModel`, {conditioning}.\n\
         - **Diffusion**: T = {t}, {schedule:?} betas ({bs} to {be}), {mean:?} prediction, {var:?} variance.\n\
         - **Data** (the run's `[data]`):\n\n```toml\n{data}```\n\n\
         ## Measured\n\n{measured}\n\
         ## Use\n\n```python\nfrom diffusers import DDPMPipeline, DDIMPipeline, DDIMScheduler\n\n\
         pipe = DDPMPipeline.from_pretrained(\"{out}\")\nimages = pipe(batch_size=4).images\n\n\
         ddim = DDIMPipeline(unet=pipe.unet, scheduler=DDIMScheduler.from_config(pipe.scheduler.config))\n\
         images = ddim(batch_size=4, num_inference_steps=50, eta=0.0).images\n```\n\n\
         Where DDIM clips x0 to [-1, 1], diffusers keeps the network's eps; ddpm-rs's run sampled \
         with the `{convention}` convention (`use_clipped_model_output=True` in diffusers is \
         improved-diffusion's). The two agree wherever x0 stays in [-1, 1].\n",
        name = run.root.file_name().map(|n| n.to_string_lossy()).unwrap_or_default(),
        out = out.display(),
        weights = if model.ema { "EMA weights" } else { "trained (not EMA) weights" },
        step = model.step,
        ckpt = model.checkpoint.display(),
        t = d.steps,
        schedule = d.schedule,
        bs = d.beta_start,
        be = d.beta_end,
        mean = d.model_mean,
        var = d.model_var,
        convention = config.sampling.clip_convention.name(),
    )
}
