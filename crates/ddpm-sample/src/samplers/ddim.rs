//! DDIM (Song, Meng & Ermon 2021, arXiv:2010.02502), eq. (12):
//! x_{t'} = sqrt(abar_{t'}) x0^ + sqrt(1 - abar_{t'} - sigma^2) eps^ + sigma z,
//! sigma = eta sqrt((1 - abar_{t'})/(1 - abar_t)) sqrt(1 - abar_t/abar_{t'}),
//! over kept steps t > t' (after the last, abar = 1, or abar_0 where diffusers'
//! `set_alpha_to_one = false` is asked for). eta = 0 is deterministic. Where x0^ is clipped,
//! eps^ follows the options' [`super::ClipConvention`].

use super::{ClipConvention, ModelFn, SamplerOptions, Skip, eps_and_x0};
use crate::error::{Result, SampleError};
use crate::noise::ImageNoise;
use ddpm_core::space_timesteps;
use ddpm_core::tensor::TensorDiffusion;
use tch::Tensor;

fn default_true() -> bool {
    true
}

/// DDIM's own options.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Options {
    /// eta: 0 is deterministic, 1 has DDPM's posterior variance.
    #[serde(default)]
    pub eta: f64,
    #[serde(default)]
    pub skip: Skip,
    /// What eps becomes when x0 was clipped (see [`ClipConvention`]).
    #[serde(default)]
    pub clip_convention: ClipConvention,
    /// The last step goes to abar = 1, the data (improved-diffusion; diffusers'
    /// `set_alpha_to_one = true`), or else to abar_0 of the first kept step's process
    /// (`set_alpha_to_one = false`).
    #[serde(default = "default_true")]
    pub final_abar_one: bool,
    /// Added to the uniform or leading kept steps (diffusers' `steps_offset` of its
    /// "leading" spacing).
    #[serde(default)]
    pub steps_offset: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            eta: 0.0,
            skip: Skip::Uniform,
            clip_convention: ClipConvention::ImprovedDiffusion,
            final_abar_one: true,
            steps_offset: 0,
        }
    }
}

impl Options {
    pub fn validate(&self, t: usize, steps: usize) -> Result<()> {
        if !(0.0..=1.0).contains(&self.eta) {
            return Err(SampleError::Arg(format!("--eta must be in [0, 1], got {}", self.eta)));
        }
        check_steps_offset(
            "ddim",
            &[Skip::Uniform, Skip::Leading],
            self.skip,
            self.steps_offset,
            t,
            steps,
        )
    }
}

/// diffusers' `steps_offset` for `sampler`: it applies to the spacings `takers` only (those
/// of diffusers' "leading"), and must leave the last of the `steps` kept steps within T - 1.
pub(super) fn check_steps_offset(
    sampler: &str,
    takers: &[Skip],
    skip: Skip,
    offset: usize,
    t: usize,
    steps: usize,
) -> Result<()> {
    if offset == 0 {
        return Ok(());
    }
    if !takers.contains(&skip) {
        let names: Vec<&str> = takers.iter().map(|s| s.name()).collect();
        return Err(SampleError::Arg(format!(
            "steps_offset {offset} applies to {sampler} with --skip {} only (diffusers' leading \
             spacing), not {}",
            names.join(" or "),
            skip.name()
        )));
    }
    let last = timesteps(t, steps, skip).last().copied().unwrap_or(0);
    if last + offset >= t {
        return Err(SampleError::Arg(format!(
            "steps_offset {offset} moves {sampler}'s last kept step {last} past T - 1 = {}",
            t - 1
        )));
    }
    Ok(())
}

