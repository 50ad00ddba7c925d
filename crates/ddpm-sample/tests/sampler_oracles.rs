//! The samplers against published packages written by other people, as second oracles beside
//! diffusers (`scheduler_parity.rs`) and the closed forms (`gaussian_closed_form.rs`):
//! - denoising-diffusion-pytorch's `GaussianDiffusion.ddim_sample` (eta 0, clipped x0 with eps
//!   re-derived), on its own step placement linspace(-1, T-1, S+1) (`scripts/ref_ddp.py`);
//! - k-diffusion's `get_sigmas_karras`, `sample_heun` (no churn), `sample_dpmpp_2m`,
//!   `sample_euler`, `sample_euler_ancestral` on the exact denoiser of Gaussian data, and its
//!   discrete VP <-> VE conversions (`scripts/ref_kdiffusion.py`).
//!
//! Our samplers hand the network its time as a float32 tensor (`samplers::time_tensor`); the
//! closed-form model reads t back from it, which moves abar by ~1e-8 relative at fractional
//! times and bounds the Heun and DPM-Solver++ agreement at ~2e-8 (with a float64 time tensor
//! both agree with k-diffusion to 5e-15, measured). The tolerances allow for either.

use ddpm_core::tensor::TensorDiffusion;
use ddpm_core::{DiffusionConfig, ModelMean, ScheduleName};
use ddpm_sample::noise::ImageNoise;
use ddpm_sample::samplers::{
    self, SamplerKind, SamplerOptions, SigmaOptions, SigmaSpacing, Solver, TimeSteps, abar_at,
    ddim, dpm_solver, eps_and_x0, euler, sigmas, t_of_log_abar,
};
use ddpm_testkit::{NEEDS_VENV, f64s, max_rel_diff, run_json, temp_dir};
use serde_json::{Value, json};
use tch::{Device, Kind, Tensor};

/// `kind` (a sampler in sigma) on `spacing`'s noise levels.
fn with_sigmas(kind: SamplerKind, spacing: SigmaSpacing) -> Solver {
    let mut solver = Solver::new(kind);
    let own =
        solver.sigma_options_mut().unwrap_or_else(|| panic!("{kind:?} does not step in sigma"));
    *own = SigmaOptions { sigmas: spacing };
    solver
}

/// A sigma-space sampler's case for `ref_kdiffusion.py`'s `cmd`: k-diffusion's answer on
/// `spacing`'s sigmas from x_T (two images, seed `x_seed`), its noise sampler handed, step by
/// step, the draws of a twin of the `ImageNoise` (`noise_seed`, `images`) returned for ours; and
/// our options for the same case.
fn k_diffusion_case(
    td: &TensorDiffusion,
    kind: SamplerKind,
    cmd: &str,
    steps: usize,
    spacing: SigmaSpacing,
    x_seed: u64,
    (noise_seed, images): (u64, &[u64]),
) -> (Value, SamplerOptions, Tensor, ImageNoise) {
    let sigmas = sigmas::sigmas(td, steps, spacing);
    let x = x_t(2, x_seed);
    let mut twin = ImageNoise::new(noise_seed, images, &[1, 4, 4], Device::Cpu);
    // One draw per step with sigma_{i+1} > 0: every step but the last.
    let noise: Vec<Vec<f64>> = (0..steps - 1).map(|_| flat(&twin.draw())).collect();
    let theirs = oracle(
        "ref_kdiffusion.py",
        json!({"cmd": cmd, "sigmas": sigmas, "m": M, "s": S, "x_T": flat(&x), "noise": noise}),
    );
    let mut opts = SamplerOptions::new(kind, 1000);
    (opts.steps, opts.clip_x0) = (steps, false);
    opts.solver = with_sigmas(kind, spacing);
    (theirs, opts, x, ImageNoise::new(noise_seed, images, &[1, 4, 4], Device::Cpu))
}

