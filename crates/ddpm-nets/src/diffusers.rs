//! Import of diffusers' `UNet2DModel` folders (`config.json` + `diffusion_pytorch_model.safetensors`,
//! optionally `../scheduler/scheduler_config.json`), such as the published google/ddpm-* models.
//!
//! # Key mapping
//! Our UNet names its parameters as diffusers does, so current diffusers checkpoints map
//! identically: `conv_in`, `time_embedding.linear_{1,2}`, `class_embedding`,
//! `down_blocks.{i}.resnets.{j}.{norm1,conv1,time_emb_proj,norm2,conv2,conv_shortcut}`,
//! `down_blocks.{i}.attentions.{j}.{group_norm,to_q,to_k,to_v,to_out.0}`,
//! `down_blocks.{i}.downsamplers.0.conv`, `mid_block.{resnets.{0,1},attentions.0}`,
//! `up_blocks.{k}.resnets.{j}`, `up_blocks.{k}.attentions.{j}`, `up_blocks.{k}.upsamplers.0.conv`,
//! `conv_norm_out`, `conv_out` (each `.weight`/`.bias`). Checkpoints written by diffusers before
//! 0.15 (the google/ddpm-* uploads) name attention projections `query`, `key`, `value` and
//! `proj_attn`; those become `to_q`, `to_k`, `to_v` and `to_out.0`.

use crate::config::UNetConfig;
use crate::error::{NetError, Result};
use crate::tensorfile::TensorFile;
use ddpm_core::{DiffusionConfig, ModelMean, ModelVar, ScheduleName};
use serde_json::Value;
use std::path::{Path, PathBuf};
use tch::nn::VarStore;

/// Our parameter name for a diffusers parameter name.
pub fn map_key(key: &str) -> String {
    const OLD: [(&str, &str); 4] = [
        (".query.", ".to_q."),
        (".key.", ".to_k."),
        (".value.", ".to_v."),
        (".proj_attn.", ".to_out.0."),
    ];
    if key.contains(".attentions.") {
        for (old, new) in OLD {
            if key.contains(old) {
                return key.replacen(old, new, 1);
            }
        }
    }
    key.to_owned()
}

fn cfg_err(path: &Path, reason: impl Into<String>) -> NetError {
    NetError::File { path: path.into(), reason: reason.into() }
}

fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| NetError::Io { path: path.into(), source })?;
    serde_json::from_str(&text).map_err(|e| cfg_err(path, format!("invalid JSON: {e}")))
}

