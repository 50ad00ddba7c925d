//! ddpm-core against denoising-diffusion-pytorch (`scripts/ref_ddp.py`), a published package
//! written by other people from the same papers: a second, independent oracle beside the NumPy
//! restatements of `schedule_parity.rs` and `tensor_parity.rs` (which share our reading).
//! Its `GaussianDiffusion` keeps its tables in float32 (computed in float64, then rounded
//! once), so agreement on tables is to float32 rounding (6e-8 relative); its schedule
//! functions return float64 and agree to float64 rounding.
//!
//! Conventions that differ (checked so that they stay known):
//! - its `posterior_log_variance_clipped` clamps beta~_0 = 0 at 1e-20 (log = -46.05) where
//!   improved-diffusion (and we) use log beta~_1; the value at t = 0 is unused by both samplers;
//! - its `p_losses` for x0 and v targets without min-SNR weighting are weighted by SNR and
//!   SNR/(SNR+1) (its `loss_weight`), i.e. they equal the eps loss; ours are the plain MSE of the
//!   target (improved-diffusion's); with min-SNR-5 the weights agree;
//! - its `sigmoid_beta_schedule` is Chen 2023's (arXiv:2212.11972) sigmoid on abar, a different
//!   schedule from our `Sigmoid` (the DDIM code base's sigmoid over betas, whose published
//!   oracle is diffusers' `beta_schedule="sigmoid"`, `schedule_parity.rs`).
#![cfg(feature = "tch")]

use ddpm_core::rng::SplitMix64;
use ddpm_core::tensor::TensorDiffusion;
use ddpm_core::{BetaSchedule, DiffusionConfig, GaussianDiffusion, ModelMean, ScheduleName};
use ddpm_testkit::{NEEDS_VENV, f64s, max_rel_diff, run_json, temp_dir};
use serde_json::{Value, json};
use tch::{Device, Kind, Tensor};

fn ddp(input: Value) -> Value {
    let path = temp_dir("ddp-oracle").join("in.json");
    std::fs::write(&path, input.to_string()).unwrap();
    run_json("ref_ddp.py", &[path.to_str().unwrap()])
}

/// The deterministic "network" `ref_ddp.py` evaluates: tanh(1.3 x) (0.6 + 0.3 cos(t/97)) + 0.1 x.
fn net(x: &Tensor, t: &Tensor) -> Tensor {
    let t = t.to_kind(Kind::Double).view([-1, 1, 1, 1]);
    (x * 1.3).tanh() * ((t / 97.0).cos() * 0.3 + 0.6) + x * 0.1
}

fn to_vec(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(t.to_kind(Kind::Double).flatten(0, -1)).unwrap()
}

#[test]
#[ignore = "needs the Python venv: run `cargo xtask test`"]
fn beta_schedules_match_denoising_diffusion_pytorch() {
    let _ = NEEDS_VENV;
    for t in [1000usize, 500, 4000] {
        let theirs = ddp(json!({"cmd": "schedules", "T": t}));
        // Its linear schedule always scales by 1000/T (improved-diffusion's convention).
        let linear =
            BetaSchedule::Linear { beta_start: 1e-4, beta_end: 0.02, scale_to_steps: true }
                .betas(t)
                .unwrap();
        let d = max_rel_diff(&linear, &f64s(&theirs["linear"]), 1e-300);
        assert!(d < 1e-13, "linear T={t}: {d:e}");
        let cosine = BetaSchedule::paper_cosine().betas(t).unwrap();
        // beta_0 ~ 4e-5 is 1 - a ratio near 1: one ulp of cos costs ~1e-12 relative there.
        let d = max_rel_diff(&cosine, &f64s(&theirs["cosine"]), 1e-300);
        assert!(d < 1e-10, "cosine T={t}: {d:e}");
        // Same name, different schedule (see the module doc): far apart.
        let sigmoid = BetaSchedule::Sigmoid { beta_start: 1e-4, beta_end: 0.02 }.betas(t).unwrap();
        assert!(max_rel_diff(&sigmoid, &f64s(&theirs["sigmoid"]), 1e-300) > 0.5);
    }
}

#[test]
#[ignore = "needs the Python venv: run `cargo xtask test`"]
fn gaussian_diffusion_tables_match_denoising_diffusion_pytorch() {
    for (schedule, name) in [(ScheduleName::Linear, "linear"), (ScheduleName::Cosine, "cosine")] {
        let d: GaussianDiffusion =
            DiffusionConfig { schedule, steps: 1000, ..Default::default() }.build().unwrap();
        let theirs = ddp(json!({"cmd": "math", "T": 1000, "beta_schedule": name,
            "shape": [1, 1, 1, 1], "x0": [0.0], "noise": [0.0], "t": [0]}));
        for (key, ours) in [
            ("betas", &d.betas),
            ("alphas_cumprod", &d.alphas_cumprod),
            ("alphas_cumprod_prev", &d.alphas_cumprod_prev),
            ("sqrt_recipm1_alphas_cumprod", &d.sqrt_recipm1_alphas_cumprod),
            ("posterior_variance", &d.posterior_variance),
            ("posterior_mean_coef1", &d.posterior_mean_coef1),
            ("posterior_mean_coef2", &d.posterior_mean_coef2),
        ] {
            let diff = max_rel_diff(ours, &f64s(&theirs[&format!("buffer_{key}")]), 1e-300);
            assert!(diff < 1.2e-7, "{name} {key}: {diff:e}");
        }
        let plv = f64s(&theirs["buffer_posterior_log_variance_clipped"]);
        let diff = max_rel_diff(&d.posterior_log_variance_clipped[1..], &plv[1..], 1e-300);
        assert!(diff < 1e-7, "{name} posterior_log_variance_clipped[1..]: {diff:e}");
        // t = 0: log(1e-20) there, log beta~_1 here.
        assert!((plv[0] - (1e-20f64).ln()).abs() < 1e-5, "{}", plv[0]);
        assert_eq!(d.posterior_log_variance_clipped[0], d.posterior_variance[1].ln());
    }
}