/// Kept timesteps, ascending (`steps_offset` not added). Uniform: improved-diffusion's `ddimS`
/// integer stride (range(0, T, T/S) when S divides T, the same as diffusers' "leading"),
/// falling back to diffusers' floor(T/S) stride when no integer stride gives exactly S steps.
/// Quadratic: int((linspace(0, sqrt(0.8 T), S))^2), the DDIM paper's CIFAR-10 choice; where
/// the squares of neighbouring points floor to the same step (near t = 0 for S above about
/// sqrt(0.8 T)), each is moved to one past its predecessor, so that S steps are S distinct
/// network evaluations (the paper's code evaluates the duplicates, each a step of size zero).
/// Leading, trailing and linspace: diffusers' `DDIMScheduler.set_timesteps`, with numpy's
/// float arithmetic and its round-half-to-even.
pub fn timesteps(num_timesteps: usize, steps: usize, skip: Skip) -> Vec<usize> {
    let t = num_timesteps;
    match skip {
        Skip::Uniform => space_timesteps(t, &format!("ddim{steps}"))
            .unwrap_or_else(|_| timesteps(t, steps, Skip::Leading)),
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
        Skip::Leading => (0..steps).map(|i| i * (t / steps)).collect(),
        Skip::Trailing => {
            // np.arange(T, 0, -T/S): ceil(T / (T/S)) values T - i (T/S), then rounded, minus 1.
            let ratio = t as f64 / steps as f64;
            let n = (t as f64 / ratio).ceil() as usize;
            let mut v: Vec<usize> = (0..n)
                .map(|i| (t as f64 - i as f64 * ratio).round_ties_even() as usize - 1)
                .collect();
            v.reverse();
            v
        }
        Skip::Linspace => {
            // np.linspace(0, T - 1, S): i (T - 1)/(S - 1), the last exactly T - 1.
            if steps == 1 {
                return vec![0];
            }
            let step = (t - 1) as f64 / (steps - 1) as f64;
            (0..steps)
                .map(|i| {
                    if i + 1 == steps {
                        t - 1
                    } else {
                        (i as f64 * step).round_ties_even() as usize
                    }
                })
                .collect()
        }
    }
}

/// The (t, t') pairs DDIM steps through, from x_T down: t' is the previous kept step (None
/// after the last: abar = 1, or abar_0). diffusers' spacings step as its `DDIMScheduler.step`
/// does, to t' = t - T // S (None below 0), which is not the next kept step where S does not
/// divide T ("trailing" at T = 1000, S = 30: from 966 to 933, then evaluated at 932).
pub fn step_pairs(
    num_timesteps: usize,
    steps: usize,
    own: &Options,
) -> Vec<(usize, Option<usize>)> {
    let offset = if own.skip.takes_steps_offset() { own.steps_offset } else { 0 };
    let kept: Vec<usize> =
        timesteps(num_timesteps, steps, own.skip).into_iter().map(|t| t + offset).collect();
    if own.skip.diffusers_spacing().is_none() {
        return to_previous_kept(&kept);
    }
    let stride = num_timesteps / steps;
    kept.iter().rev().map(|&t| (t, t.checked_sub(stride))).collect()
}

/// Each kept step (ascending) paired with the kept step before it, from the last down.
fn to_previous_kept(kept: &[usize]) -> Vec<(usize, Option<usize>)> {
    (0..kept.len()).rev().map(|i| (kept[i], i.checked_sub(1).map(|j| kept[j]))).collect()
}

pub fn sample(
    opts: &SamplerOptions,
    own: &Options,
    process: &TensorDiffusion,
    model: &mut ModelFn,
    x_t: Tensor,
    noise: &mut ImageNoise,
    progress: &mut dyn FnMut(usize),
) -> Tensor {
    let pairs = step_pairs(process.num_timesteps(), opts.steps, own);
    sample_pairs(&pairs, opts, own, process, model, x_t, noise, progress)
}

/// DDIM over given kept timesteps (ascending; `opts.steps`, `own.skip` and `own.steps_offset`
/// unused), each stepping to the one before: the placement of another code base, e.g.
/// denoising-diffusion-pytorch's `linspace(-1, T-1, S+1)` steps, for oracle comparisons.
#[allow(clippy::too_many_arguments)]
pub fn sample_at(
    kept: &[usize],
    opts: &SamplerOptions,
    own: &Options,
    process: &TensorDiffusion,
    model: &mut ModelFn,
    x_t: Tensor,
    noise: &mut ImageNoise,
    progress: &mut dyn FnMut(usize),
) -> Tensor {
    sample_pairs(&to_previous_kept(kept), opts, own, process, model, x_t, noise, progress)
}

