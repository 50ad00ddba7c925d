//! Step-for-step parity with diffusers' DDPMScheduler, DDIMScheduler,
//! DPMSolverMultistepScheduler (DPM-Solver++(2M), and its "sde-dpmsolver++" for our
//! dpm-solver++-sde) and UniPCMultistepScheduler (`scripts/ref_schedulers.py`): the same model
//! outputs, timesteps and noise give the same trajectory (f64 on both sides).

use ddpm_core::tensor::TensorDiffusion;
use ddpm_core::{DiffusionConfig, ModelVar, ScheduleName};
use ddpm_sample::noise::ImageNoise;
use ddpm_sample::samplers::{
    self, ClipConvention, SamplerKind, SamplerOptions, SigmaOptions, SigmaSpacing, Skip, Solver,
    TimeSteps, ddim, ddpm, dpm_solver, sigmas, unipc,
};
use ddpm_testkit::{f64s, run_json, temp_dir};
use serde_json::json;
use tch::{Device, Kind, Tensor};

const SHAPE: [i64; 4] = [2, 1, 4, 4];

fn flat(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(t.to_kind(Kind::Double).flatten(0, -1)).unwrap()
}

struct Case {
    kind: SamplerKind,
    t: usize,
    steps: usize,
    schedule: ScheduleName,
    var: ModelVar,
    eta: f64,
    clip: bool,
    convention: ClipConvention,
    /// Model outputs scaled by 3/sqrt(1 - abar_t), so that the x0 prediction leaves [-1, 1] at
    /// every step (a deliberately off-scale model); else N(0, 1.5^2).
    off_scale: bool,
    final_abar_one: bool,
    steps_offset: usize,
    /// DDIM's and DDPM's kept steps (diffusers' `timestep_spacing` for leading, trailing,
    /// linspace).
    skip: Skip,
    /// DPM-Solver++'s and UniPC's placement (uniform: diffusers' linspace; karras: its
    /// `use_karras_sigmas`).
    time_steps: TimeSteps,
    /// UniPC's order.
    order: usize,
}

impl Case {
    fn new(kind: SamplerKind, t: usize, steps: usize) -> Self {
        Self {
            kind,
            t,
            steps,
            schedule: ScheduleName::Linear,
            var: ModelVar::FixedLarge,
            eta: 0.0,
            clip: false,
            convention: ClipConvention::ImprovedDiffusion,
            off_scale: false,
            final_abar_one: true,
            steps_offset: 0,
            skip: Skip::Uniform,
            time_steps: TimeSteps::Uniform,
            order: 2,
        }
    }

    fn options(&self) -> SamplerOptions {
        let mut opts = SamplerOptions::new(self.kind, self.t);
        (opts.steps, opts.clip_x0) = (self.steps, self.clip);
        opts.solver = match self.kind {
            SamplerKind::Ddpm => Solver::Ddpm(ddpm::Options {
                skip: self.skip,
                steps_offset: self.steps_offset,
                variance: None,
            }),
            SamplerKind::Ddim => Solver::Ddim(ddim::Options {
                eta: self.eta,
                skip: self.skip,
                clip_convention: self.convention,
                final_abar_one: self.final_abar_one,
                steps_offset: self.steps_offset,
            }),
            SamplerKind::DpmSolverPp => {
                Solver::DpmSolverPp(dpm_solver::Options { time_steps: self.time_steps })
            }
            SamplerKind::Unipc => {
                Solver::Unipc(unipc::Options { order: self.order, time_steps: self.time_steps })
            }
            SamplerKind::DpmSolverPpSde => {
                Solver::DpmSolverPpSde(SigmaOptions { sigmas: SigmaSpacing::Karras })
            }
            other => panic!("no diffusers scheduler case for {other:?}"),
        };
        opts
    }

    fn process(&self) -> TensorDiffusion {
        let config = DiffusionConfig {
            steps: self.t,
            schedule: self.schedule,
            model_var: self.var,
            ..Default::default()
        };
        TensorDiffusion::from_config(&config, Device::Cpu).unwrap()
    }

