//! Ancestral sampling, Algorithm 2 of Ho et al. 2020: x_{t-1} = mu_theta(x_t, t) + sigma_t z,
//! over all T steps or over the respaced subset of `steps` evenly spaced steps
//! (improved-diffusion's spacing "S"), where the respaced process has
//! beta'_i = 1 - abar_{k_i}/abar_{k_{i-1}} and the network still sees the original t.

use super::{ModelFn, SamplerOptions};
use crate::error::Result;
use crate::noise::ImageNoise;
use ddpm_core::tensor::TensorDiffusion;
use tch::Tensor;

/// The process the sampler walks: all steps, or the respaced subset; with the variance
/// override applied.
pub fn walk(opts: &SamplerOptions, process: &TensorDiffusion) -> Result<TensorDiffusion> {
    let mut param = process.param;
    if let Some(v) = opts.variance {
        param.var = v;
    }
    let d = if opts.steps == process.num_timesteps() {
        process.diffusion.clone()
    } else {
        process.diffusion.respaced_str(&opts.steps.to_string())?
    };
    Ok(TensorDiffusion::new(d, param, process.device))
}

pub fn sample(
    opts: &SamplerOptions,
    process: &TensorDiffusion,
    model: &mut ModelFn,
    x_t: Tensor,
    noise: &mut ImageNoise,
    progress: &mut dyn FnMut(usize),
) -> Result<Tensor> {
    let walk = walk(opts, process)?;
    let mut done = 0;
    Ok(walk.p_sample_loop(model, x_t, &mut |_| noise.draw(), opts.clip_x0, &mut |_, _| {
        done += 1;
        progress(done);
    }))
}
