//! One builder for "sample n images from this model", shared by `ddpm-sample sample` and
//! `ddpm-eval fid`: the sampler's options from the command line (checked against the model),
//! the class labels, the job's folder name and its manifest.

use crate::config::SamplingConfig;
use crate::error::{Result, SampleError};
use crate::samplers::{
    ClipConvention, SamplerKind, SamplerOptions, SigmaSpacing, Skip, Solver, TimeSteps,
};
use ddpm_core::ModelVar;
use ddpm_run::{LoadedModel, RunDir};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Class labels for a conditional model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Labels {
    /// Unconditional model (or the null class).
    None,
    /// Every image of this class.
    Class(i64),
    /// A class per image, drawn from the image's own seed.
    Random,
    /// Image i gets class i mod K: every class in turn (preview grids).
    Cycle,
}

impl Labels {
    /// The classes of images `indices` of a job with `seed`, for a model of `k` classes
    /// (None: no labels). Image i's random class depends on (seed, i) alone, so any rank, and
    /// a measure afterwards, knows which class each image was asked for.
    pub fn classes(&self, seed: u64, indices: &[u64], k: usize) -> Option<Vec<i64>> {
        let k = k as u64;
        Some(match self {
            Self::None => return None,
            Self::Class(c) => vec![*c; indices.len()],
            Self::Random => indices
                .iter()
                .map(|&i| ddpm_core::rng::SplitMix64::derived(seed, &[u64::MAX, i]).below(k) as i64)
                .collect(),
            Self::Cycle => indices.iter().map(|&i| (i % k) as i64).collect(),
        })
    }
}

/// The model to sample from, as both binaries take it.
#[derive(Debug, Clone, clap::Args)]
pub struct ModelArgs {
    /// A run name under --runs-dir, a run directory, or a checkpoint file.
    #[arg(long)]
    pub checkpoint: String,
    #[arg(long, default_value = ddpm_run::DEFAULT_RUNS_DIR)]
    pub runs_dir: PathBuf,
    /// Use the raw weights instead of the EMA weights.
    #[arg(long)]
    pub raw: bool,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
}

impl ModelArgs {
    /// The run and its network on the chosen device.
    pub fn open(&self) -> Result<(ddpm_run::RunDir, LoadedModel)> {
        let device = ddpm_nets::parse_device(&self.device, "--device").map_err(SampleError::Arg)?;
        self.open_on(device)
    }

    /// The run and its network on `device` (e.g. this rank's, see
    /// [`ddpm_dist::DistEnv::device`]).
    pub fn open_on(&self, device: tch::Device) -> Result<(ddpm_run::RunDir, LoadedModel)> {
        let (run, model) = ddpm_run::open_model(&self.checkpoint, &self.runs_dir, device, self.raw)
            .map_err(|e| {
                SampleError::Arg(format!("loading --checkpoint {}: {e}", self.checkpoint))
            })?;
        Ok((run, model))
    }
}