/// Our UNet configuration for a diffusers `UNet2DModel` config.json; anything this UNet cannot
/// express is an error naming the field.
pub fn unet_config(config_json: &Path) -> Result<UNetConfig> {
    let v = read_json(config_json)?;
    let p = config_json;
    if let Some(cls) = v.get("_class_name").and_then(Value::as_str)
        && cls != "UNet2DModel"
    {
        return Err(cfg_err(
            p,
            format!("_class_name is {cls:?}; only UNet2DModel can be imported"),
        ));
    }
    let get_usize = |k: &str, default: usize| -> Result<usize> {
        match v.get(k) {
            None | Some(Value::Null) => Ok(default),
            Some(x) => x
                .as_u64()
                .map(|x| x as usize)
                .ok_or_else(|| cfg_err(p, format!("{k} must be an integer"))),
        }
    };
    let get_f64 = |k: &str, default: f64| v.get(k).and_then(Value::as_f64).unwrap_or(default);
    let get_str =
        |k: &str, default: &str| v.get(k).and_then(Value::as_str).unwrap_or(default).to_owned();
    let expect = |k: &str, default: &str, allowed: &[&str]| -> Result<()> {
        let s = get_str(k, default);
        if allowed.contains(&s.as_str()) {
            Ok(())
        } else {
            Err(cfg_err(p, format!("{k} = {s:?} is not supported (supported: {allowed:?})")))
        }
    };
    expect("act_fn", "silu", &["silu", "swish"])?;
    expect("time_embedding_type", "positional", &["positional"])?;
    expect("resnet_time_scale_shift", "default", &["default"])?;
    expect("mid_block_type", "UNetMidBlock2D", &["UNetMidBlock2D"])?;
    expect("downsample_type", "conv", &["conv"])?;
    expect("upsample_type", "conv", &["conv"])?;
    if v.get("center_input_sample").and_then(Value::as_bool) == Some(true) {
        return Err(cfg_err(p, "center_input_sample = true is not supported"));
    }
    if v.get("add_attention").and_then(Value::as_bool) == Some(false) {
        return Err(cfg_err(
            p,
            "add_attention = false is not supported (the DDPM mid block has attention)",
        ));
    }
    if get_f64("mid_block_scale_factor", 1.0) != 1.0 {
        return Err(cfg_err(p, "mid_block_scale_factor must be 1"));
    }
    if let Some(t) = v.get("class_embed_type").filter(|t| !t.is_null()) {
        return Err(cfg_err(
            p,
            format!("class_embed_type = {t} is not supported (only an embedding table)"),
        ));
    }
    let widths: Vec<usize> = serde_json::from_value(v["block_out_channels"].clone())
        .map_err(|_| cfg_err(p, "block_out_channels must be a list of integers"))?;
    let ch = match widths.first() {
        None => {
            return Err(cfg_err(p, "block_out_channels is empty; expected one width per level"));
        }
        Some(_) if widths.contains(&0) => {
            return Err(cfg_err(
                p,
                format!(
                    "block_out_channels {widths:?} holds a zero width; widths must be positive"
                ),
            ));
        }
        Some(&ch) => ch,
    };
    if widths.iter().any(|w| w % ch != 0) {
        return Err(cfg_err(
            p,
            format!("block_out_channels {widths:?} are not multiples of the first"),
        ));
    }
    let down: Vec<String> = serde_json::from_value(v["down_block_types"].clone())
        .map_err(|_| cfg_err(p, "down_block_types must be a list of strings"))?;
    let up: Vec<String> = serde_json::from_value(v["up_block_types"].clone())
        .map_err(|_| cfg_err(p, "up_block_types must be a list of strings"))?;
    if down.len() != widths.len() || up.len() != widths.len() {
        return Err(cfg_err(p, "block type lists and block_out_channels differ in length"));
    }
    let image_size = match &v["sample_size"] {
        Value::Array(a) => a.first().and_then(Value::as_u64).unwrap_or(32) as usize,
        x => x.as_u64().unwrap_or(32) as usize,
    };
    let mut attention_resolutions = Vec::new();
    for (i, d) in down.iter().enumerate() {
        let u = &up[widths.len() - 1 - i];
        let down_attn = match d.as_str() {
            "DownBlock2D" => false,
            "AttnDownBlock2D" => true,
            other => return Err(cfg_err(p, format!("down block {other:?} is not supported"))),
        };
        let up_attn = match u.as_str() {
            "UpBlock2D" => false,
            "AttnUpBlock2D" => true,
            other => return Err(cfg_err(p, format!("up block {other:?} is not supported"))),
        };
        if down_attn != up_attn {
            return Err(cfg_err(
                p,
                format!("attention at level {i} on the way down but not up (or back)"),
            ));
        }
        if down_attn {
            attention_resolutions.push(image_size >> i);
        }
    }
    let in_channels = get_usize("in_channels", 3)?;
    let config = UNetConfig {
        image_size,
        in_channels,
        out_channels: Some(get_usize("out_channels", 3)?),
        ch,
        ch_mult: widths.iter().map(|w| w / ch).collect(),
        num_res_blocks: get_usize("layers_per_block", 2)?,
        attention_resolutions,
        dropout: get_f64("dropout", 0.0),
        resample_with_conv: true,
        num_groups: get_usize("norm_num_groups", 32)?,
        norm_eps: get_f64("norm_eps", 1e-5),
        attention_head_dim: match v.get("attention_head_dim") {
            None | Some(Value::Null) => None,
            Some(x) => Some(
                x.as_u64().ok_or_else(|| cfg_err(p, "attention_head_dim must be an integer"))?
                    as usize,
            ),
        },
        num_classes: match v.get("num_class_embeds") {
            // diffusers' table has no null class: ours holds one more row (see load_weights).
            None | Some(Value::Null) => None,
            Some(x) => {
                Some(x.as_u64().ok_or_else(|| cfg_err(p, "num_class_embeds must be an integer"))?
                    as usize)
            }
        },
        downsample_padding: get_usize("downsample_padding", 1)?,
        flip_sin_to_cos: v.get("flip_sin_to_cos").and_then(Value::as_bool).unwrap_or(true),
        freq_shift: get_f64("freq_shift", 0.0),
    };
    config.validate().map_err(|e| cfg_err(p, e.to_string()))?;
    Ok(config)
}

