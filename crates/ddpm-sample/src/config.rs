//! `[sampling]`: a run's own sampling defaults, which the command line's flags override. A run
//! trained here has none (the defaults below: improved-diffusion's conventions); a run imported
//! from diffusers records what its scheduler config says, so that it samples the way diffusers'
//! pipelines sample it unless told otherwise.

use crate::samplers::{ClipConvention, Skip};
use serde::{Deserialize, Serialize};

/// The `[sampling]` table of a run config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SamplingConfig {
    /// Clip x0 predictions to [-1, 1]: true or false for every sampler, or absent for each
    /// sampler's own default (on for ddpm and ddim, off for the ODE solvers).
    pub clip: Option<bool>,
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