fn oracle(script: &str, input: Value) -> Value {
    let path = temp_dir("sampler-oracle").join("in.json");
    std::fs::write(&path, input.to_string()).unwrap();
    run_json(script, &[path.to_str().unwrap()])
}

fn flat(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(t.to_kind(Kind::Double).flatten(0, -1)).unwrap()
}

/// Largest difference relative to the larger of 1 and the reference's largest magnitude.
fn rel_to_scale(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max) / scale
}

fn td(schedule: ScheduleName, mean: ModelMean) -> TensorDiffusion {
    let config = DiffusionConfig { schedule, model_mean: mean, ..Default::default() };
    TensorDiffusion::from_config(&config, Device::Cpu).unwrap()
}

fn x_t(n: i64, seed: u64) -> Tensor {
    let indices: Vec<u64> = (0..n as u64).collect();
    ImageNoise::new(seed, &indices, &[1, 4, 4], Device::Cpu).draw().to_kind(Kind::Double)
}

/// The deterministic "network" of the scripts: tanh(1.3 x) (0.6 + 0.3 cos(t/97)) + 0.1 x.
fn net(x: &Tensor, t: &Tensor) -> Tensor {
    let t = t.to_kind(Kind::Double).view([-1, 1, 1, 1]);
    (x * 1.3).tanh() * ((t / 97.0).cos() * 0.3 + 0.6) + x * 0.1
}

#[test]
#[ignore = "needs the Python venv: run `cargo xtask test`"]
fn ddim_matches_denoising_diffusion_pytorch_ddim_sample() {
    let _ = NEEDS_VENV;
    for (schedule, name, steps) in [
        (ScheduleName::Linear, "linear", 50),
        (ScheduleName::Linear, "linear", 20),
        (ScheduleName::Cosine, "cosine", 25),
    ] {
        let td = td(schedule, ModelMean::Eps);
        let x = x_t(2, 7) * 1.5;
        let theirs = oracle(
            "ref_ddp.py",
            json!({"cmd": "ddim", "T": 1000, "beta_schedule": name, "S": steps,
                "shape": [2, 1, 4, 4], "x_T": flat(&x)}),
        );
        let kept: Vec<usize> = f64s(&theirs["kept"]).iter().map(|&t| t as usize).collect();
        assert_eq!(kept.len(), steps);
        assert_eq!(*kept.last().unwrap(), 999, "its placement ends at T - 1");
        let mut opts = SamplerOptions::new(SamplerKind::Ddim, 1000);
        (opts.steps, opts.clip_x0) = (steps, true);
        let own = ddim::Options::default();
        let mut noise = ImageNoise::new(1, &[0, 1], &[1, 4, 4], Device::Cpu);
        let mut model = |x: &Tensor, t: &Tensor| net(x, t);
        let ours = ddim::sample_at(&kept, &opts, &own, &td, &mut model, x, &mut noise, &mut |_| {});
        let d = rel_to_scale(&flat(&ours), &f64s(&theirs["x0"]));
        eprintln!("DDIM {name} S={steps}: max difference {d:e} (its tables are float32)");
        assert!(d < 1e-5, "DDIM {name} S={steps}: {d:e}");
    }
}

const M: f64 = 0.3;
const S: f64 = 0.5;

/// The exact eps of Gaussian data N(M, S^2) at continuous time t (see gaussian_closed_form.rs).
fn gaussian_model(td: &TensorDiffusion) -> impl FnMut(&Tensor, &Tensor) -> Tensor + '_ {
    move |x: &Tensor, t: &Tensor| {
        let a = abar_at(td, t.double_value(&[0]));
        (x - a.sqrt() * M) * ((1.0 - a).sqrt() / (a * S * S + 1.0 - a))
    }
}