    /// The VE noise levels our solver steps through, ending in 0 (handed to diffusers, whose
    /// own are float32), for the solvers in sigma and in continuous time.
    fn sigmas(&self) -> Vec<f64> {
        let p = self.process();
        match self.kind {
            SamplerKind::DpmSolverPpSde => sigmas::sigmas(&p, self.steps, SigmaSpacing::Karras),
            SamplerKind::DpmSolverPp | SamplerKind::Unipc => {
                let mut v: Vec<f64> = dpm_solver::times(&p, self.steps, self.time_steps)
                    .iter()
                    .map(|&t| {
                        let a = samplers::abar_at(&p, t);
                        ((1.0 - a) / a).sqrt()
                    })
                    .collect();
                v.push(0.0);
                v
            }
            _ => vec![],
        }
    }
}

/// What our sampler did on a case.
struct Ours {
    /// x after each step.
    trajectory: Vec<Vec<f64>>,
    /// The model outputs it was given, in order.
    outputs: Vec<Tensor>,
    x_t: Tensor,
    /// The fresh noise of each step.
    noises: Vec<Vec<f64>>,
    /// How many steps' x0 prediction left [-1, 1] somewhere.
    clipped_steps: usize,
}

/// Runs our sampler on the case.
fn ours(c: &Case) -> Ours {
    let process = c.process();
    let opts = c.options();
    let n_evals = opts.network_evaluations();
    let per = [SHAPE[1], SHAPE[2], SHAPE[3]];
    // The noise stream as the sampler will see it: x_T first, then one draw per noisy step.
    let mut replay = ImageNoise::new(3, &[0, 1], &per, Device::Cpu);
    let x_t = replay.draw().to_kind(Kind::Double);
    let noises: Vec<Vec<f64>> = (0..n_evals).map(|_| flat(&replay.draw())).collect();
    let mut noise = ImageNoise::new(3, &[0, 1], &per, Device::Cpu);
    let _ = noise.draw();

    tch::manual_seed(11);
    let mut outputs = Vec::new();
    let mut trajectory = Vec::new();
    let mut clipped_steps = 0;
    let mut model = |x: &Tensor, t: &Tensor| {
        if !outputs.is_empty() {
            trajectory.push(flat(x));
        }
        // Rescaling is off: the network time is the step index.
        let abar = samplers::abar_at(&process, t.double_value(&[0]));
        let scale = if c.off_scale { 3.0 / (1.0 - abar).sqrt() } else { 1.5 };
        let out = Tensor::randn(SHAPE, (Kind::Double, Device::Cpu)) * scale;
        let x0 = (x.to_kind(Kind::Double) - &out * (1.0 - abar).sqrt()) / abar.sqrt();
        if x0.abs().max().double_value(&[]) > 1.0 {
            clipped_steps += 1;
        }
        outputs.push(out.shallow_clone());
        out
    };
    let x0 =
        samplers::sample(&opts, &process, &mut model, x_t.shallow_clone(), &mut noise, &mut |_| {})
            .unwrap();
    trajectory.push(flat(&x0));
    assert_eq!(outputs.len(), n_evals);
    Ours { trajectory, outputs, x_t, noises, clipped_steps }
}