/// The sampler as the command line chooses it (flattened into both binaries' arguments). A
/// flag of one sampler given with another is refused by name: each sampler's options are its
/// own ([`Solver`]).
#[derive(Debug, Clone, clap::Args)]
pub struct SamplerArgs {
    #[arg(long, value_enum, default_value = "ddpm")]
    pub sampler: SamplerKind,
    /// Network evaluations (default: T for ddpm, 50 ddim and the Euler samplers, 20 the
    /// DPM-Solver++ family and unipc, 18 heun steps).
    #[arg(long)]
    pub steps: Option<usize>,
    /// DDIM's eta (default 0: deterministic).
    #[arg(long)]
    pub eta: Option<f64>,
    /// The kept steps of ddim and ddpm: uniform (ddim: improved-diffusion's stride; ddpm:
    /// improved-diffusion's even respacing), quadratic, or diffusers' leading, trailing and
    /// linspace (also as --timestep-spacing). Default: the run's [sampling] timestep_spacing
    /// (an imported pipeline's), else uniform.
    #[arg(long, value_enum, alias = "timestep-spacing")]
    pub skip: Option<Skip>,
    /// Where dpm-solver++ and unipc evaluate: log-snr (default), uniform (diffusers'
    /// linspace) or karras.
    #[arg(long, value_enum)]
    pub time_steps: Option<TimeSteps>,
    /// The noise levels: karras (rho = 7, the default of heun, euler, euler-ancestral and the
    /// SDE solvers) or exponential (uniform in log sigma). For dpm-solver++ and unipc, the
    /// same as --time-steps karras or log-snr.
    #[arg(long, value_enum)]
    pub sigmas: Option<SigmaSpacing>,
    /// UniPC's order: 1, 2 (default, as diffusers) or 3.
    #[arg(long)]
    pub order: Option<usize>,
    /// DDPM's variance instead of the model's: fixed_small or fixed_large.
    #[arg(long)]
    pub variance: Option<String>,
    /// Clip predicted x0 to [-1, 1] (default: the run's [sampling] clip, else on for every
    /// sampler).
    #[arg(long)]
    pub clip: Option<bool>,
    /// DDIM with clipping: improved-diffusion re-derives eps from the clipped x0; diffusers
    /// (DDIMScheduler.step, DDIMPipeline) keeps the model's eps. Default: the run's [sampling]
    /// clip_convention (diffusers for imported diffusers models), else improved-diffusion.
    #[arg(long, value_enum)]
    pub clip_convention: Option<ClipConvention>,
    /// Classifier-free guidance scale w in diffusers' convention: eps_u + w (eps_c - eps_u),
    /// so 1 is unguided (Ho & Salimans' w is this minus 1). Needs --class or --random-classes.
    #[arg(long, default_value_t = 1.0)]
    pub guidance: f64,
}

impl SamplerArgs {
    /// Plain arguments for `sampler` (every flag at its default), e.g. for a sweep's cells.
    pub fn for_sampler(sampler: SamplerKind) -> Self {
        Self {
            sampler,
            steps: None,
            eta: None,
            skip: None,
            time_steps: None,
            sigmas: None,
            order: None,
            variance: None,
            clip: None,
            clip_convention: None,
            guidance: 1.0,
        }
    }

    /// The sampler's options for `model` of `run`: the run's `[sampling]` table as defaults,
    /// the command line over them; checked, errors name the argument and echo the value.
    pub fn options(&self, run: &RunDir, model: &LoadedModel) -> Result<SamplerOptions> {
        let defaults: SamplingConfig = run.section("sampling")?;
        self.options_with(&defaults, model)
    }

    /// Refuses each flag given that the chosen sampler does not take.
    fn check_applies(&self) -> Result<()> {
        use SamplerKind as K;
        let kind = self.sampler;
        let multistep = [K::DpmSolverPp, K::Unipc];
        // The sigma solvers, and the multistep solvers in time, which map it to their time steps.
        let sigma_takers: Vec<SamplerKind> =
            K::ALL.into_iter().filter(|k| k.steps_in_sigma() || multistep.contains(k)).collect();
        let flags: [(&str, Option<String>, &[SamplerKind]); 7] = [
            ("--eta", self.eta.map(|v| v.to_string()), &[K::Ddim]),
            ("--skip", self.skip.map(|v| v.name().into()), &[K::Ddim, K::Ddpm]),
            ("--clip-convention", self.clip_convention.map(|v| v.name().into()), &[K::Ddim]),
            ("--variance", self.variance.clone(), &[K::Ddpm]),
            ("--time-steps", self.time_steps.map(|v| v.name().into()), &multistep),
            ("--order", self.order.map(|v| v.to_string()), &[K::Unipc]),
            ("--sigmas", self.sigmas.map(|v| v.name().into()), &sigma_takers),
        ];
        for (flag, given, takers) in flags {
            let Some(value) = given else { continue };
            if !takers.contains(&kind) {
                let names: Vec<&str> = takers.iter().map(|k| k.name()).collect();
                return Err(arg(format!(
                    "{flag} {value} applies to {} only, not {}",
                    names.join(", "),
                    kind.name()
                )));
            }
        }
        if let (Some(t), Some(s)) = (self.time_steps, self.sigmas) {
            return Err(arg(format!(
                "--time-steps {} and --sigmas {} both place {}'s steps: give one",
                t.name(),
                s.name(),
                kind.name()
            )));
        }
        Ok(())
    }