#[test]
#[ignore = "needs the Python venv: run `cargo xtask test`"]
fn karras_sigmas_and_heun_match_k_diffusion() {
    let td = td(ScheduleName::Linear, ModelMean::Eps);
    for n in [5usize, 18, 40] {
        let ours = sigmas::sigmas(&td, n, SigmaSpacing::Karras);
        let x = x_t(1, 11);
        let theirs = oracle(
            "ref_kdiffusion.py",
            json!({"cmd": "heun", "T": 1000, "n": n, "m": M, "s": S, "x_T": flat(&x)}),
        );
        let d = max_rel_diff(&ours, &f64s(&theirs["sigmas"]), 1e-300);
        assert!(d < 1e-12, "Karras sigmas n={n}: {d:e}");
        // Under its default float32 dtype the ramp is float32.
        let f32s = oracle(
            "ref_kdiffusion.py",
            json!({"cmd": "karras", "T": 1000, "n": n, "dtype": "float32"}),
        );
        let d32 = max_rel_diff(&ours, &f64s(&f32s["sigmas"]), 1e-300);
        assert!(d32 < 2e-6, "Karras sigmas float32 n={n}: {d32:e}");
        let exp = oracle("ref_kdiffusion.py", json!({"cmd": "exponential", "T": 1000, "n": n}));
        let ours_exp = sigmas::sigmas(&td, n, SigmaSpacing::Exponential);
        let de = max_rel_diff(&ours_exp, &f64s(&exp["sigmas"]), 1e-300);
        assert!(de < 1e-12, "exponential sigmas n={n}: {de:e}");
        let mut opts = SamplerOptions::new(SamplerKind::Heun, 1000);
        (opts.steps, opts.clip_x0) = (n, false);
        let mut noise = ImageNoise::new(1, &[0], &[1, 4, 4], Device::Cpu);
        let x0 = samplers::sample(&opts, &td, &mut gaussian_model(&td), x, &mut noise, &mut |_| {})
            .unwrap();
        let d = rel_to_scale(&flat(&x0), &f64s(&theirs["x0"]));
        eprintln!(
            "Heun n={n}: sigmas {:e} apart, x0 {d:e} apart",
            max_rel_diff(&ours, &f64s(&theirs["sigmas"]), 1e-300)
        );
        assert!(d < 1e-7, "Heun n={n}: {d:e}");
    }
}

#[test]
#[ignore = "needs the Python venv: run `cargo xtask test`"]
fn dpm_solver_pp_matches_k_diffusion_sample_dpmpp_2m() {
    let td = td(ScheduleName::Linear, ModelMean::Eps);
    for placement in [TimeSteps::LogSnr, TimeSteps::Uniform] {
        for steps in [6usize, 20] {
            // Our time steps as k-diffusion's VE sigmas, ending at 0.
            let mut sigmas: Vec<f64> = dpm_solver::times(&td, steps, placement)
                .iter()
                .map(|&t| {
                    let a = abar_at(&td, t);
                    ((1.0 - a) / a).sqrt()
                })
                .collect();
            sigmas.push(0.0);
            let x = x_t(1, 12);
            let theirs = oracle(
                "ref_kdiffusion.py",
                json!({"cmd": "dpmpp", "sigmas": sigmas, "m": M, "s": S, "x_T": flat(&x)}),
            );
            let mut opts = SamplerOptions::new(SamplerKind::DpmSolverPp, 1000);
            (opts.steps, opts.clip_x0) = (steps, false);
            opts.solver = Solver::DpmSolverPp(dpm_solver::Options { time_steps: placement });
            let mut noise = ImageNoise::new(1, &[0], &[1, 4, 4], Device::Cpu);
            let x0 =
                samplers::sample(&opts, &td, &mut gaussian_model(&td), x, &mut noise, &mut |_| {})
                    .unwrap();
            let d = rel_to_scale(&flat(&x0), &f64s(&theirs["x0"]));
            eprintln!("DPM-Solver++(2M) {placement:?} {steps} steps: {d:e}");
            assert!(d < 1e-7, "DPM-Solver++ {placement:?} {steps}: {d:e}");
        }
    }
}