/// Our diffusion settings for a diffusers scheduler config (DDPMScheduler / DDIMScheduler).
pub fn diffusion_config(scheduler_json: &Path) -> Result<DiffusionConfig> {
    let v = read_json(scheduler_json)?;
    let p = scheduler_json;
    let mut c = DiffusionConfig::default();
    if let Some(t) = v.get("num_train_timesteps").and_then(Value::as_u64) {
        c.steps = t as usize;
    }
    c.beta_start = v.get("beta_start").and_then(Value::as_f64).unwrap_or(c.beta_start);
    c.beta_end = v.get("beta_end").and_then(Value::as_f64).unwrap_or(c.beta_end);
    c.schedule = match v.get("beta_schedule").and_then(Value::as_str).unwrap_or("linear") {
        "linear" => ScheduleName::Linear,
        "squaredcos_cap_v2" => ScheduleName::Cosine,
        "scaled_linear" => ScheduleName::Quadratic,
        "sigmoid" => ScheduleName::Sigmoid,
        other => return Err(cfg_err(p, format!("beta_schedule {other:?} is not supported"))),
    };
    if let Some(betas) = v.get("trained_betas").filter(|b| !b.is_null()) {
        c.schedule = ScheduleName::Custom;
        c.betas = Some(
            serde_json::from_value(betas.clone())
                .map_err(|_| cfg_err(p, "trained_betas must be numbers"))?,
        );
    }
    c.model_mean = match v.get("prediction_type").and_then(Value::as_str).unwrap_or("epsilon") {
        "epsilon" => ModelMean::Eps,
        "sample" => ModelMean::X0,
        "v_prediction" => ModelMean::V,
        other => return Err(cfg_err(p, format!("prediction_type {other:?} is not supported"))),
    };
    c.model_var = match v.get("variance_type").and_then(Value::as_str).unwrap_or("fixed_small") {
        "fixed_small" | "fixed_small_log" => ModelVar::FixedSmall,
        "fixed_large" | "fixed_large_log" => ModelVar::FixedLarge,
        "learned" => ModelVar::Learned,
        "learned_range" => ModelVar::LearnedRange,
        other => return Err(cfg_err(p, format!("variance_type {other:?} is not supported"))),
    };
    if c.model_var.is_learned() {
        c.loss = ddpm_core::LossKind::Hybrid;
    }
    Ok(c)
}

/// What a diffusers scheduler config says about sampling, with diffusers' defaults for the keys
/// it lacks (a DDPMScheduler config read as `DDIMScheduler.from_config` reads it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchedulerSampling {
    /// `clip_sample` (default true): DDPM and DDIM clip x0 to [-1, 1].
    pub clip_sample: bool,
    /// `thresholding` with `sample_max_value` 1.0: every scheduler, DPM-Solver++ included,
    /// clips x0 to [-1, 1] (dynamic thresholding's s = clamp(quantile, 1, 1) = 1).
    pub threshold_clip: bool,
    /// `set_alpha_to_one` (default true): DDIM's last step goes to abar = 1, else to abar_0.
    pub set_alpha_to_one: bool,
    /// `steps_offset` (default 0), added to DDIM's "leading" steps.
    pub steps_offset: usize,
}

impl Default for SchedulerSampling {
    fn default() -> Self {
        Self { clip_sample: true, threshold_clip: false, set_alpha_to_one: true, steps_offset: 0 }
    }
}