/// Our trajectories against diffusers' schedulers fed the same outputs and noise (one Python
/// run for all cases); returns, per case, ours and the number of steps whose x0 prediction left
/// [-1, 1].
fn check_all(cases: &[Case]) -> Vec<(Vec<Vec<f64>>, usize)> {
    let mut inputs = Vec::new();
    let mut results = Vec::new();
    for c in cases {
        let Ours { trajectory, outputs, x_t, mut noises, clipped_steps } = ours(c);
        if c.kind == SamplerKind::Ddpm {
            // Algorithm 2 adds no noise into x_0 (z = 0 at its last step), and neither do we.
            // DDPMScheduler tests the original step (`t > 0`), so where a spacing's last kept
            // step is not 0 ("trailing": 66 at S = 15) it adds noise of variance
            // 1 - abar_66 there under fixed_large. Handed zero noise at that step, it
            // gives its mean, which the comparison checks.
            let last = noises.len() - 1;
            noises[last].iter_mut().for_each(|z| *z = 0.0);
        }
        let beta = match c.schedule {
            ScheduleName::Cosine => "squaredcos_cap_v2",
            _ => "linear",
        };
        // improved-diffusion's even respacing has no diffusers name: its steps are handed over;
        // diffusers' own spacings are left to diffusers, and compared below.
        let ddpm_timesteps: Vec<usize> = match (c.kind, c.skip) {
            (SamplerKind::Ddpm, Skip::Uniform) => ddpm_walk(c),
            _ => vec![],
        };
        inputs.push(json!({
            "sampler": name(c), "T": c.t, "beta_schedule": beta, "steps": c.steps,
            "timesteps": ddpm_timesteps,
            "variance_type": if c.var == ModelVar::FixedSmall { "fixed_small" } else { "fixed_large" },
            "eta": c.eta, "clip": c.clip, "clip_convention": c.convention.name(),
            "set_alpha_to_one": c.final_abar_one, "steps_offset": c.steps_offset,
            "timestep_spacing": c.skip.diffusers_spacing().unwrap_or("leading"),
            "sigmas": c.sigmas(), "solver_order": c.order,
            "karras": c.time_steps == TimeSteps::Karras || c.kind == SamplerKind::DpmSolverPpSde,
            "shape": SHAPE, "x_T": flat(&x_t),
            "model_outputs": outputs.iter().map(flat).collect::<Vec<_>>(),
            "noises": noises,
        }));
        results.push((trajectory, clipped_steps));
    }
    let path = temp_dir("sched-parity").join("in.json");
    std::fs::write(&path, serde_json::Value::Array(inputs).to_string()).unwrap();
    let r = run_json("ref_schedulers.py", &[path.to_str().unwrap()]);
    for ((c, (trajectory, _)), theirs) in cases.iter().zip(&results).zip(r.as_array().unwrap()) {
        let name = name(c);
        let their_steps: Vec<u64> =
            theirs["timesteps"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
        let theirs: Vec<Vec<f64>> =
            theirs["samples"].as_array().unwrap().iter().map(f64s).collect();
        assert_eq!(theirs.len(), trajectory.len(), "{name}: number of steps");
        if let Solver::Ddim(own) = &c.options().solver {
            let ours: Vec<u64> =
                ddim::step_pairs(c.t, c.steps, own).iter().map(|&(t, _)| t as u64).collect();
            assert_eq!(ours, their_steps, "{name} {:?} S={}: the kept steps", c.skip, c.steps);
        }
        if c.kind == SamplerKind::Ddpm {
            let ours: Vec<u64> = ddpm_walk(c).iter().map(|&t| t as u64).collect();
            assert_eq!(ours, their_steps, "{name} {:?} S={}: the kept steps", c.skip, c.steps);
        }
        if c.kind == SamplerKind::DpmSolverPp && c.time_steps == TimeSteps::Uniform {
            let p = c.process();
            let ours: Vec<u64> =
                dpm_solver::times(&p, c.steps, c.time_steps).iter().map(|&t| t as u64).collect();
            assert_eq!(ours, their_steps, "{name} S={}: the time steps", c.steps);
        }
        // DPMSolverMultistepScheduler.step casts the sample to f32 internally; the others stay
        // f64. Random "model outputs" make x0 predictions large at high t, so compare relative
        // to the trajectory's scale.
        let tol = if matches!(name, "dpmpp" | "dpmpp_sde") { 1e-6 } else { 1e-9 };
        for (i, (a, b)) in trajectory.iter().zip(&theirs).enumerate() {
            let d = rel_diff(a, b);
            assert!(
                d < tol,
                "{name} T={} steps={} eta={} clip={} {:?}: step {i} differs by {d:e}",
                c.t,
                c.steps,
                c.eta,
                c.clip,
                c.convention
            );
        }
    }
    results
}

fn name(c: &Case) -> &'static str {
    match c.kind {
        SamplerKind::Ddpm => "ddpm",
        SamplerKind::Ddim => "ddim",
        SamplerKind::DpmSolverPpSde => "dpmpp_sde",
        SamplerKind::Unipc => "unipc",
        _ => "dpmpp",
    }
}