/// Euler and Euler ancestral against k-diffusion's `sample_euler` / `sample_euler_ancestral`
/// on the same Karras sigmas, from the same x_T. The ancestral sampler's fresh noise is each
/// image's own stream: k-diffusion's `noise_sampler` is handed, step by step, exactly the draws
/// a second `ImageNoise` of the same seed and image indices makes, for a batch of two images
/// (so that mixing up images or steps would show).
#[test]
#[ignore = "needs the Python venv: run `cargo xtask test`"]
fn euler_and_euler_ancestral_match_k_diffusion() {
    let td = td(ScheduleName::Linear, ModelMean::Eps);
    for (kind, cmd) in
        [(SamplerKind::Euler, "euler"), (SamplerKind::EulerAncestral, "euler_ancestral")]
    {
        for (steps, spacing) in [
            (5usize, SigmaSpacing::Karras),
            (30, SigmaSpacing::Karras),
            (12, SigmaSpacing::Exponential),
        ] {
            let (theirs, opts, x, mut noise) =
                k_diffusion_case(&td, kind, cmd, steps, spacing, 13, (4, &[10, 11]));
            let mut evals = 0;
            let x0 =
                samplers::sample(&opts, &td, &mut gaussian_model(&td), x, &mut noise, &mut |_| {
                    evals += 1
                })
                .unwrap();
            assert_eq!((evals, opts.network_evaluations()), (steps, steps));
            let d = rel_to_scale(&flat(&x0), &f64s(&theirs["x0"]));
            eprintln!("{} {steps} {} steps: {d:e}", kind.name(), spacing.name());
            assert!(d < 1e-7, "{} {steps} {}: {d:e}", kind.name(), spacing.name());
        }
    }
    // The ancestral step's split, against k-diffusion's get_ancestral_step at eta = 1.
    let (down, up) = euler::ancestral_step(2.0, 0.5);
    assert!((down - 0.125).abs() < 1e-15 && (up - (0.25f64 * 3.75 / 4.0).sqrt()).abs() < 1e-15);
}

/// DPM-Solver++(2M) SDE and (3M) SDE against k-diffusion's `sample_dpmpp_2m_sde` (midpoint,
/// eta 1) and `sample_dpmpp_3m_sde` step by step: the state before every network evaluation
/// (its callback's x, in our VP scale) and the result, on the exact denoiser of Gaussian data,
/// from the same x_T, with k-diffusion's `noise_sampler` handed the draws of a twin
/// `ImageNoise` (two images, so mixing them up would show), on Karras and exponential sigmas.
#[test]
#[ignore = "needs the Python venv: run `cargo xtask test`"]
fn dpm_solver_pp_sde_samplers_match_k_diffusion_step_by_step() {
    let td = td(ScheduleName::Linear, ModelMean::Eps);
    for (kind, cmd) in [
        (SamplerKind::DpmSolverPpSde, "dpmpp_2m_sde"),
        (SamplerKind::DpmSolverPp3mSde, "dpmpp_3m_sde"),
    ] {
        for (steps, spacing) in [
            (5usize, SigmaSpacing::Karras),
            (20, SigmaSpacing::Karras),
            (12, SigmaSpacing::Exponential),
        ] {
            let (theirs, opts, x, mut noise) =
                k_diffusion_case(&td, kind, cmd, steps, spacing, 19, (6, &[4, 9]));
            let mut inputs = Vec::new();
            let mut gaussian = gaussian_model(&td);
            let mut model = |x: &Tensor, t: &Tensor| {
                inputs.push(flat(x));
                gaussian(x, t)
            };
            let x0 = samplers::sample(&opts, &td, &mut model, x, &mut noise, &mut |_| {}).unwrap();
            let their_inputs: Vec<Vec<f64>> =
                theirs["xs"].as_array().unwrap().iter().map(f64s).collect();
            assert_eq!(inputs.len(), their_inputs.len(), "{cmd} {steps}: evaluations");
            for (i, (a, b)) in inputs.iter().zip(&their_inputs).enumerate() {
                let d = rel_to_scale(a, b);
                assert!(d < 1e-7, "{cmd} {steps} {}: step {i} differs by {d:e}", spacing.name());
            }
            let d = rel_to_scale(&flat(&x0), &f64s(&theirs["x0"]));
            eprintln!("{cmd} {steps} {} steps: {d:e}", spacing.name());
            assert!(d < 1e-7, "{cmd} {steps} {}: {d:e}", spacing.name());
        }
    }
}

