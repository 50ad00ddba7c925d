//! diffusers' `scheduler_config.json` (`DDPMScheduler`, `DDIMScheduler`, and the multistep and
//! Euler schedulers' keys) as a typed struct, read once and converted to and from our
//! [`DiffusionConfig`]. The sampling keys (`clip_sample`, `thresholding`, `set_alpha_to_one`,
//! `steps_offset`, `timestep_spacing`, `use_karras_sigmas`, `solver_order`, ...) become a run's
//! `[sampling]` defaults next to the import (`ddpm-train`'s `import.rs`), which owns that table.
//! Defaults are `DDPMScheduler.__init__`'s, and `DDIMScheduler`'s for `set_alpha_to_one`.

use super::unet_config::DIFFUSERS_VERSION;
use ddpm_core::{BetaSchedule, DiffusionConfig, LossKind, ModelMean, ModelVar, ScheduleName};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SchedulerConfig {
    #[serde(rename = "_class_name")]
    pub class_name: String,
    #[serde(rename = "_diffusers_version", skip_serializing_if = "Option::is_none")]
    pub diffusers_version: Option<String>,
    pub num_train_timesteps: usize,
    pub beta_start: f64,
    pub beta_end: f64,
    pub beta_schedule: String,
    pub trained_betas: Option<Vec<f64>>,
    pub variance_type: String,
    pub clip_sample: bool,
    pub prediction_type: String,
    pub thresholding: bool,
    pub clip_sample_range: f64,
    pub sample_max_value: f64,
    pub timestep_spacing: String,
    pub steps_offset: usize,
    pub rescale_betas_zero_snr: bool,
    pub set_alpha_to_one: bool,
    /// ddpm-rs's own key (diffusers drops keys that start with `_` unread): what DDIM does with
    /// eps when x0 was clipped, as the exported run sampled (`[sampling] clip_convention`).
    /// diffusers' pipelines always keep the model's eps; a run imported without this key does too.
    #[serde(rename = "_ddpm_rs_clip_convention", skip_serializing_if = "Option::is_none")]
    pub clip_convention: Option<String>,
    /// ddpm-rs's own key: DDIM's kept steps where they are none of diffusers' spacings
    /// (`uniform`, improved-diffusion's stride; `quadratic`), which `timestep_spacing` then
    /// approximates with "leading" for diffusers.
    #[serde(rename = "_ddpm_rs_timestep_spacing", skip_serializing_if = "Option::is_none")]
    pub ddpm_rs_timestep_spacing: Option<String>,
    /// The multistep and Euler schedulers' noise levels (`DPMSolverMultistepScheduler`,
    /// `UniPCMultistepScheduler`, `EulerDiscreteScheduler`, ...).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub use_karras_sigmas: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub use_exponential_sigmas: bool,
    /// The multistep schedulers' order (diffusers' default 2).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub solver_order: Option<usize>,
    /// "midpoint" or "heun" (DPMSolverMultistepScheduler), "bh1" or "bh2" (UniPC).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub solver_type: Option<String>,
    /// "dpmsolver++", "sde-dpmsolver++", "dpmsolver", "sde-dpmsolver" (DPMSolverMultistepScheduler).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub algorithm_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lower_order_final: Option<bool>,
    /// UniPC's data prediction (its default true).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub predict_x0: Option<bool>,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            class_name: "DDPMScheduler".into(),
            diffusers_version: None,
            num_train_timesteps: 1000,
            beta_start: 1e-4,
            beta_end: 0.02,
            beta_schedule: "linear".into(),
            trained_betas: None,
            variance_type: "fixed_small".into(),
            clip_sample: true,
            prediction_type: "epsilon".into(),
            thresholding: false,
            clip_sample_range: 1.0,
            sample_max_value: 1.0,
            timestep_spacing: "leading".into(),
            steps_offset: 0,
            rescale_betas_zero_snr: false,
            set_alpha_to_one: true,
            clip_convention: None,
            ddpm_rs_timestep_spacing: None,
            use_karras_sigmas: false,
            use_exponential_sigmas: false,
            solver_order: None,
            solver_type: None,
            algorithm_type: None,
            lower_order_final: None,
            predict_x0: None,
        }
    }
}

/// Our diffusion settings for a scheduler config; what we cannot express is an error naming the key.
impl TryFrom<&SchedulerConfig> for DiffusionConfig {
    type Error = String;

    fn try_from(s: &SchedulerConfig) -> Result<Self, String> {
        if s.rescale_betas_zero_snr {
            return Err("rescale_betas_zero_snr = true is not supported".into());
        }
        let mut c = DiffusionConfig {
            steps: s.num_train_timesteps,
            beta_start: s.beta_start,
            beta_end: s.beta_end,
            ..DiffusionConfig::default()
        };
        c.schedule = match s.beta_schedule.as_str() {
            "linear" => ScheduleName::Linear,
            "squaredcos_cap_v2" => ScheduleName::Cosine,
            "scaled_linear" => ScheduleName::Quadratic,
            "sigmoid" => ScheduleName::Sigmoid,
            other => return Err(format!("beta_schedule {other:?} is not supported")),
        };
        if let Some(betas) = &s.trained_betas {
            c.schedule = ScheduleName::Custom;
            c.betas = Some(betas.clone());
        }
        c.model_mean = match s.prediction_type.as_str() {
            "epsilon" => ModelMean::Eps,
            "sample" => ModelMean::X0,
            "v_prediction" => ModelMean::V,
            other => return Err(format!("prediction_type {other:?} is not supported")),
        };
        c.model_var = match s.variance_type.as_str() {
            "fixed_small" | "fixed_small_log" => ModelVar::FixedSmall,
            "fixed_large" | "fixed_large_log" => ModelVar::FixedLarge,
            "learned" => ModelVar::Learned,
            "learned_range" => ModelVar::LearnedRange,
            other => return Err(format!("variance_type {other:?} is not supported")),
        };
        if c.model_var.is_learned() {
            c.loss = LossKind::Hybrid;
        }
        Ok(c)
    }
}