/// The kept steps our DDPM walks, from T - 1 down (the original steps of its respaced process).
fn ddpm_walk(c: &Case) -> Vec<usize> {
    let opts = c.options();
    let Solver::Ddpm(own) = &opts.solver else { panic!("ddpm") };
    let walk = ddpm::walk(&opts, own, &c.process()).unwrap();
    walk.diffusion.timestep_map.iter().rev().copied().collect()
}

/// Largest absolute difference relative to the scale of `b` (at least 1).
fn rel_diff(a: &[f64], b: &[f64]) -> f64 {
    let scale = b.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max) / scale
}

#[test]
#[ignore = "needs the Python venv: run `cargo xtask test`"]
fn ddpm_matches_diffusers_ddpm_scheduler() {
    let mut cases = Vec::new();
    for var in [ModelVar::FixedSmall, ModelVar::FixedLarge] {
        cases.push(Case { var, clip: true, ..Case::new(SamplerKind::Ddpm, 50, 50) });
        cases.push(Case {
            var,
            clip: true,
            schedule: ScheduleName::Cosine,
            ..Case::new(SamplerKind::Ddpm, 50, 10)
        });
    }
    check_all(&cases);
}

/// DDPMScheduler with `clip_sample`, on a model whose x0 prediction leaves [-1, 1] at every
/// step: the posterior mean uses the clipped x0 on both sides.
#[test]
#[ignore = "needs the Python venv: run `cargo xtask test`"]
fn ddpm_with_clipping_at_every_step_matches_diffusers() {
    let mut cases = Vec::new();
    for var in [ModelVar::FixedSmall, ModelVar::FixedLarge] {
        for steps in [50, 10] {
            cases.push(Case {
                var,
                clip: true,
                off_scale: true,
                ..Case::new(SamplerKind::Ddpm, 50, steps)
            });
        }
    }
    for (c, (_, clipped)) in cases.iter().zip(check_all(&cases)) {
        assert_eq!(clipped, c.steps, "clipping triggered at {clipped} of {} steps", c.steps);
    }
}

#[test]
#[ignore = "needs the Python venv: run `cargo xtask test`"]
fn ddim_matches_diffusers_ddim_scheduler() {
    let mut cases = Vec::new();
    for eta in [0.0, 0.5, 1.0] {
        for clip in [false, true] {
            cases.push(Case { eta, clip, ..Case::new(SamplerKind::Ddim, 1000, 20) });
        }
    }
    cases.push(Case { schedule: ScheduleName::Cosine, ..Case::new(SamplerKind::Ddim, 1000, 25) });
    // diffusers' set_alpha_to_one = false (the last step goes to abar_0) and steps_offset = 1.
    cases.push(Case {
        final_abar_one: false,
        steps_offset: 1,
        ..Case::new(SamplerKind::Ddim, 1000, 20)
    });
    check_all(&cases);
}

/// diffusers' three DDIM `timestep_spacing`s at S = 15, 30 and 50 of T = 1000 (30 divides no
/// stride evenly: leading's stride is 33 where ours is 34; trailing and linspace step by
/// T // S to a step that is not the next kept one), on a model whose x0 prediction leaves
/// [-1, 1], clipped in diffusers' convention, and once with eta = 1 and fresh noise.
#[test]
#[ignore = "needs the Python venv: run `cargo xtask test`"]
fn ddim_timestep_spacings_match_diffusers_at_15_30_and_50_steps() {
    let mut cases = Vec::new();
    for skip in [Skip::Leading, Skip::Trailing, Skip::Linspace] {
        for steps in [15, 30, 50] {
            cases.push(Case {
                skip,
                clip: true,
                off_scale: true,
                convention: ClipConvention::Diffusers,
                ..Case::new(SamplerKind::Ddim, 1000, steps)
            });
        }
        cases.push(Case { skip, eta: 1.0, ..Case::new(SamplerKind::Ddim, 1000, 30) });
    }
    cases.push(Case {
        skip: Skip::Leading,
        steps_offset: 1,
        ..Case::new(SamplerKind::Ddim, 1000, 30)
    });
    let results = check_all(&cases);
    for (c, (_, clipped)) in cases.iter().zip(&results) {
        if c.off_scale {
            assert!(
                *clipped >= c.steps / 2,
                "{:?} S={}: clipping at {clipped} steps only",
                c.skip,
                c.steps
            );
        }
    }
}