    /// [`SamplerArgs::options`] with the run's `[sampling]` defaults given.
    pub fn options_with(
        &self,
        defaults: &SamplingConfig,
        model: &LoadedModel,
    ) -> Result<SamplerOptions> {
        self.check_applies()?;
        let t = model.diffusion.steps;
        let mut opts = SamplerOptions::new(self.sampler, t);
        opts.steps = self.steps.unwrap_or(opts.steps);
        opts.guidance_scale = self.guidance;
        let table_clip = match self.sampler {
            SamplerKind::Ddpm | SamplerKind::Ddim => defaults.clip,
            _ => defaults.clip_solvers.or(defaults.clip),
        };
        opts.clip_x0 = self.clip.or(table_clip).unwrap_or(true);
        let placement =
            self.time_steps.or(self.sigmas.map(TimeSteps::of_sigmas)).or(defaults.time_steps);
        match &mut opts.solver {
            Solver::Ddpm(o) => {
                o.skip = self.skip.unwrap_or(defaults.timestep_spacing);
                if o.skip == Skip::Leading {
                    o.steps_offset = defaults.steps_offset;
                }
                o.variance = match self.variance.as_deref() {
                    None => None,
                    Some("fixed_small") => Some(ModelVar::FixedSmall),
                    Some("fixed_large") => Some(ModelVar::FixedLarge),
                    Some(other) => {
                        return Err(arg(format!(
                            "--variance must be fixed_small or fixed_large, got {other:?}"
                        )));
                    }
                };
                if o.variance.is_some() && model.diffusion.model_var.is_learned() {
                    return Err(arg(format!(
                        "--variance: this model learned its variance ({:?})",
                        model.diffusion.model_var
                    )));
                }
            }
            Solver::Ddim(o) => {
                o.eta = self.eta.unwrap_or(0.0);
                o.clip_convention = self.clip_convention.unwrap_or(defaults.clip_convention);
                o.final_abar_one = defaults.final_abar_one;
                o.skip = self.skip.unwrap_or(defaults.timestep_spacing);
                if o.skip.takes_steps_offset() {
                    o.steps_offset = defaults.steps_offset;
                }
            }
            Solver::DpmSolverPp(o) => o.time_steps = placement.unwrap_or_default(),
            Solver::Unipc(o) => {
                o.time_steps = placement.unwrap_or_default();
                o.order = self.order.or(defaults.order).unwrap_or(o.order);
            }
            Solver::DpmSolverPpSde(o)
            | Solver::DpmSolverPp3mSde(o)
            | Solver::Heun(o)
            | Solver::Euler(o)
            | Solver::EulerAncestral(o) => {
                o.sigmas = self.sigmas.or(defaults.sigmas).unwrap_or_default()
            }
        }
        opts.validate(t)?;
        if self.guidance != 1.0 && model.net.num_classes().is_none() {
            return Err(arg(format!(
                "--guidance {} needs a class-conditional model; this one is unconditional",
                self.guidance
            )));
        }
        Ok(opts)
    }
}

fn arg(msg: String) -> SampleError {
    SampleError::Arg(msg)
}

/// Class labels from `--class K` / `--random-classes`, checked against the model; guidance
/// without labels is refused (it would silently sample unguided).
pub fn labels(
    class: Option<i64>,
    random: bool,
    guidance: f64,
    model: &LoadedModel,
) -> Result<Labels> {
    let labels = match (class, random, model.net.num_classes()) {
        (None, false, _) => Labels::None,
        (_, _, None) => {
            return Err(arg(
                "--class/--random-classes need a class-conditional model; this one is unconditional"
                    .into(),
            ));
        }
        (Some(c), _, Some(k)) if c < 0 || c as usize >= k => {
            return Err(arg(format!("--class must be in 0..{k}, got {c}")));
        }
        (Some(c), _, Some(_)) => Labels::Class(c),
        (None, true, Some(_)) => Labels::Random,
    };
    if guidance != 1.0 && labels == Labels::None {
        return Err(arg(format!(
            "--guidance {guidance} needs class labels to guide towards: pass --class K or --random-classes"
        )));
    }
    Ok(labels)
}