/// DDIM's update, eq. (12), from t to t' for each pair (t, t') in order.
#[allow(clippy::too_many_arguments)]
fn sample_pairs(
    pairs: &[(usize, Option<usize>)],
    opts: &SamplerOptions,
    own: &Options,
    process: &TensorDiffusion,
    model: &mut ModelFn,
    x_t: Tensor,
    noise: &mut ImageNoise,
    progress: &mut dyn FnMut(usize),
) -> Tensor {
    let ac = &process.diffusion.alphas_cumprod;
    let batch = x_t.size()[0];
    let mut x = x_t;
    for (done, &(t, prev)) in pairs.iter().enumerate() {
        let abar_prev = match prev {
            None if own.final_abar_one => 1.0,
            None => ac[0],
            Some(p) => ac[p],
        };
        let abar = ac[t];
        let output = model(&x, &process.network_time(t as f64, batch));
        let (eps, x0) = eps_and_x0(process, &output, &x, abar, opts.clip_x0, own.clip_convention);
        let sigma =
            own.eta * ((1.0 - abar_prev) / (1.0 - abar)).sqrt() * (1.0 - abar / abar_prev).sqrt();
        let mut next =
            x0 * abar_prev.sqrt() + eps * (1.0 - abar_prev - sigma * sigma).max(0.0).sqrt();
        if sigma > 0.0 && done + 1 < pairs.len() {
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

    /// diffusers' spacings at T = 1000, written out from `DDIMScheduler.set_timesteps`
    /// (diffusers 0.42.1), where S = 30 does not divide T and improved-diffusion's stride (34)
    /// differs from diffusers' leading stride (33).
    #[test]
    fn diffusers_spacings_are_diffusers_timesteps() {
        let lead = timesteps(1000, 30, Skip::Leading);
        assert_eq!((lead[1], lead[29]), (33, 957));
        let uniform = timesteps(1000, 30, Skip::Uniform);
        assert_eq!((uniform[1], uniform[29]), (34, 986));
        let trail = timesteps(1000, 30, Skip::Trailing);
        assert_eq!(trail.len(), 30);
        assert_eq!(&trail[26..], &[899, 932, 966, 999]);
        assert_eq!(trail[0], 32);
        let lin = timesteps(1000, 30, Skip::Linspace);
        assert_eq!((lin[0], lin[1], lin[2], lin[29]), (0, 34, 69, 999));
        // numpy rounds half to even: 1000 - 62.5 k at S = 16 ends in .5 every other step.
        let trail16 = timesteps(1000, 16, Skip::Trailing);
        assert_eq!(&trail16[13..], &[874, 937, 999]);
        assert_eq!(trail16[12], 811);
        for skip in [Skip::Leading, Skip::Trailing, Skip::Linspace] {
            for s in [1, 7, 15, 50, 999, 1000] {
                let ts = timesteps(1000, s, skip);
                assert_eq!(ts.len(), s, "{skip:?} S={s}");
                assert!(
                    ts.windows(2).all(|w| w[0] < w[1]) && *ts.last().unwrap() < 1000,
                    "{skip:?} S={s}"
                );
            }
        }
    }

    #[test]
    fn diffusers_spacings_step_by_the_fixed_stride_and_ours_to_the_kept_step_before() {
        let mut own = Options { skip: Skip::Trailing, ..Default::default() };
        let pairs = step_pairs(1000, 30, &own);
        assert_eq!(&pairs[..2], &[(999, Some(966)), (966, Some(933))]);
        assert_eq!(pairs[29], (32, None));
        own.skip = Skip::Uniform;
        let pairs = step_pairs(1000, 30, &own);
        assert_eq!(&pairs[..2], &[(986, Some(952)), (952, Some(918))]);
        assert_eq!(pairs[29], (0, None));
        own.skip = Skip::Leading;
        own.steps_offset = 1;
        let pairs = step_pairs(1000, 30, &own);
        assert_eq!((pairs[0], pairs[28], pairs[29]), ((958, Some(925)), (34, Some(1)), (1, None)));
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