/// Regression: with clipping active our DDIM followed improved-diffusion (eps re-derived from
/// the clipped x0) and so did not reproduce diffusers' `DDIMScheduler.step`, which keeps the
/// model's eps; the parity test passed only because clipping never triggered. Now both
/// conventions are options, each matched against diffusers (`use_clipped_model_output` True or
/// False), on a model whose x0 prediction leaves [-1, 1] at every step, where the two differ.
#[test]
#[ignore = "needs the Python venv: run `cargo xtask test`"]
fn ddim_with_clipping_at_every_step_matches_diffusers_in_both_conventions() {
    let mut cases = Vec::new();
    for eta in [0.0, 1.0] {
        for convention in [ClipConvention::ImprovedDiffusion, ClipConvention::Diffusers] {
            cases.push(Case {
                eta,
                clip: true,
                convention,
                off_scale: true,
                ..Case::new(SamplerKind::Ddim, 1000, 20)
            });
        }
    }
    // diffusers' own settings of an imported model together: its convention, its final alpha
    // and offset.
    cases.push(Case {
        clip: true,
        convention: ClipConvention::Diffusers,
        off_scale: true,
        final_abar_one: false,
        steps_offset: 1,
        ..Case::new(SamplerKind::Ddim, 1000, 20)
    });
    let results = check_all(&cases);
    for (c, (_, clipped)) in cases.iter().zip(&results) {
        assert_eq!(*clipped, 20, "{:?}: clipping triggered at {clipped} of 20 steps", c.convention);
    }
    for pair in results[..4].chunks(2) {
        let d = rel_diff(pair[0].0.last().unwrap(), pair[1].0.last().unwrap());
        assert!(d > 0.1, "the two conventions agree ({d:e}): the case does not tell them apart");
    }
}

#[test]
#[ignore = "needs the Python venv: run `cargo xtask test`"]
fn dpm_solver_pp_matches_diffusers_multistep_scheduler() {
    let mut cases: Vec<Case> =
        // 5 and 8: diffusers' lower_order_final (a first-order last step below 15 steps), the
        // fix of k-diffusion issue 43 for 2M's instability at few steps.
        [5, 8, 10, 20].into_iter().map(|s| Case::new(SamplerKind::DpmSolverPp, 1000, s)).collect();
    cases.push(Case {
        schedule: ScheduleName::Cosine,
        ..Case::new(SamplerKind::DpmSolverPp, 1000, 15)
    });
    check_all(&cases);
}

/// DPMSolverMultistepScheduler with `thresholding = True, sample_max_value = 1.0` (dynamic
/// thresholding whose s is clamped to [1, 1]: clipping to [-1, 1]) against our DPM-Solver++
/// with clipping, on a model whose x0 prediction leaves [-1, 1] at every step.
#[test]
#[ignore = "needs the Python venv: run `cargo xtask test`"]
fn dpm_solver_pp_with_clipping_at_every_step_matches_diffusers_thresholding() {
    let cases: Vec<Case> = [5, 20]
        .into_iter()
        .map(|steps| Case {
            clip: true,
            off_scale: true,
            ..Case::new(SamplerKind::DpmSolverPp, 1000, steps)
        })
        .collect();
    for (c, (_, clipped)) in cases.iter().zip(check_all(&cases)) {
        assert_eq!(clipped, c.steps, "clipping triggered at {clipped} of {} steps", c.steps);
    }
}

