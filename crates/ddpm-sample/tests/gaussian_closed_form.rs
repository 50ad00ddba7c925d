//! Every sampler against a closed form: for data x0 ~ N(m, s^2) the optimal noise predictor is
//! eps*(x_t, t) = sqrt(1 - abar) (x_t - sqrt(abar) m) / (abar s^2 + 1 - abar), so with it as the
//! "network" each sampler must turn x_T ~ N(0, I) into samples with mean m and std s.

use ddpm_core::tensor::TensorDiffusion;
use ddpm_core::{DiffusionConfig, ModelVar, ScheduleName};
use ddpm_sample::noise::ImageNoise;
use ddpm_sample::samplers::{self, SamplerKind, SamplerOptions, Skip, TimeSteps, abar_at};
use tch::{Device, Kind, Tensor};

const M: f64 = 0.3;
const S: f64 = 0.2;

fn moments(opts: &SamplerOptions, schedule: ScheduleName, var: ModelVar) -> (f64, f64) {
    let config = DiffusionConfig { schedule, model_var: var, ..Default::default() };
    let td = TensorDiffusion::from_config(&config, Device::Cpu).unwrap();
    let n = 64u64;
    let indices: Vec<u64> = (0..n).collect();
    let mut noise = ImageNoise::new(9, &indices, &[1, 8, 8], Device::Cpu);
    let x_t = noise.next().to_kind(Kind::Double);
    let tdr = &td;
    let mut model = |x: &Tensor, t: &Tensor| {
        let a = abar_at(tdr, t.double_value(&[0]));
        (x - a.sqrt() * M) * ((1.0 - a).sqrt() / (a * S * S + 1.0 - a))
    };
    let x0 = samplers::sample(opts, &td, &mut model, x_t, &mut noise, &mut |_| {}).unwrap();
    (x0.mean(Kind::Double).double_value(&[]), x0.std(true).double_value(&[]))
}

fn check(opts: SamplerOptions, schedule: ScheduleName, var: ModelVar, std_tol: f64) {
    let (m, s) = moments(&opts, schedule, var);
    // 4096 draws: the standard error of the mean is 0.2/64 ~ 0.003.
    assert!((m - M).abs() < 0.015, "{:?} {} steps {schedule:?}: mean {m}", opts.kind, opts.steps);
    assert!(
        (s / S - 1.0).abs() < std_tol,
        "{:?} {} steps {schedule:?}: std {s}",
        opts.kind,
        opts.steps
    );
}

fn opts(kind: SamplerKind, steps: usize) -> SamplerOptions {
    let mut o = SamplerOptions::new(kind, 1000);
    o.steps = steps;
    o.clip_x0 = false;
    o
}

#[test]
fn ddpm_ancestral_reaches_the_data_distribution() {
    check(opts(SamplerKind::Ddpm, 1000), ScheduleName::Linear, ModelVar::FixedSmall, 0.05);
    check(opts(SamplerKind::Ddpm, 1000), ScheduleName::Linear, ModelVar::FixedLarge, 0.08);
    check(opts(SamplerKind::Ddpm, 100), ScheduleName::Cosine, ModelVar::FixedSmall, 0.08);
}

#[test]
fn ddim_reaches_the_data_distribution() {
    check(opts(SamplerKind::Ddim, 50), ScheduleName::Linear, ModelVar::FixedLarge, 0.05);
    let mut q = opts(SamplerKind::Ddim, 50);
    q.skip = Skip::Quadratic;
    check(q, ScheduleName::Linear, ModelVar::FixedLarge, 0.05);
    let mut stochastic = opts(SamplerKind::Ddim, 100);
    stochastic.eta = 1.0;
    check(stochastic, ScheduleName::Linear, ModelVar::FixedLarge, 0.08);
}

#[test]
fn dpm_solver_pp_reaches_the_data_distribution() {
    for placement in [TimeSteps::LogSnr, TimeSteps::Uniform] {
        let mut o = opts(SamplerKind::DpmSolverPp, 20);
        o.time_steps = placement;
        check(o, ScheduleName::Linear, ModelVar::FixedLarge, 0.05);
    }
    check(opts(SamplerKind::DpmSolverPp, 10), ScheduleName::Cosine, ModelVar::FixedLarge, 0.05);
}

#[test]
fn heun_ode_reaches_the_data_distribution() {
    check(opts(SamplerKind::Heun, 18), ScheduleName::Linear, ModelVar::FixedLarge, 0.05);
    check(opts(SamplerKind::Heun, 10), ScheduleName::Cosine, ModelVar::FixedLarge, 0.05);
}

/// The deterministic samplers with the exact score map noise to data by (nearly) the linear
/// flow x0 = m + s x_T: check it pointwise, which is much sharper than moments.
#[test]
fn ode_samplers_follow_the_exact_flow_map() {
    for (kind, steps, tol) in [
        (SamplerKind::Ddim, 100, 0.02),
        (SamplerKind::DpmSolverPp, 20, 0.01),
        (SamplerKind::Heun, 18, 0.01),
    ] {
        let config = DiffusionConfig::default();
        let td = TensorDiffusion::from_config(&config, Device::Cpu).unwrap();
        let mut noise = ImageNoise::new(1, &[0, 1, 2, 3], &[16], Device::Cpu);
        let x_t = noise.next().to_kind(Kind::Double);
        let tdr = &td;
        let mut model = |x: &Tensor, t: &Tensor| {
            let a = abar_at(tdr, t.double_value(&[0]));
            (x - a.sqrt() * M) * ((1.0 - a).sqrt() / (a * S * S + 1.0 - a))
        };
        let o = opts(kind, steps);
        let x0 =
            samplers::sample(&o, &td, &mut model, x_t.shallow_clone(), &mut noise, &mut |_| {})
                .unwrap();
        // Exact flow from t_max: x0 = m + s (x_T - sqrt(abar_T) m) / sqrt(abar_T s^2 + 1 - abar_T).
        let a = *td.diffusion.alphas_cumprod.last().unwrap();
        let want = (&x_t - a.sqrt() * M) * (S / (a * S * S + 1.0 - a).sqrt()) + M;
        let err = (&x0 - &want).abs().max().double_value(&[]);
        assert!(err < tol, "{kind:?}: max deviation from the exact flow {err}");
    }
}