/// A sampling job: which images, from which model, with which sampler.
#[derive(Debug, Clone)]
pub struct SampleRequest {
    pub sampler: SamplerOptions,
    pub seed: u64,
    /// Global index of the first image (shards).
    pub start: u64,
    pub n: usize,
    pub labels: Labels,
    pub noise_file: Option<PathBuf>,
    /// bf16 autocast of the network on CUDA (`--bf16`).
    pub bf16: bool,
}

impl SampleRequest {
    /// The folder name of a sampling job from the weights of checkpoint `step` (EMA or raw):
    /// `step<step>[-raw]-<sampler>-<steps>[...]-seed<seed>` (see `folder_name`). The weights are
    /// in the name so that sampling a run again after it trained on (or its raw weights) gets a
    /// folder of its own instead of meeting the older job's manifest, which would refuse it.
    pub fn job_name(&self, step: u64, ema: bool) -> String {
        self.folder_name(step, ema, "")
    }

    /// The folder name of an FID evaluation:
    /// `step<step>[-raw]-<sampler>-<steps>[...]-n<n>-seed<seed>`.
    pub fn fid_job_name(&self, step: u64, ema: bool) -> String {
        self.folder_name(step, ema, &format!("-n{}", self.n))
    }

    /// `step<step>[-raw]-<sampler>-<steps>[-<sigmas>][-w<w>][-o<digest>]<count>-seed<seed>`: the
    /// sigma spacing named where it is not the default karras, the other settings digested.
    fn folder_name(&self, step: u64, ema: bool, count: &str) -> String {
        let (kind, steps) = (self.sampler.kind().name(), self.sampler.steps);
        let weights = if ema { "" } else { "-raw" };
        let w = self.guidance_tag();
        let sigmas = match self.sampler.solver.sigma_options().map(|o| o.sigmas) {
            None | Some(SigmaSpacing::Karras) => String::new(),
            Some(other) => format!("-{}", other.name()),
        };
        let rest = self.settings_tag();
        format!("step{step}{weights}-{kind}-{steps}{sigmas}{w}{rest}{count}-seed{}", self.seed)
    }

