//! Samplers over a trained noise predictor. Each turns x_T into x_0 with a network that was
//! trained on the discrete steps 0..T-1 of a [`TensorDiffusion`]:
//! - [`ddpm`]: ancestral sampling, Algorithm 2 of Ho et al. 2020, on all T steps or a respaced subset;
//! - [`ddim`]: DDIM (Song, Meng & Ermon 2021, arXiv:2010.02502, eq. 12) with eta and uniform or quadratic skips;
//! - [`dpm_solver`]: DPM-Solver++(2M) (Lu et al. 2022, arXiv:2211.01095, Algorithm 2), multistep, data prediction;
//! - [`heun`]: the probability-flow ODE solved with Heun's second-order method (Karras et al. 2022, arXiv:2206.00364, Algorithm 1);
//! - [`euler`]: the same ODE with Euler's method, and its ancestral variant (k-diffusion's `sample_euler`, `sample_euler_ancestral`).

pub mod ddim;
pub mod ddpm;
pub mod dpm_solver;
pub mod euler;
pub mod heun;
pub mod sigmas;

use crate::error::{Result, SampleError};
use crate::noise::ImageNoise;
use ddpm_core::ModelVar;
use ddpm_core::tensor::TensorDiffusion;
pub use sigmas::SigmaSpacing;
use tch::Tensor;

/// The network as samplers see it: raw output (with variance channels if learned) for x_t at
/// (possibly fractional) original-process times t.
pub type ModelFn<'a> = dyn FnMut(&Tensor, &Tensor) -> Tensor + 'a;

/// Which sampler.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum SamplerKind {
    /// Ancestral sampling (Algorithm 2), T steps unless respaced.
    Ddpm,
    /// DDIM; eta = 0 is deterministic.
    Ddim,
    /// DPM-Solver++(2M), multistep, data prediction.
    #[value(name = "dpm-solver++", alias = "dpmpp", alias = "dpm++")]
    #[serde(rename = "dpm-solver++")]
    DpmSolverPp,
    /// Probability-flow ODE, Heun's second-order method.
    Heun,
    /// Probability-flow ODE, Euler's method on Heun's sigmas (k-diffusion's sample_euler).
    Euler,
    /// Euler down to sigma_down, then fresh noise of std sigma_up (k-diffusion's
    /// sample_euler_ancestral, eta = 1).
    #[value(name = "euler-ancestral", alias = "euler-a")]
    #[serde(rename = "euler-ancestral")]
    EulerAncestral,
}

impl SamplerKind {
    /// Every sampler, in the order tables list them.
    pub const ALL: [SamplerKind; 6] =
        [Self::Ddpm, Self::Ddim, Self::DpmSolverPp, Self::Heun, Self::Euler, Self::EulerAncestral];

    /// The name the command line and output folders use: ddpm, ddim, dpm-solver++, heun,
    /// euler, euler-ancestral.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ddpm => "ddpm",
            Self::Ddim => "ddim",
            Self::DpmSolverPp => "dpm-solver++",
            Self::Heun => "heun",
            Self::Euler => "euler",
            Self::EulerAncestral => "euler-ancestral",
        }
    }

    /// Whether x0 predictions are clipped to [-1, 1] unless asked otherwise: yes for the
    /// ancestral and DDIM samplers (as improved-diffusion and diffusers do), no for the ODE
    /// solvers (whose data prediction would then leave the ODE).
    pub fn clips_by_default(self) -> bool {
        matches!(self, Self::Ddpm | Self::Ddim)
    }

    /// Whether the sampler steps through noise levels sigma ([`sigmas::sigmas`]), so that
    /// [`SigmaSpacing`] applies.
    pub fn steps_in_sigma(self) -> bool {
        matches!(self, Self::Heun | Self::Euler | Self::EulerAncestral)
    }

    /// Refuses a sigma spacing for a sampler that does not step through sigmas.
    pub fn check_sigmas(self, spacing: SigmaSpacing) -> Result<()> {
        if self.steps_in_sigma() {
            return Ok(());
        }
        Err(SampleError::Arg(format!(
            "--sigmas {} applies to heun, euler and euler-ancestral only, not {}",
            spacing.name(),
            self.name()
        )))
    }

    /// The most steps whose network evaluations per image (see
    /// [`SamplerOptions::network_evaluations`]) stay within `nfe`, at least one: Heun's
    /// steps cost two evaluations but the last, the others' one each.
    pub fn steps_for_evaluations(self, nfe: usize) -> usize {
        match self {
            Self::Heun => nfe.div_ceil(2).max(1),
            _ => nfe.max(1),
        }
    }

    /// The usual number of steps: all T for DDPM, 50 for DDIM and the Euler samplers (diffusers'
    /// pipelines' default), 20 for DPM-Solver++, 18 for Heun (35 network evaluations).
    pub fn default_steps(self, t: usize) -> usize {
        match self {
            Self::Ddpm => t,
            Self::Ddim | Self::Euler | Self::EulerAncestral => 50.min(t),
            Self::DpmSolverPp => 20.min(t),
            Self::Heun => 18.min(t),
        }
    }
}

