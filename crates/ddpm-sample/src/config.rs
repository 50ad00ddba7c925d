//! `[sampling]`: a run's own sampling defaults, which the command line's flags override. A run
//! trained here has none (the defaults below: improved-diffusion's conventions); a run imported
//! from diffusers records what its scheduler config says, so that it samples the way diffusers'
//! pipelines sample it unless told otherwise.

use crate::samplers::{ClipConvention, SigmaSpacing, Skip, TimeSteps};
use serde::{Deserialize, Serialize};

/// The `[sampling]` table of a run config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SamplingConfig {
    /// Clip x0 predictions to [-1, 1]: true or false for every sampler, or absent for the
    /// default (on).
    pub clip: Option<bool>,
    /// Clipping in the samplers other than ddpm and ddim where it differs from `clip` (an
    /// imported pipeline with `clip_sample` but no `thresholding`: diffusers' multistep and
    /// Euler schedulers clip only with `thresholding`).
    pub clip_solvers: Option<bool>,
    /// Where dpm-solver++ and unipc evaluate when the command line does not say (an imported
    /// multistep scheduler's linspace, or its `use_karras_sigmas`).
    pub time_steps: Option<TimeSteps>,
    /// The noise levels of the sigma solvers when the command line does not say (an imported
    /// scheduler's `use_karras_sigmas` or `use_exponential_sigmas`).
    pub sigmas: Option<SigmaSpacing>,
    /// UniPC's order when the command line does not say (an imported UniPC's `solver_order`).
    pub order: Option<usize>,
    /// What DDIM does with eps when x0 was clipped.
    pub clip_convention: ClipConvention,
    /// DDIM's last step goes to abar = 1 (diffusers' `set_alpha_to_one`), else to abar_0.
    pub final_abar_one: bool,
    /// Added to DDIM's uniform or leading kept steps (diffusers' `steps_offset`).
    pub steps_offset: usize,
    /// DDIM's kept steps when the command line gives no `--skip` (an imported diffusers
    /// pipeline's `timestep_spacing`: leading, trailing or linspace).
    pub timestep_spacing: Skip,
}

impl Default for SamplingConfig {
    fn default() -> Self {
        Self {
            clip: None,
            clip_solvers: None,
            time_steps: None,
            sigmas: None,
            order: None,
            clip_convention: ClipConvention::ImprovedDiffusion,
            final_abar_one: true,
            steps_offset: 0,
            timestep_spacing: Skip::Uniform,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_table_with_defaults_and_names_unknown_keys() {
        let c: SamplingConfig = toml::from_str("clip_convention = \"diffusers\"\n").unwrap();
        assert_eq!(
            c,
            SamplingConfig { clip_convention: ClipConvention::Diffusers, ..Default::default() }
        );
        let back: SamplingConfig = toml::from_str(&toml::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
        let e = toml::from_str::<SamplingConfig>("clip_convention = \"ermon\"\n").unwrap_err();
        assert!(e.to_string().contains("ermon"), "{e}");
        assert!(toml::from_str::<SamplingConfig>("clipping = true\n").is_err());
        let c: SamplingConfig = toml::from_str("timestep_spacing = \"trailing\"\n").unwrap();
        assert_eq!(c.timestep_spacing, Skip::Trailing);
    }
}