/// diffusers' three `DDPMScheduler` spacings at S = 15, 30 and 50 of T = 1000 (leading with and
/// without `steps_offset`), both fixed variances, on a model whose x0 prediction leaves
/// [-1, 1] (clipped), with fresh noise at every step: the same kept steps and trajectory.
#[test]
#[ignore = "needs the Python venv: run `cargo xtask test`"]
fn ddpm_timestep_spacings_match_diffusers_at_15_30_and_50_steps() {
    let mut cases = Vec::new();
    for skip in [Skip::Leading, Skip::Trailing, Skip::Linspace] {
        for steps in [15, 30, 50] {
            cases.push(Case {
                skip,
                clip: true,
                off_scale: true,
                ..Case::new(SamplerKind::Ddpm, 1000, steps)
            });
        }
        cases.push(Case {
            skip,
            var: ModelVar::FixedSmall,
            ..Case::new(SamplerKind::Ddpm, 1000, 30)
        });
    }
    cases.push(Case {
        skip: Skip::Leading,
        steps_offset: 1,
        ..Case::new(SamplerKind::Ddpm, 1000, 30)
    });
    let results = check_all(&cases);
    for (c, (_, clipped)) in cases.iter().zip(&results) {
        if c.off_scale {
            assert!(
                *clipped >= c.steps / 2,
                "{:?} S={}: clipping at {clipped} steps only",
                c.skip,
                c.steps
            );
        }
    }
}

/// DPM-Solver++(2M) on Karras's noise levels against DPMSolverMultistepScheduler with
/// `use_karras_sigmas`.
#[test]
#[ignore = "needs the Python venv: run `cargo xtask test`"]
fn dpm_solver_pp_on_karras_sigmas_matches_diffusers() {
    let cases: Vec<Case> = [8, 20]
        .into_iter()
        .map(|steps| Case {
            time_steps: TimeSteps::Karras,
            ..Case::new(SamplerKind::DpmSolverPp, 1000, steps)
        })
        .collect();
    check_all(&cases);
}

/// DPM-Solver++(2M) SDE against DPMSolverMultistepScheduler(algorithm_type =
/// "sde-dpmsolver++", use_karras_sigmas), handed the same per-image noise at each step, at 5
/// (first-order last step) to 20 steps, and with clipping at every step.
#[test]
#[ignore = "needs the Python venv: run `cargo xtask test`"]
fn dpm_solver_pp_sde_matches_diffusers_sde_dpmsolver_pp() {
    let mut cases: Vec<Case> =
        [5, 10, 20].into_iter().map(|s| Case::new(SamplerKind::DpmSolverPpSde, 1000, s)).collect();
    cases.push(Case {
        clip: true,
        off_scale: true,
        ..Case::new(SamplerKind::DpmSolverPpSde, 1000, 10)
    });
    cases.push(Case {
        schedule: ScheduleName::Cosine,
        ..Case::new(SamplerKind::DpmSolverPpSde, 1000, 12)
    });
    let results = check_all(&cases);
    assert_eq!(results[3].1, 10, "clipping triggered at {} of 10 steps", results[3].1);
}

/// UniPC (bh2, data prediction, lower_order_final) against UniPCMultistepScheduler at orders
/// 1, 2 and 3, at 5, 8 and 20 steps on diffusers' linspace times, on Karras's noise levels
/// (`use_karras_sigmas`), on the cosine schedule, and with its thresholding at 1 (clipping) on
/// a model whose x0 prediction leaves [-1, 1] at every step.
#[test]
#[ignore = "needs the Python venv: run `cargo xtask test`"]
fn unipc_matches_diffusers_unipc_multistep_scheduler() {
    let mut cases = Vec::new();
    for order in [1, 2, 3] {
        for steps in [5, 8, 20] {
            cases.push(Case { order, ..Case::new(SamplerKind::Unipc, 1000, steps) });
        }
        cases.push(Case {
            order,
            time_steps: TimeSteps::Karras,
            ..Case::new(SamplerKind::Unipc, 1000, 10)
        });
        cases.push(Case {
            order,
            clip: true,
            off_scale: true,
            ..Case::new(SamplerKind::Unipc, 1000, 10)
        });
    }
    cases.push(Case {
        order: 3,
        schedule: ScheduleName::Cosine,
        ..Case::new(SamplerKind::Unipc, 1000, 15)
    });
    let results = check_all(&cases);
    for (c, (_, clipped)) in cases.iter().zip(&results) {
        if c.off_scale {
            assert_eq!(*clipped, 10, "order {}: clipping at {clipped} of 10 steps", c.order);
        }
    }
}