/// Euler and Euler ancestral against diffusers' `EulerDiscreteScheduler(use_karras_sigmas=True)`
/// and `EulerAncestralDiscreteScheduler`, stepped as a pipeline steps them
/// (`scripts/ref_diffusers_euler.py`), from the same x_T and, for the ancestral sampler, the
/// same per-image noise. diffusers has no Karras option for the ancestral scheduler, so it is
/// handed the Euler scheduler's sigmas and timesteps; its step() is its own. diffusers keeps
/// sigmas and samples in float32, so the sigmas agree to f32 rounding and the samples to about
/// 1e-7 of their scale. Both start from x_T sqrt(1 + sigma_max^2): diffusers' pipelines start
/// from x_T sigma_max (its `init_noise_sigma` under "linspace" spacing), 2e-5 smaller here,
/// which would show in the deterministic sampler's result.
#[test]
#[ignore = "needs the Python venv: run `cargo xtask test`"]
fn euler_and_euler_ancestral_match_diffusers() {
    let td = td(ScheduleName::Linear, ModelMean::Eps);
    for (kind, ancestral) in [(SamplerKind::Euler, false), (SamplerKind::EulerAncestral, true)] {
        for (steps, spacing) in [
            (5usize, SigmaSpacing::Karras),
            (30, SigmaSpacing::Karras),
            (12, SigmaSpacing::Exponential),
        ] {
            let sigmas = sigmas::sigmas(&td, steps, spacing);
            let x = x_t(2, 17);
            let mut twin = ImageNoise::new(5, &[3, 8], &[1, 4, 4], Device::Cpu);
            let noise: Vec<Vec<f64>> = (0..steps - 1).map(|_| flat(&twin.draw())).collect();
            let theirs = oracle(
                "ref_diffusers_euler.py",
                json!({"ancestral": ancestral, "spacing": spacing.name(), "T": 1000, "steps": steps,
                       "m": M, "s": S, "x_T": flat(&x), "noise": noise}),
            );
            let ds = max_rel_diff(&sigmas, &f64s(&theirs["sigmas"]), 1e-300);
            assert!(
                ds < 1e-6,
                "{} {steps} {}: sigmas differ by {ds:e}",
                kind.name(),
                spacing.name()
            );
            let mut opts = SamplerOptions::new(kind, 1000);
            (opts.steps, opts.clip_x0) = (steps, false);
            opts.solver = with_sigmas(kind, spacing);
            let mut noise = ImageNoise::new(5, &[3, 8], &[1, 4, 4], Device::Cpu);
            let x0 =
                samplers::sample(&opts, &td, &mut gaussian_model(&td), x, &mut noise, &mut |_| {})
                    .unwrap();
            let d = rel_to_scale(&flat(&x0), &f64s(&theirs["x0"]));
            eprintln!("diffusers {} {steps} {} steps: {d:e}", kind.name(), spacing.name());
            assert!(d < 2e-6, "{} {steps} {}: {d:e}", kind.name(), spacing.name());
        }
    }
}