    /// `-o<digest>` where any other setting that changes the samples (the sampler's own
    /// options, clipping) differs from the sampler's defaults: 8 hex digits of FNV-1a 64 over
    /// the options' JSON, so that e.g. `--clip false` after a plain job gets a folder of its
    /// own. Nothing for defaults.
    fn settings_tag(&self) -> String {
        let o = &self.sampler;
        let mut solver = Solver::new(o.kind());
        if let (Some(d), Some(own)) = (solver.sigma_options_mut(), o.solver.sigma_options()) {
            // Named in the folder already.
            *d = *own;
        }
        let defaults = SamplerOptions {
            solver,
            steps: o.steps,
            guidance_scale: o.guidance_scale,
            clip_x0: true,
        };
        if *o == defaults {
            return String::new();
        }
        let json = serde_json::to_string(o).expect("sampler options serialise");
        let hash = json
            .bytes()
            .fold(0xcbf29ce484222325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100000001b3));
        format!("-o{:08x}", hash >> 32)
    }

    /// `-w<w>` for a guided job (so that guided and unguided samples of the same seed get
    /// their own folders), nothing for w = 1.
    fn guidance_tag(&self) -> String {
        let w = self.sampler.guidance_scale;
        if w == 1.0 { String::new() } else { format!("-w{w}") }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(sampler: SamplerOptions, seed: u64, n: usize, labels: Labels) -> SampleRequest {
        SampleRequest { sampler, seed, start: 0, n, labels, noise_file: None, bf16: false }
    }

    /// Guided and unguided jobs of the same sampler, steps and seed get their own folders, so
    /// a guided `fid --checkpoint` does not meet the unguided job's samples (which the
    /// manifest check would refuse) and neither overwrites the other.
    #[test]
    fn guided_jobs_are_named_apart_from_unguided_ones() {
        let mut req =
            request(SamplerOptions::new(SamplerKind::Ddpm, 1000), 3, 1000, Labels::Random);
        req.sampler.steps = 100;
        assert_eq!(
            (req.job_name(500, true), req.fid_job_name(500, true)),
            ("step500-ddpm-100-seed3".into(), "step500-ddpm-100-n1000-seed3".into())
        );
        req.sampler.guidance_scale = 2.5;
        assert_eq!(
            (req.job_name(500, true), req.fid_job_name(500, true)),
            ("step500-ddpm-100-w2.5-seed3".into(), "step500-ddpm-100-w2.5-n1000-seed3".into())
        );
    }

    /// Another checkpoint of the same run, or its raw weights, gets a folder of its own: a
    /// run sampled, trained on and sampled again is not refused by the first job's manifest.
    #[test]
    fn each_checkpoints_weights_get_their_own_folder() {
        let req = request(SamplerOptions::new(SamplerKind::Ddim, 1000), 0, 100, Labels::None);
        let names = [(500, true), (1000, true), (1000, false)].map(|(s, e)| req.job_name(s, e));
        assert_eq!(
            names,
            ["step500-ddim-50-seed0", "step1000-ddim-50-seed0", "step1000-raw-ddim-50-seed0"]
        );
        assert_eq!(req.fid_job_name(1000, false), "step1000-raw-ddim-50-n100-seed0");
    }

    /// Every setting that changes the samples changes the folder: the sigma spacing by name,
    /// the rest by digest; asking for a default explicitly does not.
    #[test]
    fn every_setting_that_changes_the_samples_is_in_the_name() {
        let ddim = |f: &dyn Fn(&mut crate::samplers::ddim::Options)| {
            let mut sampler = SamplerOptions::new(SamplerKind::Ddim, 1000);
            if let Solver::Ddim(o) = &mut sampler.solver {
                f(o);
            }
            request(sampler, 0, 100, Labels::None).fid_job_name(7, true)
        };
        let plain = ddim(&|_| {});
        assert_eq!(plain, "step7-ddim-50-n100-seed0");
        assert_eq!(ddim(&|o| o.eta = 0.0), plain);
        let mut unclipped = SamplerOptions::new(SamplerKind::Ddim, 1000);
        unclipped.clip_x0 = false;
        let variants = [
            request(unclipped, 0, 100, Labels::None).fid_job_name(7, true),
            ddim(&|o| o.eta = 0.5),
            ddim(&|o| o.skip = Skip::Quadratic),
            ddim(&|o| o.clip_convention = ClipConvention::Diffusers),
            ddim(&|o| o.final_abar_one = false),
            ddim(&|o| o.steps_offset = 1),
        ];
        for (i, v) in variants.iter().enumerate() {
            assert!(v.starts_with("step7-ddim-50-o") && v.ends_with("-n100-seed0"), "{v}");
            assert_eq!(v.len(), plain.len() + 10, "{v}");
            assert!(variants[..i].iter().all(|u| u != v), "{v} repeats");
        }
        let mut heun = SamplerOptions::new(SamplerKind::Heun, 1000);
        heun.solver =
            Solver::Heun(crate::samplers::SigmaOptions { sigmas: SigmaSpacing::Exponential });
        let r = request(heun, 1, 10, Labels::None);
        assert_eq!(r.job_name(7, true), "step7-heun-18-exponential-seed1");
        let mut unclipped = r.clone();
        unclipped.sampler.clip_x0 = false;
        assert!(unclipped.job_name(7, true).starts_with("step7-heun-18-exponential-o"));
        // The new samplers' own options too.
        let mut unipc = SamplerOptions::new(SamplerKind::Unipc, 1000);
        let plain = request(unipc.clone(), 0, 10, Labels::None).job_name(7, true);
        assert_eq!(plain, "step7-unipc-20-seed0");
        unipc.solver =
            Solver::Unipc(crate::samplers::unipc::Options { order: 3, ..Default::default() });
        let third = request(unipc, 0, 10, Labels::None).job_name(7, true);
        assert!(third.starts_with("step7-unipc-20-o") && third != plain, "{third}");
    }
}