impl SchedulerConfig {
    /// The `DDPMScheduler` config of our process, with diffusers' defaults for the sampling
    /// keys (the export sets those from the run's `[sampling]`). The schedule is named where
    /// diffusers computes the same betas, and written out as `trained_betas` where it has no
    /// name for it. What diffusers' pipelines would misread is an error naming our key.
    pub fn from_diffusion(d: &DiffusionConfig) -> Result<Self, String> {
        if d.rescale_timesteps {
            return Err("diffusion.rescale_timesteps = true: diffusers' UNet2DModel is told the \
                        step itself, so the exported network would be fed the wrong time"
                .into());
        }
        let variance_type = match d.model_var {
            ModelVar::FixedSmall => "fixed_small",
            ModelVar::FixedLarge => "fixed_large",
            learned => {
                return Err(format!(
                    "diffusion.model_var = {learned:?}: diffusers' DDIMPipeline would read the \
                     variance channels as part of eps; only fixed variances are exported"
                ));
            }
        };
        let paper_cosine = BetaSchedule::paper_cosine();
        let named = match (d.schedule, d.beta_schedule().map_err(|e| e.to_string())?) {
            (ScheduleName::Linear, BetaSchedule::Linear { scale_to_steps: false, .. }) => {
                Some("linear")
            }
            (ScheduleName::Cosine, s) if s == paper_cosine => Some("squaredcos_cap_v2"),
            (ScheduleName::Quadratic, _) => Some("scaled_linear"),
            (ScheduleName::Sigmoid, _) => Some("sigmoid"),
            _ => None,
        };
        let trained_betas = match named {
            Some(_) => None,
            None => Some(
                d.beta_schedule()
                    .and_then(|s| s.betas(d.steps))
                    .map_err(|e| format!("diffusion: {e}"))?,
            ),
        };
        Ok(Self {
            diffusers_version: Some(DIFFUSERS_VERSION.into()),
            num_train_timesteps: d.steps,
            beta_start: d.beta_start,
            beta_end: d.beta_end,
            beta_schedule: named.unwrap_or("linear").into(),
            trained_betas,
            variance_type: variance_type.into(),
            prediction_type: match d.model_mean {
                ModelMean::Eps => "epsilon",
                ModelMean::X0 => "sample",
                ModelMean::V => "v_prediction",
            }
            .into(),
            ..Self::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(d: DiffusionConfig) -> DiffusionConfig {
        let s = SchedulerConfig::from_diffusion(&d).unwrap();
        let json = serde_json::to_string(&s).unwrap();
        let back: SchedulerConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);
        DiffusionConfig::try_from(&back).unwrap()
    }

    #[test]
    fn named_schedules_keep_their_name_and_the_rest_become_trained_betas() {
        for schedule in [ScheduleName::Linear, ScheduleName::Quadratic, ScheduleName::Sigmoid] {
            let d = DiffusionConfig { schedule, ..DiffusionConfig::default() };
            assert_eq!(round_trip(d.clone()), d);
        }
        let cosine =
            DiffusionConfig { schedule: ScheduleName::Cosine, ..DiffusionConfig::default() };
        assert_eq!(round_trip(cosine.clone()), cosine);
        let v = DiffusionConfig { model_mean: ModelMean::V, ..DiffusionConfig::default() };
        assert_eq!(round_trip(v.clone()), v);
        // No diffusers name: the betas themselves, which give back the same process.
        for d in [
            DiffusionConfig {
                schedule: ScheduleName::Cosine,
                cosine_s: 0.02,
                ..DiffusionConfig::default()
            },
            DiffusionConfig {
                scale_linear_to_steps: true,
                steps: 500,
                ..DiffusionConfig::default()
            },
        ] {
            let back = round_trip(d.clone());
            assert_eq!(back.schedule, ScheduleName::Custom);
            let want = d.beta_schedule().unwrap().betas(d.steps).unwrap();
            assert_eq!(back.beta_schedule().unwrap().betas(back.steps).unwrap(), want);
        }
    }

    #[test]
    fn what_diffusers_pipelines_would_misread_is_refused_by_name() {
        let learned = DiffusionConfig::improved_ddpm(1000);
        assert!(SchedulerConfig::from_diffusion(&learned).unwrap_err().contains("model_var"));
        let rescaled = DiffusionConfig { rescale_timesteps: true, ..DiffusionConfig::default() };
        assert!(
            SchedulerConfig::from_diffusion(&rescaled).unwrap_err().contains("rescale_timesteps")
        );
        let zero_snr =
            SchedulerConfig { rescale_betas_zero_snr: true, ..SchedulerConfig::default() };
        assert!(
            DiffusionConfig::try_from(&zero_snr).unwrap_err().contains("rescale_betas_zero_snr")
        );
    }
}