/// DDIM's choice of kept timesteps: the two of the DDIM paper's code base and improved-diffusion,
/// and diffusers' three `timestep_spacing`s (Lin et al. 2024, arXiv:2305.08891, Table 2),
/// which also step as diffusers' `DDIMScheduler.step` does (see [`ddim::timesteps`]).
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Skip {
    /// range(0, T, s) with the smallest integer stride s giving S steps: improved-diffusion's
    /// `ddimS`; the same as diffusers' "leading" when S divides T.
    #[default]
    Uniform,
    /// (linspace(0, sqrt(0.8 T), S))^2, the DDIM paper's CIFAR-10 choice.
    Quadratic,
    /// diffusers' "leading": i (T // S) + steps_offset for i < S (its DDIM default).
    Leading,
    /// diffusers' "trailing": round(arange(T, 0, -T/S)) - 1, so the first step is T - 1.
    Trailing,
    /// diffusers' "linspace": round(linspace(0, T - 1, S)).
    Linspace,
}

impl Skip {
    /// The name the command line and the run config use.
    pub fn name(self) -> &'static str {
        match self {
            Self::Uniform => "uniform",
            Self::Quadratic => "quadratic",
            Self::Leading => "leading",
            Self::Trailing => "trailing",
            Self::Linspace => "linspace",
        }
    }

    /// diffusers' `timestep_spacing` that this is, if any.
    pub fn diffusers_spacing(self) -> Option<&'static str> {
        matches!(self, Self::Leading | Self::Trailing | Self::Linspace).then(|| self.name())
    }

    /// Whether diffusers' `steps_offset` applies (added to every kept step).
    pub fn takes_steps_offset(self) -> bool {
        matches!(self, Self::Uniform | Self::Leading)
    }
}

/// DPM-Solver++'s time-step placement.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum TimeSteps {
    /// Uniform in logSNR lambda = log(alpha/sigma) (Lu et al.'s recommendation for images).
    LogSnr,
    /// round(linspace(T-1, 0, S+1))[:S], diffusers' default "linspace" spacing.
    Uniform,
}

/// What DDIM does with its eps prediction when the x0 prediction was clipped (the references
/// differ; where the network's x0 stays inside [-1, 1] both are the same).
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum ClipConvention {
    /// improved-diffusion's `ddim_sample`: eps is re-derived from the clipped x0,
    /// eps = (x_t - sqrt(abar_t) x0)/sqrt(1 - abar_t), so that (x0, eps) stay consistent with
    /// x_t (diffusers' `use_clipped_model_output=True`).
    #[default]
    ImprovedDiffusion,
    /// diffusers' `DDIMScheduler.step` as `DDIMPipeline` calls it: x0 is clipped and the model's
    /// own eps is kept for the direction term.
    Diffusers,
}

impl ClipConvention {
    /// The name the command line and the run config use.
    pub fn name(self) -> &'static str {
        match self {
            Self::ImprovedDiffusion => "improved-diffusion",
            Self::Diffusers => "diffusers",
        }
    }
}

fn default_true() -> bool {
    true
}

