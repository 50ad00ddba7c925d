//! DDIM (Song, Meng & Ermon 2021, arXiv:2010.02502), eq. (12):
//! x_{t'} = sqrt(abar_{t'}) x0^ + sqrt(1 - abar_{t'} - sigma^2) eps^ + sigma z,
//! sigma = eta sqrt((1 - abar_{t'})/(1 - abar_t)) sqrt(1 - abar_t/abar_{t'}),
//! over kept steps t > t' (after the last, abar = 1, or abar_0 where diffusers'
//! `set_alpha_to_one = false` is asked for). eta = 0 is deterministic. Where x0^ is clipped,
//! eps^ follows the options' [`super::ClipConvention`].

use super::{ModelFn, SamplerOptions, Skip, eps_and_x0};
use crate::noise::ImageNoise;
use ddpm_core::space_timesteps;
use ddpm_core::tensor::TensorDiffusion;
use tch::Tensor;

/// Kept timesteps, ascending. Uniform: improved-diffusion's `ddimS` integer stride
/// (range(0, T, T/S) when S divides T, the same as diffusers' DDIMScheduler default), falling
/// back to diffusers' floor(T/S) stride when no integer stride gives exactly S steps.
/// Quadratic: int((linspace(0, sqrt(0.8 T), S))^2), the DDIM paper's CIFAR-10 choice; where
/// the squares of neighbouring points floor to the same step (near t = 0 for S above about
/// sqrt(0.8 T)), each is moved to one past its predecessor, so that S steps are S distinct
/// network evaluations (the paper's code evaluates the duplicates, each a step of size zero).
pub fn timesteps(num_timesteps: usize, steps: usize, skip: Skip) -> Vec<usize> {
    let t = num_timesteps;
    match skip {
        Skip::Uniform => space_timesteps(t, &format!("ddim{steps}"))
            .unwrap_or_else(|_| (0..steps).map(|i| i * (t / steps)).collect()),
        Skip::Quadratic => {
            let top = (0.8 * t as f64).sqrt();
            let mut v: Vec<usize> = Vec::with_capacity(steps);
            for i in 0..steps {
                let s = if steps == 1 { 0.0 } else { top * i as f64 / (steps - 1) as f64 };
                let step = (s * s) as usize;
                v.push(match v.last() {
                    Some(&prev) if step <= prev => prev + 1,
                    _ => step,
                });
            }
            v
        }
    }
}

pub fn sample(
    opts: &SamplerOptions,
    process: &TensorDiffusion,
    model: &mut ModelFn,
    x_t: Tensor,
    noise: &mut ImageNoise,
    progress: &mut dyn FnMut(usize),
) -> Tensor {
    let kept: Vec<usize> = timesteps(process.num_timesteps(), opts.steps, opts.skip)
        .into_iter()
        .map(|t| t + opts.steps_offset)
        .collect();
    sample_at(&kept, opts, process, model, x_t, noise, progress)
}

/// DDIM over given kept timesteps (ascending; `opts.steps`, `opts.skip` and `opts.steps_offset`
/// unused): the
/// placement of another code base, e.g. denoising-diffusion-pytorch's
/// `linspace(-1, T-1, S+1)` steps, for oracle comparisons.
pub fn sample_at(
    kept: &[usize],
    opts: &SamplerOptions,
    process: &TensorDiffusion,
    model: &mut ModelFn,
    x_t: Tensor,
    noise: &mut ImageNoise,
    progress: &mut dyn FnMut(usize),
) -> Tensor {
    let ac = &process.diffusion.alphas_cumprod;
    let batch = x_t.size()[0];
    let mut x = x_t;
    for (done, i) in (0..kept.len()).rev().enumerate() {
        let t = kept[i];
        let abar_prev = match i {
            0 if opts.final_abar_one => 1.0,
            0 => ac[0],
            _ => ac[kept[i - 1]],
        };
        let abar = ac[t];
        let output = model(&x, &process.network_time(t as f64, batch));
        let (eps, x0) = eps_and_x0(process, &output, &x, abar, opts.clip_x0, opts.clip_convention);
        let sigma =
            opts.eta * ((1.0 - abar_prev) / (1.0 - abar)).sqrt() * (1.0 - abar / abar_prev).sqrt();
        let mut next =
            x0 * abar_prev.sqrt() + eps * (1.0 - abar_prev - sigma * sigma).max(0.0).sqrt();
        if sigma > 0.0 && i > 0 {
            next += noise.draw().to_kind(x.kind()) * sigma;
        }
        x = next;
        progress(done + 1);
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_skip_is_improved_diffusion_and_diffusers_spacing() {
        let ts = timesteps(1000, 20, Skip::Uniform);
        assert_eq!(ts, (0..1000).step_by(50).collect::<Vec<_>>());
        assert_eq!(*ts.last().unwrap(), 950);
        // 999 steps from 1000 has no integer stride: diffusers' floor(T/S) = 1.
        assert_eq!(timesteps(1000, 999, Skip::Uniform).len(), 999);
    }

    #[test]
    fn quadratic_skip_is_denser_near_zero() {
        let ts = timesteps(1000, 50, Skip::Quadratic);
        assert_eq!(ts[0], 0);
        assert!(*ts.last().unwrap() <= 800);
        assert!(ts[2] - ts[1] < ts[ts.len() - 1] - ts[ts.len() - 2]);
    }

    /// Regression: 50 quadratic steps of T = 1000 floor 0.33 and 0 to the same step, and
    /// the duplicate was dropped, so `--steps 50` ran 49 network evaluations.
    #[test]
    fn quadratic_skip_keeps_as_many_distinct_steps_as_asked() {
        for (t, s) in [(1000, 50), (1000, 100), (1000, 500), (100, 60), (100, 100), (4000, 1000)] {
            let ts = timesteps(t, s, Skip::Quadratic);
            assert_eq!(ts.len(), s, "T = {t}, S = {s}");
            assert!(ts.windows(2).all(|w| w[0] < w[1]), "T = {t}, S = {s}: {ts:?}");
            assert!(*ts.last().unwrap() < t);
        }
        // Where the paper's points are distinct, they are kept as they are.
        let paper: Vec<usize> =
            (0..20).map(|i| ((800f64).sqrt() * i as f64 / 19.0).powi(2) as usize).collect();
        assert_eq!(timesteps(1000, 20, Skip::Quadratic), paper);
    }
}
