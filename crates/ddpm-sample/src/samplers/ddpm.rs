//! Ancestral sampling, Algorithm 2 of Ho et al. 2020: x_{t-1} = mu_theta(x_t, t) + sigma_t z,
//! over all T steps or over a respaced subset of `steps` kept steps k_0 < ... < k_{S-1}, where
//! the respaced process has beta'_i = 1 - abar_{k_i}/abar_{k_{i-1}} and the network still sees
//! the original t (improved-diffusion's respacing; diffusers' `DDPMScheduler.step`, which goes
//! from each kept step to the one before, is the same walk). The kept steps are
//! improved-diffusion's even spacing ("S") or any [`Skip`] of DDIM's, diffusers' three
//! `timestep_spacing`s included.

use super::{ModelFn, SamplerOptions, Skip, ddim};
use crate::error::{Result, SampleError};
use crate::noise::ImageNoise;
use ddpm_core::ModelVar;
use ddpm_core::tensor::TensorDiffusion;
use tch::Tensor;

/// DDPM's own options.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Options {
    /// The variance, overriding the model's configured one (fixed types only).
    #[serde(default)]
    pub variance: Option<ModelVar>,
    /// The kept steps when respaced (`Skip::Uniform`: improved-diffusion's even spacing).
    #[serde(default)]
    pub skip: Skip,
    /// Added to every kept step of diffusers' "leading" spacing (its `steps_offset`).
    #[serde(default)]
    pub steps_offset: usize,
}

impl Options {
    pub fn validate(&self, t: usize, steps: usize) -> Result<()> {
        if let Some(v) = self.variance
            && v.is_learned()
        {
            return Err(SampleError::Arg("--variance takes fixed_small or fixed_large".into()));
        }
        ddim::check_steps_offset("ddpm", &[Skip::Leading], self.skip, self.steps_offset, t, steps)
    }
}

/// The kept steps, ascending, `steps_offset` added: all T when `steps` = T with the uniform
/// spacing, else improved-diffusion's `space_timesteps(T, "S")` (uniform) or DDIM's kept
/// steps of `skip` ([`ddim::timesteps`]: diffusers' `DDPMScheduler.set_timesteps` uses the
/// same three spacings).
pub fn kept_steps(t: usize, steps: usize, o: &Options) -> Vec<usize> {
    match o.skip {
        Skip::Uniform => {
            ddpm_core::space_timesteps(t, &steps.to_string()).expect("1 <= steps <= T was checked")
        }
        skip => {
            let offset = if skip == Skip::Leading { o.steps_offset } else { 0 };
            ddim::timesteps(t, steps, skip).into_iter().map(|k| k + offset).collect()
        }
    }
}

/// The process the sampler walks: all steps, or the respaced subset; with the variance
/// override applied.
pub fn walk(
    opts: &SamplerOptions,
    own: &Options,
    process: &TensorDiffusion,
) -> Result<TensorDiffusion> {
    let mut param = process.param;
    if let Some(v) = own.variance {
        param.var = v;
    }
    let t = process.num_timesteps();
    let kept = kept_steps(t, opts.steps, own);
    let d = if kept.len() == t && kept.iter().enumerate().all(|(i, &k)| i == k) {
        process.diffusion.clone()
    } else {
        process.diffusion.respaced(&kept)?
    };
    Ok(TensorDiffusion::new(d, param, process.device))
}

pub fn sample(
    opts: &SamplerOptions,
    own: &Options,
    process: &TensorDiffusion,
    model: &mut ModelFn,
    x_t: Tensor,
    noise: &mut ImageNoise,
    progress: &mut dyn FnMut(usize),
) -> Result<Tensor> {
    let walk = walk(opts, own, process)?;
    let mut done = 0;
    Ok(walk.p_sample_loop(model, x_t, &mut |_| noise.draw(), opts.clip_x0, &mut |_, _| {
        done += 1;
        progress(done);
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// diffusers' DDPMScheduler spacings at T = 1000, S = 30, written out from
    /// `set_timesteps` (diffusers 0.42.1), and improved-diffusion's even "30".
    #[test]
    fn kept_steps_are_each_references_spacing() {
        let kept = |skip, offset| {
            kept_steps(1000, 30, &Options { skip, steps_offset: offset, ..Default::default() })
        };
        let even = kept(Skip::Uniform, 0);
        assert_eq!((even[0], even[1], even[29]), (0, 34, 999));
        assert_eq!(even, ddpm_core::space_timesteps(1000, "30").unwrap());
        let lead = kept(Skip::Leading, 1);
        assert_eq!((lead[0], lead[1], lead[29]), (1, 34, 958));
        let trail = kept(Skip::Trailing, 0);
        assert_eq!((trail[0], trail[28], trail[29]), (32, 966, 999));
        let lin = kept(Skip::Linspace, 0);
        assert_eq!((lin[1], lin[29]), (34, 999));
        let all = kept_steps(1000, 1000, &Options::default());
        assert!(all.iter().enumerate().all(|(i, &k)| i == k) && all.len() == 1000);
    }

    #[test]
    fn an_offset_off_leading_or_past_t_is_a_one_line_error() {
        let o = Options { skip: Skip::Trailing, steps_offset: 1, ..Default::default() };
        let e = o.validate(1000, 30).unwrap_err().to_string();
        assert!(e.contains("steps_offset 1") && e.contains("trailing"), "{e}");
        let o = Options { skip: Skip::Leading, steps_offset: 43, ..Default::default() };
        let e = o.validate(1000, 30).unwrap_err().to_string();
        assert!(e.contains("last kept step 957 past T - 1 = 999"), "{e}");
        let o = Options { skip: Skip::Leading, steps_offset: 1, ..Default::default() };
        assert!(o.validate(1000, 30).is_ok());
    }
}