/// Everything that selects and tunes a sampler.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SamplerOptions {
    pub kind: SamplerKind,
    /// Network evaluations (Heun: steps, each two evaluations but the last).
    pub steps: usize,
    /// DDIM's eta.
    pub eta: f64,
    pub skip: Skip,
    pub time_steps: TimeSteps,
    /// DDPM's variance, overriding the model's configured one (fixed types only).
    pub variance: Option<ModelVar>,
    /// Clip predicted x0 to [-1, 1] (DDPM and DDIM; the ODE solvers use it for their data prediction).
    pub clip_x0: bool,
    /// DDIM's eps after clipping (see [`ClipConvention`]); the other samplers use x0 only.
    #[serde(default)]
    pub clip_convention: ClipConvention,
    /// DDIM's last step goes to abar = 1, the data (improved-diffusion; diffusers'
    /// `set_alpha_to_one = true`), or else to abar_0 of the first kept step's process
    /// (`set_alpha_to_one = false`).
    #[serde(default = "default_true")]
    pub final_abar_one: bool,
    /// Added to DDIM's uniform or leading kept steps (diffusers' `steps_offset` of its
    /// "leading" spacing).
    #[serde(default)]
    pub steps_offset: usize,
    /// The noise levels of the sigma-space solvers (heun, euler, euler-ancestral).
    #[serde(default)]
    pub sigmas: SigmaSpacing,
    /// Classifier-free guidance scale w: eps = eps_uncond + w (eps_cond - eps_uncond); 1 = none.
    pub guidance_scale: f64,
}

impl SamplerOptions {
    pub fn new(kind: SamplerKind, num_timesteps: usize) -> Self {
        Self {
            kind,
            steps: kind.default_steps(num_timesteps),
            eta: 0.0,
            skip: Skip::Uniform,
            time_steps: TimeSteps::LogSnr,
            variance: None,
            clip_x0: true,
            clip_convention: ClipConvention::ImprovedDiffusion,
            final_abar_one: true,
            steps_offset: 0,
            sigmas: SigmaSpacing::Karras,
            guidance_scale: 1.0,
        }
    }

    /// Checks the options against a process of T steps; errors echo the bad value.
    pub fn validate(&self, num_timesteps: usize) -> Result<()> {
        let t = num_timesteps;
        if self.steps == 0 || self.steps > t {
            return Err(SampleError::Arg(format!(
                "--steps must be in 1..=T = {t}, got {}",
                self.steps
            )));
        }
        if !(0.0..=1.0).contains(&self.eta) {
            return Err(SampleError::Arg(format!("--eta must be in [0, 1], got {}", self.eta)));
        }
        if self.kind != SamplerKind::Ddim && self.eta != 0.0 {
            return Err(SampleError::Arg(format!(
                "--eta applies to ddim only, not {}",
                self.kind.name()
            )));
        }
        if self.sigmas != SigmaSpacing::Karras {
            self.kind.check_sigmas(self.sigmas)?;
        }
        if let Some(v) = self.variance
            && v.is_learned()
        {
            return Err(SampleError::Arg("--variance takes fixed_small or fixed_large".into()));
        }
        if self.steps_offset > 0 {
            if self.kind != SamplerKind::Ddim || !self.skip.takes_steps_offset() {
                return Err(SampleError::Arg(format!(
                    "steps_offset {} applies to ddim with --skip uniform or leading only (diffusers' \
                     leading spacing), not {}",
                    self.steps_offset,
                    self.skip.name()
                )));
            }
            let last = ddim::timesteps(t, self.steps, self.skip).last().copied().unwrap_or(0);
            if last + self.steps_offset >= t {
                return Err(SampleError::Arg(format!(
                    "steps_offset {} moves ddim's last kept step {last} past T - 1 = {}",
                    self.steps_offset,
                    t - 1
                )));
            }
        }
        if !(self.guidance_scale >= 0.0 && self.guidance_scale.is_finite()) {
            return Err(SampleError::Arg(format!(
                "--guidance must be >= 0, got {}",
                self.guidance_scale
            )));
        }
        Ok(())
    }

    /// How many network evaluations a run of this sampler makes per image.
    pub fn network_evaluations(&self) -> usize {
        match self.kind {
            SamplerKind::Heun => 2 * self.steps - 1,
            _ => self.steps,
        }
    }
}

/// Runs the configured sampler from `x_t` (noise at the first step) to x_0.
/// `noise` supplies per-image fresh noise for stochastic steps; `progress(i)` is called after
/// each network evaluation.
pub fn sample(
    opts: &SamplerOptions,
    process: &TensorDiffusion,
    model: &mut ModelFn,
    x_t: Tensor,
    noise: &mut ImageNoise,
    progress: &mut dyn FnMut(usize),
) -> Result<Tensor> {
    opts.validate(process.num_timesteps())?;
    let _guard = tch::no_grad_guard();
    Ok(match opts.kind {
        SamplerKind::Ddpm => ddpm::sample(opts, process, model, x_t, noise, progress)?,
        SamplerKind::Ddim => ddim::sample(opts, process, model, x_t, noise, progress),
        SamplerKind::DpmSolverPp => dpm_solver::sample(opts, process, model, x_t, progress),
        SamplerKind::Heun => heun::sample(opts, process, model, x_t, progress),
        SamplerKind::Euler => {
            euler::sample(euler::Variant::Ode, opts, process, model, x_t, noise, progress)
        }
        SamplerKind::EulerAncestral => {
            euler::sample(euler::Variant::Ancestral, opts, process, model, x_t, noise, progress)
        }
    })
}

