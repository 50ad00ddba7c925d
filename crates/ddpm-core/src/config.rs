//! The diffusion section of a run config. `Default` is the paper's CIFAR-10 recipe
//! (Ho et al. 2020, Sec. 4): T = 1000, linear betas 1e-4 to 0.02, eps prediction,
//! fixedlarge variance, L_simple, uniform t.

use crate::diffusion::{GaussianDiffusion, LossKind, ModelMean, ModelVar};
use crate::error::{CoreError, Result};
use crate::schedule::BetaSchedule;
use crate::timestep_sampler::TimestepSamplerKind;
use serde::{Deserialize, Serialize};

/// Names of the beta schedules as they appear in configs and on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleName {
    #[default]
    Linear,
    Cosine,
    Quadratic,
    Sigmoid,
    Constant,
    Jsd,
    Custom,
}

impl std::str::FromStr for ScheduleName {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "linear" => Self::Linear,
            "cosine" => Self::Cosine,
            "quadratic" | "quad" => Self::Quadratic,
            "sigmoid" => Self::Sigmoid,
            "constant" | "const" => Self::Constant,
            "jsd" => Self::Jsd,
            "custom" => Self::Custom,
            other => return Err(CoreError::UnknownSchedule(other.to_owned())),
        })
    }
}

/// `[diffusion]` of a run config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiffusionConfig {
    /// T, the number of diffusion steps.
    pub steps: usize,
    pub schedule: ScheduleName,
    /// beta_1 of linear, quadratic and sigmoid schedules.
    pub beta_start: f64,
    /// beta_T of linear, quadratic and sigmoid schedules; the beta of the constant schedule.
    pub beta_end: f64,
    /// Scale linear endpoints by 1000/T (improved-diffusion's convention).
    pub scale_linear_to_steps: bool,
    /// s of the cosine schedule.
    pub cosine_s: f64,
    /// Cap on cosine betas.
    pub max_beta: f64,
    /// The betas of the custom schedule.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub betas: Option<Vec<f64>>,
    pub model_mean: ModelMean,
    pub model_var: ModelVar,
    pub loss: LossKind,
    /// lambda of L_hybrid = L_simple + lambda L_vlb.
    pub hybrid_lambda: f64,
    /// gamma of min-SNR loss weighting; none for unweighted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_snr_gamma: Option<f64>,
    pub timestep_sampler: TimestepSamplerKind,
    /// Feed the network t * 1000/T instead of t.
    pub rescale_timesteps: bool,
}

impl Default for DiffusionConfig {
    fn default() -> Self {
        Self {
            steps: 1000,
            schedule: ScheduleName::Linear,
            beta_start: 1e-4,
            beta_end: 0.02,
            scale_linear_to_steps: false,
            cosine_s: 0.008,
            max_beta: 0.999,
            betas: None,
            model_mean: ModelMean::Eps,
            model_var: ModelVar::FixedLarge,
            loss: LossKind::Simple,
            hybrid_lambda: 0.001,
            min_snr_gamma: None,
            timestep_sampler: TimestepSamplerKind::Uniform,
            rescale_timesteps: false,
        }
    }
}

impl DiffusionConfig {
    /// The improved-DDPM setting: cosine schedule, learned_range variance, hybrid loss.
    pub fn improved_ddpm(steps: usize) -> Self {
        Self {
            steps,
            schedule: ScheduleName::Cosine,
            model_var: ModelVar::LearnedRange,
            loss: LossKind::Hybrid,
            ..Self::default()
        }
    }

    pub fn beta_schedule(&self) -> Result<BetaSchedule> {
        let (beta_start, beta_end) = (self.beta_start, self.beta_end);
        Ok(match self.schedule {
            ScheduleName::Linear => BetaSchedule::Linear {
                beta_start,
                beta_end,
                scale_to_steps: self.scale_linear_to_steps,
            },
            ScheduleName::Cosine => {
                BetaSchedule::Cosine { s: self.cosine_s, max_beta: self.max_beta }
            }
            ScheduleName::Quadratic => BetaSchedule::Quadratic { beta_start, beta_end },
            ScheduleName::Sigmoid => BetaSchedule::Sigmoid { beta_start, beta_end },
            ScheduleName::Constant => BetaSchedule::Constant { beta: beta_end },
            ScheduleName::Jsd => BetaSchedule::Jsd,
            ScheduleName::Custom => BetaSchedule::Custom(self.betas.clone().ok_or_else(|| {
                CoreError::Incompatible("schedule = \"custom\" needs `betas = [...]`".into())
            })?),
        })
    }

    /// Checks option combinations that have no meaning.
    pub fn validate(&self) -> Result<()> {
        if self.model_var.is_learned() && self.loss == LossKind::Simple {
            return Err(CoreError::Incompatible(format!(
                "model_var = {:?} is trained only by the bound: use loss = \"hybrid\" or \"vlb\"",
                self.model_var
            )));
        }
        if self.loss == LossKind::Hybrid && !self.model_var.is_learned() {
            return Err(CoreError::Incompatible(
                "loss = \"hybrid\" trains the variance: use model_var = \"learned\" or \"learned_range\""
                    .into(),
            ));
        }
        if self.betas.is_some() && self.schedule != ScheduleName::Custom {
            return Err(CoreError::Incompatible(
                "`betas` is given but schedule is not \"custom\"".into(),
            ));
        }
        if let Some(g) = self.min_snr_gamma
            && !(g > 0.0 && g.is_finite())
        {
            return Err(CoreError::BadParameter {
                name: "min_snr_gamma",
                expected: "a positive number",
                value: g,
            });
        }
        if !(self.hybrid_lambda >= 0.0) {
            return Err(CoreError::BadParameter {
                name: "hybrid_lambda",
                expected: ">= 0",
                value: self.hybrid_lambda,
            });
        }
        Ok(())
    }

    /// The validated diffusion with all its arrays.
    pub fn build(&self) -> Result<GaussianDiffusion> {
        self.validate()?;
        GaussianDiffusion::new(self.beta_schedule()?.betas(self.steps)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_the_paper_recipe() {
        let c = DiffusionConfig::default();
        let d = c.build().unwrap();
        assert_eq!(d.num_timesteps, 1000);
        assert_eq!(d.betas[0], 1e-4);
        assert_eq!(d.betas[999], 0.02);
        assert_eq!(
            (c.model_mean, c.model_var, c.loss),
            (ModelMean::Eps, ModelVar::FixedLarge, LossKind::Simple)
        );
    }

    #[test]
    fn toml_round_trip_and_unknown_keys() {
        let c: DiffusionConfig = toml::from_str("steps = 4000\nschedule = \"cosine\"").unwrap();
        assert_eq!(c.steps, 4000);
        assert_eq!(c.schedule, ScheduleName::Cosine);
        let back: DiffusionConfig = toml::from_str(&toml::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
        let err = toml::from_str::<DiffusionConfig>("stepz = 10").unwrap_err().to_string();
        assert!(err.contains("stepz"), "{err}");
    }

    #[test]
    fn incompatible_options_are_named() {
        let c = DiffusionConfig { model_var: ModelVar::Learned, ..Default::default() };
        assert!(c.validate().unwrap_err().to_string().contains("hybrid"));
        let c = DiffusionConfig { loss: LossKind::Hybrid, ..Default::default() };
        assert!(c.validate().is_err());
        assert!(DiffusionConfig::improved_ddpm(4000).build().is_ok());
        let c = DiffusionConfig { schedule: ScheduleName::Custom, ..Default::default() };
        assert!(c.build().unwrap_err().to_string().contains("betas"));
    }
}
