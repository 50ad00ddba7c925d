//! Samplers over a trained noise predictor. Each turns x_T into x_0 with a network that was
//! trained on the discrete steps 0..T-1 of a [`TensorDiffusion`]:
//! - [`ddpm`]: ancestral sampling, Algorithm 2 of Ho et al. 2020, on all T steps or a respaced
//!   subset (improved-diffusion's even spacing, or diffusers' leading, trailing and linspace);
//! - [`ddim`]: DDIM (Song, Meng & Ermon 2021, arXiv:2010.02502, eq. 12) with eta and uniform or quadratic skips;
//! - [`dpm_solver`]: DPM-Solver++(2M) (Lu et al. 2022, arXiv:2211.01095, Algorithm 2), multistep, data prediction;
//! - [`sde`]: DPM-Solver++(2M) SDE and (3M) SDE (k-diffusion's `sample_dpmpp_2m_sde`, `sample_dpmpp_3m_sde`);
//! - [`unipc`]: UniPC (Zhao et al. 2023, arXiv:2302.04867), B(h) = e^h - 1 ("bh2"), data prediction;
//! - [`heun`]: the probability-flow ODE solved with Heun's second-order method (Karras et al. 2022, arXiv:2206.00364, Algorithm 1);
//! - [`euler`]: the same ODE with Euler's method, and its ancestral variant (k-diffusion's `sample_euler`, `sample_euler_ancestral`).
//!
//! [`SamplerOptions`] holds what every sampler shares (steps, clipping, guidance) and a
//! [`Solver`]: one variant per sampler, carrying that sampler's own options (defined in its
//! file), so that a setting which does not apply to a sampler cannot be set on it.

pub mod ddim;
pub mod ddpm;
pub mod dpm_solver;
pub mod euler;
pub mod heun;
pub mod sde;
pub mod sigmas;
pub mod unipc;

use crate::error::{Result, SampleError};
use crate::noise::ImageNoise;
use ddpm_core::tensor::TensorDiffusion;
pub use sigmas::{SigmaOptions, SigmaSpacing};
use tch::Tensor;

/// The network as samplers see it: raw output (with variance channels if learned) for x_t at
/// (possibly fractional) original-process times t.
pub type ModelFn<'a> = dyn FnMut(&Tensor, &Tensor) -> Tensor + 'a;

/// Which sampler: the names the command line, configs, output folders and tables use.
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
    /// DPM-Solver++(2M) SDE (k-diffusion's sample_dpmpp_2m_sde, eta = 1, midpoint; diffusers'
    /// algorithm_type = "sde-dpmsolver++").
    #[value(name = "dpm-solver++-sde", alias = "dpmpp-2m-sde", alias = "dpm-solver++-2m-sde")]
    #[serde(rename = "dpm-solver++-sde")]
    DpmSolverPpSde,
    /// DPM-Solver++(3M) SDE (k-diffusion's sample_dpmpp_3m_sde, eta = 1).
    #[value(name = "dpm-solver++-3m-sde", alias = "dpmpp-3m-sde")]
    #[serde(rename = "dpm-solver++-3m-sde")]
    DpmSolverPp3mSde,
    /// UniPC, predictor-corrector multistep (diffusers' UniPCMultistepScheduler, bh2).
    Unipc,
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
    pub const ALL: [SamplerKind; 9] = [
        Self::Ddpm,
        Self::Ddim,
        Self::DpmSolverPp,
        Self::DpmSolverPpSde,
        Self::DpmSolverPp3mSde,
        Self::Unipc,
        Self::Heun,
        Self::Euler,
        Self::EulerAncestral,
    ];

    /// The name the command line and output folders use: ddpm, ddim, dpm-solver++,
    /// dpm-solver++-sde, dpm-solver++-3m-sde, unipc, heun, euler, euler-ancestral.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ddpm => "ddpm",
            Self::Ddim => "ddim",
            Self::DpmSolverPp => "dpm-solver++",
            Self::DpmSolverPpSde => "dpm-solver++-sde",
            Self::DpmSolverPp3mSde => "dpm-solver++-3m-sde",
            Self::Unipc => "unipc",
            Self::Heun => "heun",
            Self::Euler => "euler",
            Self::EulerAncestral => "euler-ancestral",
        }
    }

    /// Whether the sampler steps through the noise levels of [`sigmas::sigmas`], so that
    /// [`SigmaSpacing`] places them (its options are [`SigmaOptions`]).
    pub fn steps_in_sigma(self) -> bool {
        Solver::new(self).sigma_options().is_some()
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
    /// pipelines' default), 20 for the DPM-Solver++ family and UniPC, 18 for Heun (35 network
    /// evaluations).
    pub fn default_steps(self, t: usize) -> usize {
        match self {
            Self::Ddpm => t,
            Self::Ddim | Self::Euler | Self::EulerAncestral => 50.min(t),
            Self::DpmSolverPp | Self::DpmSolverPpSde | Self::DpmSolverPp3mSde | Self::Unipc => {
                20.min(t)
            }
            Self::Heun => 18.min(t),
        }
    }
}