/// The sampling settings of a diffusers scheduler config: `clip_sample`, `clip_sample_range`,
/// `set_alpha_to_one`, `steps_offset`, `timestep_spacing` and `thresholding`. What we do not
/// implement is an error naming the key: a clip range other than 1 (our data lie in [-1, 1]),
/// a spacing other than "leading" (evenly strided steps, improved-diffusion's `ddimN`), and
/// dynamic thresholding with `sample_max_value` above 1.
pub fn scheduler_sampling(scheduler_json: &Path) -> Result<SchedulerSampling> {
    let v = read_json(scheduler_json)?;
    let p = scheduler_json;
    let d = SchedulerSampling::default();
    let get_bool = |k: &str, default: bool| -> Result<bool> {
        match v.get(k) {
            None | Some(Value::Null) => Ok(default),
            Some(x) => x.as_bool().ok_or_else(|| cfg_err(p, format!("{k} must be true or false"))),
        }
    };
    let get_f64 = |k: &str, default: f64| -> Result<f64> {
        match v.get(k) {
            None | Some(Value::Null) => Ok(default),
            Some(x) => x.as_f64().ok_or_else(|| cfg_err(p, format!("{k} must be a number"))),
        }
    };
    let thresholding = get_bool("thresholding", false)?;
    let clip_sample = get_bool("clip_sample", d.clip_sample)?;
    if thresholding {
        let max = get_f64("sample_max_value", 1.0)?;
        if max != 1.0 {
            return Err(cfg_err(
                p,
                format!(
                    "thresholding with sample_max_value = {max} (dynamic thresholding) is not \
                     supported; only sample_max_value = 1.0, which is clipping to [-1, 1]"
                ),
            ));
        }
    } else if clip_sample {
        let range = get_f64("clip_sample_range", 1.0)?;
        if range != 1.0 {
            return Err(cfg_err(
                p,
                format!("clip_sample_range = {range} is not supported (only 1.0: data in [-1, 1])"),
            ));
        }
    }
    match v.get("timestep_spacing").and_then(Value::as_str).unwrap_or("leading") {
        "leading" => {}
        other => {
            return Err(cfg_err(
                p,
                format!(
                    "timestep_spacing = {other:?} is not supported (only \"leading\": evenly \
                     strided steps, improved-diffusion's ddimN)"
                ),
            ));
        }
    }
    let steps_offset = match v.get("steps_offset") {
        None | Some(Value::Null) => 0,
        Some(x) => {
            x.as_u64().ok_or_else(|| cfg_err(p, "steps_offset must be a non-negative integer"))?
                as usize
        }
    };
    Ok(SchedulerSampling {
        clip_sample,
        threshold_clip: thresholding,
        set_alpha_to_one: get_bool("set_alpha_to_one", d.set_alpha_to_one)?,
        steps_offset,
    })
}

/// The files of a diffusers model folder: the UNet's config and weights, and the scheduler config if any.
#[derive(Debug)]
pub struct DiffusersFolder {
    pub config: PathBuf,
    pub weights: PathBuf,
    pub scheduler: Option<PathBuf>,
}

impl DiffusersFolder {
    /// Accepts the UNet folder itself or a pipeline folder with `unet/` and `scheduler/`.
    pub fn locate(dir: &Path) -> Result<Self> {
        let unet = if dir.join("unet/config.json").exists() {
            dir.join("unet")
        } else {
            dir.to_path_buf()
        };
        let config = unet.join("config.json");
        if !config.exists() {
            return Err(cfg_err(dir, "no config.json (expected a diffusers UNet2DModel folder)"));
        }
        let weights = unet.join("diffusion_pytorch_model.safetensors");
        if !weights.exists() {
            return Err(cfg_err(
                dir,
                "no diffusion_pytorch_model.safetensors (pickled .bin weights are not read: convert them \
                 with diffusers' save_pretrained(safe_serialization=True))",
            ));
        }
        let scheduler = [
            unet.join("scheduler_config.json"),
            unet.join("../scheduler/scheduler_config.json"),
            dir.join("scheduler/scheduler_config.json"),
        ]
        .into_iter()
        .find(|p| p.exists());
        Ok(Self { config, weights, scheduler })
    }
}