/// q_sample, the posterior q(x_{t-1} | x_t, x0) and p_losses (L_simple for eps, x0 and v
/// targets, with and without min-SNR-5 weighting) on the same x0, t, noise and network.
#[test]
#[ignore = "needs the Python venv: run `cargo xtask test`"]
fn q_sample_posterior_and_p_losses_match_denoising_diffusion_pytorch() {
    let shape = [4i64, 2, 3, 3];
    let n = shape.iter().product::<i64>() as usize;
    let mut rng = SplitMix64::new(21);
    let x0: Vec<f64> = (0..n).map(|_| rng.next_f64() * 2.0 - 1.0).collect();
    let noise: Vec<f64> = (0..n).map(|_| rng.next_normal()).collect();
    let t = [0i64, 1, 500, 999];
    let (x0_t, noise_t) =
        (Tensor::from_slice(&x0).view(shape), Tensor::from_slice(&noise).view(shape));
    let t_t = Tensor::from_slice(&t);
    let close = |label: &str, ours: &Tensor, theirs: &Value| {
        let (a, b) = (to_vec(ours), f64s(theirs));
        let scale = b.iter().fold(1e-3f64, |m, v| m.max(v.abs()));
        let d = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max) / scale;
        // float32 tables: 6e-8 per coefficient.
        assert!(d < 3e-7, "{label}: {d:e}");
    };
    let mut cases = Vec::new();
    for (schedule, name) in [(ScheduleName::Linear, "linear"), (ScheduleName::Cosine, "cosine")] {
        for (mean, objective) in
            [(ModelMean::Eps, "pred_noise"), (ModelMean::X0, "pred_x0"), (ModelMean::V, "pred_v")]
        {
            for min_snr in [false, true] {
                cases.push((schedule, name, mean, objective, min_snr));
            }
        }
    }
    let inputs: Vec<Value> = cases
        .iter()
        .map(|&(_, name, _, objective, min_snr)| {
            json!({"cmd": "math", "T": 1000, "beta_schedule": name, "objective": objective,
                "min_snr": min_snr, "shape": shape, "x0": x0, "noise": noise, "t": t})
        })
        .collect();
    let outputs = ddp(json!({ "cases": inputs }));
    for (&(schedule, name, mean, objective, min_snr), theirs) in
        cases.iter().zip(outputs.as_array().unwrap())
    {
        let config = DiffusionConfig {
            schedule,
            steps: 1000,
            model_mean: mean,
            min_snr_gamma: min_snr.then_some(5.0),
            ..Default::default()
        };
        let td = TensorDiffusion::from_config(&config, Device::Cpu).unwrap();
        let label = format!("{name} {objective} min_snr={min_snr}");
        let x_t = td.q_sample(&x0_t, &t_t, &noise_t);
        close(&format!("{label} q_sample"), &x_t, &theirs["x_t"]);
        let (pm, pv, plv) = td.q_posterior_mean_variance(&x0_t, &x_t, &t_t);
        let (pv, plv) = (pv.expand_as(&x_t).reshape([-1]), plv.expand_as(&x_t).reshape([-1]));
        close(&format!("{label} posterior mean"), &pm, &theirs["posterior_mean"]);
        // Per-example variances ([B, 1, 1, 1] on their side).
        let pv_theirs = f64s(&theirs["posterior_variance"]);
        let plv_theirs = f64s(&theirs["posterior_log_variance_clipped"]);
        let per = n / shape[0] as usize;
        for (b, &tb) in t.iter().enumerate() {
            let (v, lv) =
                (pv.double_value(&[(b * per) as i64]), plv.double_value(&[(b * per) as i64]));
            assert!((v - pv_theirs[b]).abs() <= 1e-7 * v.abs().max(1e-30), "{label} var t={tb}");
            if tb > 0 {
                assert!((lv - plv_theirs[b]).abs() < 1e-6, "{label} log var t={tb}");
            }
        }
        let terms = td.training_losses(net, &x0_t, &t_t, &noise_t);
        // Without min-SNR, its x0 and v losses carry the weights that make them the eps
        // loss (SNR and SNR/(SNR+1)); ours are the plain MSE of the target. With
        // min-SNR-5 both weight by min(SNR, 5)/SNR, min(SNR, 5), min(SNR, 5)/(SNR+1).
        let snr: Vec<f64> = t.iter().map(|&tb| td.diffusion.snr(tb as usize)).collect();
        let w: Vec<f64> = snr
            .iter()
            .map(|&r| match (mean, min_snr) {
                (ModelMean::X0, false) => r,
                (ModelMean::V, false) => r / (r + 1.0),
                _ => 1.0,
            })
            .collect();
        let weighted = &terms.loss * Tensor::from_slice(&w);
        close(&format!("{label} p_losses"), &weighted, &theirs["loss"]);
    }
}