/// k-diffusion's discrete DDPM wrappers against our VP <-> VE conversions. On the grid of
/// discrete steps they agree: sigma_t = sqrt((1 - abar_t)/abar_t), sigma -> t, and the eps and v
/// wrappers' D(x; sigma) = our x0 prediction at x_t = x sqrt(abar). Between grid points the two
/// interpolate differently: k-diffusion linearly in log sigma, we (DPM-Solver's convention)
/// linearly in log abar; the test measures that gap and keeps it below 1e-3 relative.
#[test]
#[ignore = "needs the Python venv: run `cargo xtask test`"]
fn vp_ve_conversions_match_k_diffusion_discrete_wrappers() {
    let eps_td = td(ScheduleName::Linear, ModelMean::Eps);
    let v_td = td(ScheduleName::Linear, ModelMean::V);
    let ac = eps_td.diffusion.alphas_cumprod.clone();
    let sigma_of = |a: f64| ((1.0 - a) / a).sqrt();
    let grid = [0usize, 1, 37, 500, 998, 999];
    // Fractions exactly representable in f32 (its t_to_sigma casts t to float32).
    let fractional = [0.5f64, 10.25, 123.75, 640.5, 998.5];
    let ts: Vec<f64> = grid.iter().map(|&t| t as f64).chain(fractional).collect();
    let grid_sigmas: Vec<f64> = grid.iter().map(|&t| sigma_of(ac[t])).collect();
    let x = x_t(grid.len() as i64, 13) * 3.0;
    let theirs = oracle(
        "ref_kdiffusion.py",
        json!({"cmd": "conversions", "T": 1000, "t": ts, "sigma": grid_sigmas,
            "x": flat(&x), "grid_sigma": grid_sigmas}),
    );
    let sig: Vec<f64> = ac.iter().map(|&a| sigma_of(a)).collect();
    assert!(max_rel_diff(&sig, &f64s(&theirs["sigmas"]), 1e-300) < 1e-12, "sigma table");
    let t_to_sigma = f64s(&theirs["t_to_sigma"]);
    let mut gaps = Vec::new();
    for (i, &t) in ts.iter().enumerate() {
        let ours = sigma_of(abar_at(&eps_td, t));
        let r = (ours - t_to_sigma[i]).abs() / t_to_sigma[i];
        if t.fract() == 0.0 {
            assert!(r < 1e-12, "t_to_sigma({t}): ours {ours}, theirs {}", t_to_sigma[i]);
        } else {
            eprintln!("t = {t}: sigma differs by {r:e} (log-sigma vs log-abar interpolation)");
            gaps.push((t, r));
        }
    }
    // Measured: 3.9e-2 at t = 0.5, 8.8e-4 at 10.25, 1.1e-5 at 123.75, 1e-9 at 998.5: the two
    // interpolations part most where 1 - abar is tiny, and agree ever closer as t grows.
    assert!(gaps.windows(2).all(|w| w[1].1 < w[0].1), "{gaps:?}");
    assert!(gaps.iter().all(|&(t, r)| r < if t < 1.0 { 0.05 } else { 1e-3 }), "{gaps:?}");
    let sigma_to_t = f64s(&theirs["sigma_to_t"]);
    for (i, &t) in grid.iter().enumerate() {
        let ours = t_of_log_abar(&eps_td, (1.0 / (1.0 + grid_sigmas[i].powi(2))).ln());
        assert!((ours - t as f64).abs() < 1e-9, "ours sigma_to_t at t = {t}: {ours}");
        assert!((sigma_to_t[i] - t as f64).abs() < 1e-9, "theirs at t = {t}: {}", sigma_to_t[i]);
    }
    // D(x; sigma) of the eps and v wrappers: the same network output, read at the same t.
    for (td, key) in [(&eps_td, "eps_denoised"), (&v_td, "v_denoised")] {
        let want = f64s(&theirs[key]);
        for (i, &sigma) in grid_sigmas.iter().enumerate() {
            let a = 1.0 / (1.0 + sigma * sigma);
            let t = t_of_log_abar(td, a.ln());
            let x_ve = x.get(i as i64).unsqueeze(0);
            let x_vp = &x_ve * a.sqrt();
            let output = net(&x_vp, &Tensor::from_slice(&[t]));
            let (_, x0) = eps_and_x0(td, &output, &x_vp, a, false, Default::default());
            let per = x0.numel();
            let d = rel_to_scale(&flat(&x0), &want[i * per..(i + 1) * per]);
            assert!(d < 1e-9, "{key} at grid t = {}: {d:e}", grid[i]);
        }
    }
}