/// Loads diffusers weights into `vs` (built from [`unet_config`]'s config) through [`map_key`].
/// A class embedding table one row short gets its null-class row from the mean of the others.
pub fn load_weights(vs: &VarStore, weights: &Path) -> Result<()> {
    let file = TensorFile::open(weights)?;
    let vars = vs.variables();
    let mut seen = std::collections::HashSet::new();
    let mut unexpected = Vec::new();
    tch::no_grad(|| -> Result<()> {
        for name in file.tensors.keys() {
            let ours = map_key(name);
            let Some(var) = vars.get(&ours) else {
                unexpected.push(name.clone());
                continue;
            };
            let mut src = file.tensor(name)?.to_kind(var.kind());
            if ours == "class_embedding.weight" && src.size()[0] + 1 == var.size()[0] {
                let null = src.mean_dim([0i64].as_slice(), true, None::<tch::Kind>);
                src = tch::Tensor::cat(&[src, null], 0);
            }
            if src.size() != var.size() {
                return Err(NetError::Shape {
                    path: weights.into(),
                    key: name.clone(),
                    expected: var.size(),
                    found: src.size(),
                });
            }
            var.shallow_clone().f_copy_(&src)?;
            seen.insert(ours);
        }
        Ok(())
    })?;
    if !unexpected.is_empty() {
        unexpected.sort();
        return Err(NetError::UnexpectedKeys { path: weights.into(), keys: unexpected });
    }
    let mut missing: Vec<String> = vars.keys().filter(|k| !seen.contains(*k)).cloned().collect();
    missing.sort();
    if !missing.is_empty() {
        return Err(NetError::MissingKeys { path: weights.into(), keys: missing });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_json(name: &str, text: &str) -> PathBuf {
        let dir = ddpm_testkit::temp_dir(name);
        let p = dir.join("config.json");
        std::fs::write(&p, text).unwrap();
        p
    }

    const UNET: &str = r#"{"_class_name": "UNet2DModel", "sample_size": 16,
        "block_out_channels": WIDTHS, "down_block_types": ["DownBlock2D", "DownBlock2D"],
        "up_block_types": ["UpBlock2D", "UpBlock2D"], "norm_num_groups": 8}"#;

    /// Regression: an empty list indexed `widths[0]` and a zero width divided by zero; both
    /// panicked instead of naming the file and the field.
    #[test]
    fn empty_or_zero_block_out_channels_are_errors_naming_the_file() {
        for widths in ["[]", "[0, 32]", "[32, 0]"] {
            let p = write_json("unet-widths", &UNET.replace("WIDTHS", widths));
            let e = std::panic::catch_unwind(|| unet_config(&p))
                .unwrap_or_else(|_| panic!("{widths}: panicked"))
                .unwrap_err()
                .to_string();
            assert!(e.contains("config.json") && e.contains("block_out_channels"), "{e}");
            assert_eq!(e.lines().count(), 1, "{e}");
        }
        let p = write_json("unet-widths-ok", &UNET.replace("WIDTHS", "[16, 32]"));
        assert_eq!(unet_config(&p).unwrap().ch_mult, vec![1, 2]);
    }

    #[test]
    fn scheduler_sampling_keys_are_read_with_diffusers_defaults() {
        let read = |text: &str| scheduler_sampling(&write_json("sched", text));
        assert_eq!(read("{}").unwrap(), SchedulerSampling::default());
        let s = read(
            r#"{"clip_sample": false, "set_alpha_to_one": false, "steps_offset": 1,
                "timestep_spacing": "leading"}"#,
        )
        .unwrap();
        assert_eq!(
            s,
            SchedulerSampling {
                clip_sample: false,
                threshold_clip: false,
                set_alpha_to_one: false,
                steps_offset: 1
            }
        );
        let s = read(r#"{"thresholding": true, "sample_max_value": 1.0, "clip_sample": false}"#);
        assert!(s.unwrap().threshold_clip);
        // A range is irrelevant when nothing is clipped.
        assert!(read(r#"{"clip_sample": false, "clip_sample_range": 2.0}"#).is_ok());
        for (text, needle) in [
            (r#"{"clip_sample_range": 1.5}"#, "clip_sample_range = 1.5"),
            (r#"{"timestep_spacing": "trailing"}"#, "timestep_spacing = \"trailing\""),
            (r#"{"timestep_spacing": "linspace"}"#, "timestep_spacing = \"linspace\""),
            (r#"{"thresholding": true, "sample_max_value": 1.5}"#, "sample_max_value = 1.5"),
            (r#"{"steps_offset": -1}"#, "steps_offset"),
            (r#"{"clip_sample": "yes"}"#, "clip_sample"),
        ] {
            let e = read(text).unwrap_err().to_string();
            assert!(e.contains("config.json") && e.contains(needle), "{text}: {e}");
            assert_eq!(e.lines().count(), 1, "{e}");
        }
    }

    #[test]
    fn old_attention_names_are_mapped() {
        assert_eq!(
            map_key("down_blocks.1.attentions.0.query.weight"),
            "down_blocks.1.attentions.0.to_q.weight"
        );
        assert_eq!(
            map_key("mid_block.attentions.0.proj_attn.bias"),
            "mid_block.attentions.0.to_out.0.bias"
        );
        assert_eq!(
            map_key("down_blocks.1.resnets.0.conv1.weight"),
            "down_blocks.1.resnets.0.conv1.weight"
        );
        assert_eq!(
            map_key("mid_block.attentions.0.to_k.weight"),
            "mid_block.attentions.0.to_k.weight"
        );
    }
}