/// abar at continuous time t in [0, T-1]: piecewise-linear interpolation of log abar over the
/// discrete steps (as DPM-Solver's discrete-time noise schedule does).
pub fn abar_at(process: &TensorDiffusion, t: f64) -> f64 {
    let ac = &process.diffusion.alphas_cumprod;
    let t = t.clamp(0.0, (ac.len() - 1) as f64);
    let (i, f) = (t.floor() as usize, t - t.floor());
    if i + 1 >= ac.len() {
        return ac[ac.len() - 1];
    }
    (ac[i].ln() * (1.0 - f) + ac[i + 1].ln() * f).exp()
}

/// The continuous t in [0, T-1] where log abar takes the value `log_abar` (inverse of [`abar_at`]).
pub fn t_of_log_abar(process: &TensorDiffusion, log_abar: f64) -> f64 {
    let ac = &process.diffusion.alphas_cumprod;
    let la = |i: usize| ac[i].ln();
    if log_abar >= la(0) {
        return 0.0;
    }
    let last = ac.len() - 1;
    if log_abar <= la(last) {
        return last as f64;
    }
    // log abar decreases strictly: binary search the bracket.
    let (mut lo, mut hi) = (0usize, last);
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        if la(mid) >= log_abar { lo = mid } else { hi = mid }
    }
    lo as f64 + (la(lo) - log_abar) / (la(lo) - la(hi))
}

/// Model output split into (eps, x0) predictions at continuous time t with abar = `abar`;
/// with `clip`, x0 is clipped to [-1, 1] and eps follows `convention`.
pub fn eps_and_x0(
    process: &TensorDiffusion,
    output: &Tensor,
    x: &Tensor,
    abar: f64,
    clip: bool,
    convention: ClipConvention,
) -> (Tensor, Tensor) {
    let c = x.size()[1];
    let (mean_out, _) = process.split_output(output, c);
    let (sa, s1a) = (abar.sqrt(), (1.0 - abar).sqrt());
    let (eps, x0) = match process.param.mean {
        ddpm_core::ModelMean::Eps => {
            let x0 = (x - &mean_out * s1a) / sa;
            (mean_out, x0)
        }
        ddpm_core::ModelMean::X0 => ((x - &mean_out * sa) / s1a, mean_out),
        ddpm_core::ModelMean::V => (x * s1a + &mean_out * sa, x * sa - &mean_out * s1a),
    };
    if !clip {
        return (eps, x0);
    }
    let x0c = x0.clamp(-1.0, 1.0);
    match convention {
        ClipConvention::ImprovedDiffusion => ((x - &x0c * sa) / s1a, x0c),
        ClipConvention::Diffusers => (eps, x0c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The steps for a budget of network evaluations spend at most the budget, and one
        /// step more would overspend it (one step is the least any sampler takes).
        #[test]
        fn steps_for_evaluations_is_the_most_the_budget_buys(nfe in 1usize..2000, k in 0usize..6) {
            let kind = SamplerKind::ALL[k];
            let cost = |steps| {
                let mut o = SamplerOptions::new(kind, 4000);
                o.steps = steps;
                o.network_evaluations()
            };
            let s = kind.steps_for_evaluations(nfe);
            prop_assert!(cost(s) <= nfe);
            prop_assert!(cost(s + 1) > nfe);
        }
    }

    #[test]
    fn all_lists_every_sampler_the_command_line_takes() {
        use clap::ValueEnum;
        assert_eq!(SamplerKind::value_variants(), &SamplerKind::ALL[..]);
    }

    #[test]
    fn heun_spends_two_evaluations_a_step_but_the_last() {
        let steps: Vec<usize> =
            [5, 10, 20, 50].map(|n| SamplerKind::Heun.steps_for_evaluations(n)).to_vec();
        assert_eq!(steps, vec![3, 5, 10, 25]);
    }
}