/// The kept timesteps of the discrete-time samplers (DDIM, and DDPM when respaced): the two
/// of the DDIM paper's code base and improved-diffusion, and diffusers' three
/// `timestep_spacing`s (Lin et al. 2024, arXiv:2305.08891, Table 2), which also step as
/// diffusers' schedulers do (see [`ddim::timesteps`], [`ddpm::kept_steps`]).
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
    /// DDIM: range(0, T, s) with the smallest integer stride s giving S steps, improved-diffusion's
    /// `ddimS` (the same as diffusers' "leading" when S divides T). DDPM: improved-diffusion's
    /// `timestep_respacing = "S"`, S steps evenly spaced from 0 to T - 1.
    #[default]
    Uniform,
    /// (linspace(0, sqrt(0.8 T), S))^2, the DDIM paper's CIFAR-10 choice.
    Quadratic,
    /// diffusers' "leading": i (T // S) + steps_offset for i < S (its DDIM and DDPM default).
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

    /// Whether diffusers' `steps_offset` applies to DDIM's kept steps (added to every one).
    pub fn takes_steps_offset(self) -> bool {
        matches!(self, Self::Uniform | Self::Leading)
    }
}

/// Where the multistep solvers in time (DPM-Solver++(2M), UniPC) evaluate the network.
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
pub enum TimeSteps {
    /// Uniform in logSNR lambda = log(alpha/sigma) (Lu et al.'s recommendation for images);
    /// the same noise levels as [`SigmaSpacing::Exponential`] (sigma = e^{-lambda}).
    #[default]
    LogSnr,
    /// round(linspace(T-1, 0, S+1))[:S], diffusers' default "linspace" spacing.
    Uniform,
    /// Karras et al. 2022's rho = 7 noise levels ([`SigmaSpacing::Karras`]; diffusers'
    /// `use_karras_sigmas`), at their continuous times.
    Karras,
}

impl TimeSteps {
    /// The name the command line uses.
    pub fn name(self) -> &'static str {
        match self {
            Self::LogSnr => "log-snr",
            Self::Uniform => "uniform",
            Self::Karras => "karras",
        }
    }

    /// The placement that puts the network at `spacing`'s noise levels (`--sigmas` on a
    /// multistep solver in time): Karras is Karras, exponential is uniform in logSNR.
    pub fn of_sigmas(spacing: SigmaSpacing) -> Self {
        match spacing {
            SigmaSpacing::Karras => Self::Karras,
            SigmaSpacing::Exponential => Self::LogSnr,
        }
    }
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

/// A sampler with its own options: one variant per [`SamplerKind`], each variant's options
/// defined in its sampler's file. Serialised with the sampler's name under `kind`, beside
/// the variant's fields (the flat form manifests were written in before, which still reads:
/// fields of other samplers are ignored).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind")]
pub enum Solver {
    #[serde(rename = "ddpm")]
    Ddpm(ddpm::Options),
    #[serde(rename = "ddim")]
    Ddim(ddim::Options),
    #[serde(rename = "dpm-solver++")]
    DpmSolverPp(dpm_solver::Options),
    #[serde(rename = "dpm-solver++-sde")]
    DpmSolverPpSde(SigmaOptions),
    #[serde(rename = "dpm-solver++-3m-sde")]
    DpmSolverPp3mSde(SigmaOptions),
    #[serde(rename = "unipc")]
    Unipc(unipc::Options),
    #[serde(rename = "heun")]
    Heun(SigmaOptions),
    #[serde(rename = "euler")]
    Euler(SigmaOptions),
    #[serde(rename = "euler-ancestral")]
    EulerAncestral(SigmaOptions),
}

impl Solver {
    /// `kind` with its default options.
    pub fn new(kind: SamplerKind) -> Self {
        let s = SigmaOptions::default();
        match kind {
            SamplerKind::Ddpm => Self::Ddpm(ddpm::Options::default()),
            SamplerKind::Ddim => Self::Ddim(ddim::Options::default()),
            SamplerKind::DpmSolverPp => Self::DpmSolverPp(dpm_solver::Options::default()),
            SamplerKind::DpmSolverPpSde => Self::DpmSolverPpSde(s),
            SamplerKind::DpmSolverPp3mSde => Self::DpmSolverPp3mSde(s),
            SamplerKind::Unipc => Self::Unipc(unipc::Options::default()),
            SamplerKind::Heun => Self::Heun(s),
            SamplerKind::Euler => Self::Euler(s),
            SamplerKind::EulerAncestral => Self::EulerAncestral(s),
        }
    }

    pub fn kind(&self) -> SamplerKind {
        match self {
            Self::Ddpm(_) => SamplerKind::Ddpm,
            Self::Ddim(_) => SamplerKind::Ddim,
            Self::DpmSolverPp(_) => SamplerKind::DpmSolverPp,
            Self::DpmSolverPpSde(_) => SamplerKind::DpmSolverPpSde,
            Self::DpmSolverPp3mSde(_) => SamplerKind::DpmSolverPp3mSde,
            Self::Unipc(_) => SamplerKind::Unipc,
            Self::Heun(_) => SamplerKind::Heun,
            Self::Euler(_) => SamplerKind::Euler,
            Self::EulerAncestral(_) => SamplerKind::EulerAncestral,
        }
    }

    /// The sigma options of a sampler that steps through [`sigmas::sigmas`].
    pub fn sigma_options(&self) -> Option<&SigmaOptions> {
        match self {
            Self::DpmSolverPpSde(s)
            | Self::DpmSolverPp3mSde(s)
            | Self::Heun(s)
            | Self::Euler(s)
            | Self::EulerAncestral(s) => Some(s),
            _ => None,
        }
    }

    /// [`Solver::sigma_options`], to change.
    pub fn sigma_options_mut(&mut self) -> Option<&mut SigmaOptions> {
        match self {
            Self::DpmSolverPpSde(s)
            | Self::DpmSolverPp3mSde(s)
            | Self::Heun(s)
            | Self::Euler(s)
            | Self::EulerAncestral(s) => Some(s),
            _ => None,
        }
    }
}

/// Everything that selects and tunes a sampler: what all samplers share, and the
/// [`Solver`] with its own options.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SamplerOptions {
    #[serde(flatten)]
    pub solver: Solver,
    /// Network evaluations (Heun: steps, each two evaluations but the last).
    pub steps: usize,
    /// Clip the predicted x0 (the data prediction of the ODE and SDE solvers) to [-1, 1]. On
    /// by default for every sampler: the data are images in [-1, 1], and unclipped ODE
    /// solvers give flat white or black images on young models (README, "Which sampler").
    pub clip_x0: bool,
    /// Classifier-free guidance scale w: eps = eps_uncond + w (eps_cond - eps_uncond); 1 = none.
    pub guidance_scale: f64,
}

impl SamplerOptions {
    /// `kind` with its usual steps for a process of `num_timesteps`, x0 clipped, no guidance.
    pub fn new(kind: SamplerKind, num_timesteps: usize) -> Self {
        Self {
            solver: Solver::new(kind),
            steps: kind.default_steps(num_timesteps),
            clip_x0: true,
            guidance_scale: 1.0,
        }
    }

    pub fn kind(&self) -> SamplerKind {
        self.solver.kind()
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
        match &self.solver {
            Solver::Ddpm(o) => o.validate(t, self.steps)?,
            Solver::Ddim(o) => o.validate(t, self.steps)?,
            Solver::Unipc(o) => o.validate()?,
            _ => {}
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
        match self.kind() {
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
    Ok(match &opts.solver {
        Solver::Ddpm(o) => ddpm::sample(opts, o, process, model, x_t, noise, progress)?,
        Solver::Ddim(o) => ddim::sample(opts, o, process, model, x_t, noise, progress),
        Solver::DpmSolverPp(o) => dpm_solver::sample(opts, o, process, model, x_t, progress),
        Solver::DpmSolverPpSde(o) => {
            sde::sample(sde::Order::Two, opts, o, process, model, x_t, noise, progress)
        }
        Solver::DpmSolverPp3mSde(o) => {
            sde::sample(sde::Order::Three, opts, o, process, model, x_t, noise, progress)
        }
        Solver::Unipc(o) => unipc::sample(opts, o, process, model, x_t, progress),
        Solver::Heun(o) => heun::sample(opts, o, process, model, x_t, progress),
        Solver::Euler(o) => {
            euler::sample(euler::Variant::Ode, opts, o, process, model, x_t, noise, progress)
        }
        Solver::EulerAncestral(o) => {
            euler::sample(euler::Variant::Ancestral, opts, o, process, model, x_t, noise, progress)
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
        fn steps_for_evaluations_is_the_most_the_budget_buys(nfe in 1usize..2000, k in 0usize..9) {
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

    /// Manifests and results written before the options became a sum type hold every
    /// sampler's fields flat beside `kind`; they still read, each into its own sampler's
    /// options, and the new form round-trips.
    #[test]
    fn options_written_flat_before_still_read() {
        let old = |kind: &str| {
            format!(
                r#"{{"kind":"{kind}","steps":30,"eta":0.5,"skip":"trailing","time_steps":"uniform",
                "variance":"fixed_small","clip_x0":false,"clip_convention":"diffusers",
                "final_abar_one":false,"steps_offset":1,"sigmas":"exponential","guidance_scale":2.0}}"#
            )
        };
        let read = |kind: &str| serde_json::from_str::<SamplerOptions>(&old(kind)).unwrap();
        let ddim = read("ddim");
        assert_eq!((ddim.steps, ddim.clip_x0, ddim.guidance_scale), (30, false, 2.0));
        assert_eq!(
            ddim.solver,
            Solver::Ddim(ddim::Options {
                eta: 0.5,
                skip: Skip::Trailing,
                clip_convention: ClipConvention::Diffusers,
                final_abar_one: false,
                steps_offset: 1,
            })
        );
        assert_eq!(
            read("dpm-solver++").solver,
            Solver::DpmSolverPp(dpm_solver::Options { time_steps: TimeSteps::Uniform })
        );
        assert_eq!(
            read("heun").solver,
            Solver::Heun(SigmaOptions { sigmas: SigmaSpacing::Exponential })
        );
        let Solver::Ddpm(d) = read("ddpm").solver else { panic!("ddpm") };
        assert_eq!(d.variance, Some(ddpm_core::ModelVar::FixedSmall));
        // A manifest of today's defaults, written before: the same options as today's.
        let plain = r#"{"kind":"euler","steps":50,"eta":0.0,"skip":"uniform","time_steps":"log_snr",
            "variance":null,"clip_x0":true,"clip_convention":"improved-diffusion",
            "final_abar_one":true,"steps_offset":0,"sigmas":"karras","guidance_scale":1.0}"#;
        let plain: SamplerOptions = serde_json::from_str(plain).unwrap();
        assert_eq!(plain, SamplerOptions::new(SamplerKind::Euler, 1000));
        for kind in SamplerKind::ALL {
            let o = SamplerOptions::new(kind, 1000);
            let back: SamplerOptions =
                serde_json::from_str(&serde_json::to_string(&o).unwrap()).unwrap();
            assert_eq!(back, o, "{kind:?}");
            assert_eq!(back.kind(), kind);
        }
        let e = serde_json::from_str::<SamplerOptions>(&old("plms")).unwrap_err().to_string();
        assert!(e.contains("plms"), "{e}");
    }

    #[test]
    fn heun_spends_two_evaluations_a_step_but_the_last() {
        let steps: Vec<usize> =
            [5, 10, 20, 50].map(|n| SamplerKind::Heun.steps_for_evaluations(n)).to_vec();
        assert_eq!(steps, vec![3, 5, 10, 25]);
    }
}
