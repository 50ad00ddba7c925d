//! The paper's pictures, each one call:
//! - [`progressive`]: the predicted x0 at evenly spaced t while sampling (Ho et al. 2020, Fig. 6);
//! - [`interpolate`]: two images encoded by q(x_t | x0), interpolated in x_t, decoded (Fig. 8);
//! - [`trajectories`]: forward and reverse marginals of 2-D data at several t, panels evenly
//!   spaced in log-SNR, with the reverse drift (Sohl-Dickstein et al. 2015, Fig. 1).

use crate::error::{Result, io};
use crate::guidance::GuidedModel;
use crate::noise::ImageNoise;
use ddpm_core::tensor::TensorDiffusion;
use ddpm_run::LoadedModel;
use ddpm_viz::{Arrow, ScatterPanel, ScatterRow};
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

fn to_vec(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(
        t.clamp(-1.0, 1.0).to_device(Device::Cpu).to_kind(Kind::Float).contiguous().flatten(0, -1),
    )
    .unwrap()
}

/// `points` evenly spaced steps of a process of `n` steps, from the first (T-1) to the last (0).
fn evenly(n: usize, points: usize) -> Vec<usize> {
    let points = points.clamp(2, n);
    (0..points).map(|i| (n - 1) - (i * (n - 1)) / (points - 1)).collect()
}

/// Rows: `n` samples; columns: x0_theta(x_t) at `points` evenly spaced t of an ancestral run
/// over `steps` respaced steps, ending with the sample. Writes `progressive.png`.
pub fn progressive(
    model: &LoadedModel,
    seed: u64,
    n: usize,
    steps: usize,
    points: usize,
    out: &Path,
) -> Result<PathBuf> {
    let device = model.vs.device();
    let process = TensorDiffusion::from_config(&model.diffusion, device)?;
    let walk = if steps == process.num_timesteps() {
        process
    } else {
        process.respaced_str(&steps.to_string())?
    };
    let shape = model.net.sample_shape();
    let indices: Vec<u64> = (0..n as u64).collect();
    let mut noise = ImageNoise::new(seed, &indices, &shape, device);
    let x_t = noise.draw();
    let guided = GuidedModel::new(&model.net, 1.0, false);
    let mut net = |x: &Tensor, t: &Tensor| guided.output(x, t, None);
    let keep = evenly(walk.num_timesteps(), points);
    let mut columns: Vec<Tensor> = Vec::new();
    let _ = walk.p_sample_loop(&mut net, x_t, &mut |_| noise.draw(), true, &mut |t, out| {
        if keep.contains(&t) {
            columns.push(out.x0_pred.shallow_clone());
        }
    });
    // [points, n, C, H, W] -> rows of samples: [n, points, ...]
    let stacked = Tensor::stack(&columns, 1).flatten(0, 1);
    let (c, h, w) = (shape[0] as usize, shape[1] as usize, shape[2] as usize);
    let p = out.join("progressive.png");
    ddpm_viz::save_image_grid(
        &p,
        &to_vec(&stacked),
        [n * columns.len(), c, h, w],
        columns.len(),
        (64 / h).max(1),
        2,
    )
    .map_err(io(&p))?;
    Ok(p)
}

/// Encodes images `a` and `b` (C x H x W in [-1, 1]) to x_t with independent noise, decodes
/// (1 - lambda) x_t^a + lambda x_t^b for `lambdas` evenly spaced values with the same reverse
/// noise for every lambda, over `t_steps` ancestral steps; writes `interpolation.png` with
/// the two sources at the ends.
pub fn interpolate(
    model: &LoadedModel,
    seed: u64,
    a: &Tensor,
    b: &Tensor,
    t: usize,
    lambdas: usize,
    out: &Path,
) -> Result<PathBuf> {
    let device = model.vs.device();
    let process = TensorDiffusion::from_config(&model.diffusion, device)?;
    let t = t.min(process.num_timesteps() - 1);
    let shape = model.net.sample_shape();
    let mut enc = ImageNoise::new(seed, &[0, 1], &shape, device);
    let x0 = Tensor::stack(&[a.to_device(device), b.to_device(device)], 0);
    let tb = process.full_t(2, t);
    let xt = process.q_sample(&x0, &tb, &enc.draw());
    let k = lambdas.max(2);
    let ls: Vec<f64> = (0..k).map(|i| i as f64 / (k - 1) as f64).collect();
    let mix: Vec<Tensor> = ls.iter().map(|&l| xt.get(0) * (1.0 - l) + xt.get(1) * l).collect();
    let mut x = Tensor::stack(&mix, 0);
    // One reverse-noise stream shared by every lambda.
    let mut dec = ImageNoise::new(seed ^ 0x5eed, &[0], &shape, device);
    let guided = GuidedModel::new(&model.net, 1.0, false);
    let _g = tch::no_grad_guard();
    for s in (0..=t).rev() {
        let ts = process.full_t(k as i64, s);
        let output = guided.output(&x, &process.model_timesteps(&ts), None);
        let o = process.p_mean_variance(&output, &x, &ts, true);
        x = if s == 0 { o.mean } else { process.p_sample(&o, &ts, &dec.draw().expand_as(&x)) };
    }
    let row =
        Tensor::cat(&[a.to_device(device).unsqueeze(0), x, b.to_device(device).unsqueeze(0)], 0);
    let (c, h, w) = (shape[0] as usize, shape[1] as usize, shape[2] as usize);
    let p = out.join("interpolation.png");
    ddpm_viz::save_image_grid(&p, &to_vec(&row), [k + 2, c, h, w], k + 2, (64 / h).max(1), 2)
        .map_err(io(&p))?;
    Ok(p)
}

/// Log signal-to-noise ratio lambda_t = ln(abar_t / (1 - abar_t)) of x_t, t = 1..=T (paper
/// time: x_0 is the data; `alphas_cumprod[t - 1]` is abar_t).
pub fn log_snr(alphas_cumprod: &[f64], t: usize) -> f64 {
    let abar = alphas_cumprod[t - 1];
    (abar / (1.0 - abar)).ln()
}

/// The range of the data's signal-to-noise variance ratio SNR_t Var(x0) over which a 2-D set
/// dissolves: from noise with a tenth of the data's standard deviation (fine structure such as
/// the roll's arms, 0.42 apart, blurs) to noise as large as the data (one blob). Below that
/// every panel is the same isotropic noise.
pub const STRUCTURE_SNR: (f64, f64) = (100.0, 1.0);

/// The times (paper time, 0 = data, T = the last noise level) of the `points` panels of
/// [`trajectories`]: t = 0, then `points - 2` panels evenly spaced in log-SNR over the range
/// where the data's structure dissolves (SNR_t Var(x0) from 100 down to 1, [`STRUCTURE_SNR`],
/// clamped to the schedule), then t = T, where the reverse process starts from pure noise.
/// Strictly increasing; fewer than `points` only when T is too short to separate them.
pub fn trajectory_times(alphas_cumprod: &[f64], data_var: f64, points: usize) -> Vec<usize> {
    let n_t = alphas_cumprod.len();
    let points = points.clamp(2, n_t + 1);
    let inner = points - 2;
    let (lam_first, lam_last) = (log_snr(alphas_cumprod, 1), log_snr(alphas_cumprod, n_t));
    let var = if data_var > 0.0 && data_var.is_finite() { data_var } else { 1.0 };
    let clamp = |l: f64| l.clamp(lam_last, lam_first);
    let (hi, lo) = (clamp((STRUCTURE_SNR.0 / var).ln()), clamp((STRUCTURE_SNR.1 / var).ln()));
    let mut times = vec![0];
    for i in 0..inner {
        let target = if inner == 1 {
            0.5 * (hi + lo)
        } else {
            hi + (lo - hi) * i as f64 / (inner - 1) as f64
        };
        // lambda_t decreases with t: the t whose lambda is nearest the target, after the last.
        let after = times.last().copied().unwrap_or(0) + 1;
        let t = (after..n_t)
            .min_by(|&a, &b| {
                let (da, db) = (
                    (log_snr(alphas_cumprod, a) - target).abs(),
                    (log_snr(alphas_cumprod, b) - target).abs(),
                );
                da.total_cmp(&db)
            })
            .unwrap_or(n_t);
        if t < n_t {
            times.push(t);
        }
    }
    times.push(n_t);
    times.dedup();
    times
}

/// The 2-D figure of Sohl-Dickstein et al. 2015 (arXiv:1503.03585, Fig. 1): for `points`
/// values of t chosen by [`trajectory_times`] (the data, the range of log-SNR where its
/// structure dissolves, pure noise), a forward row, q(x_t | x_0) of the first `n` points of
/// `data` (N x 2), and a reverse row, the reverse chain's x_t for `n` points started from
/// N(0, I) at t = T, with the reverse drift mu_theta(x_t, t) - x_t as arrows on a grid. The
/// columns share their axes. Writes `trajectories.svg`.
pub fn trajectories(
    model: &LoadedModel,
    seed: u64,
    data: &[[f32; 2]],
    n: usize,
    points: usize,
    out: &Path,
) -> Result<PathBuf> {
    let device = model.vs.device();
    let process = TensorDiffusion::from_config(&model.diffusion, device)?;
    let n_t = process.num_timesteps();
    let m = n.min(data.len()).max(1);
    let x0_pts = &data[..m.min(data.len())];
    let data_var = {
        let mean = |k: usize| x0_pts.iter().map(|p| p[k] as f64).sum::<f64>() / m as f64;
        let (mx, my) = (mean(0), mean(1));
        x0_pts.iter().map(|p| (p[0] as f64 - mx).powi(2) + (p[1] as f64 - my).powi(2)).sum::<f64>()
            / (2 * m) as f64
    };
    let times = trajectory_times(&process.diffusion.alphas_cumprod, data_var, points);
    let flat: Vec<f32> = x0_pts.iter().flat_map(|p| [p[0], p[1]]).collect();
    let x0 = Tensor::from_slice(&flat).view([m as i64, 2]).to_device(device);
    let mut fwd_noise = ImageNoise::new(seed, &(0..m as u64).collect::<Vec<_>>(), &[2], device);
    let indices: Vec<u64> = (0..n as u64).collect();
    let mut noise = ImageNoise::new(seed ^ 0x7a11, &indices, &[2], device);
    let guided = GuidedModel::new(&model.net, 1.0, false);
    let _g = tch::no_grad_guard();
    // The reverse chain: step index s (0-based) takes x_{s+1} to x_s in paper time.
    let mut reverse = std::collections::BTreeMap::new();
    let mut x = noise.draw();
    for s in (0..n_t).rev() {
        if times.contains(&(s + 1)) {
            reverse.insert(s + 1, x.shallow_clone());
        }
        let ts = process.full_t(n as i64, s);
        let o = process.p_mean_variance(
            &guided.output(&x, &process.model_timesteps(&ts), None),
            &x,
            &ts,
            true,
        );
        x = if s == 0 { o.mean } else { process.p_sample(&o, &ts, &noise.draw()) };
    }
    reverse.insert(0, x);
    let pairs = |t: &Tensor| -> Vec<[f32; 2]> {
        to_vec_unclamped(t).chunks(2).map(|c| [c[0], c[1]]).collect()
    };
    let (gray, red) = ("#7f7f7f".to_string(), "#d62728".to_string());
    let mut forward_row = Vec::new();
    let mut reverse_row = Vec::new();
    for &t in &times {
        let q = if t == 0 {
            x0_pts.to_vec()
        } else {
            pairs(&process.q_sample(&x0, &process.full_t(m as i64, t - 1), &fwd_noise.draw()))
        };
        let r = pairs(&reverse[&t]);
        let limit = ddpm_viz::axis_limit(q.iter().chain(r.iter()), 1.0);
        let arrows =
            if t == 0 { Vec::new() } else { drift_arrows(&process, &guided, t, limit, device) };
        let what = match t {
            0 => " (data)".to_string(),
            t if t == n_t => " (noise)".to_string(),
            t => format!(", log SNR {:.1}", log_snr(&process.diffusion.alphas_cumprod, t)),
        };
        forward_row.push(ScatterPanel {
            caption: format!("t = {t}{what}"),
            layers: vec![("forward q(x_t | x_0)".to_string(), q, gray.clone())],
            arrows: Vec::new(),
        });
        reverse_row.push(ScatterPanel {
            caption: if t == 0 { "t = 0 (samples)".into() } else { format!("t = {t}") },
            layers: vec![("reverse p\u{3b8}(x_t)".to_string(), r, red.clone())],
            arrows,
        });
    }
    let rows = [
        ScatterRow { label: "forward".into(), panels: forward_row },
        ScatterRow { label: "reverse".into(), panels: reverse_row },
    ];
    let svg = ddpm_viz::scatter_grid_svg(
        "forward and reverse trajectories (panels evenly spaced in log SNR)",
        &rows,
        1.0,
    );
    let p = out.join("trajectories.svg");
    ddpm_viz::write_atomic(&p, svg.as_bytes()).map_err(io(&p))?;
    Ok(p)
}

/// Grid points per side of the drift arrows.
const ARROW_GRID: usize = 15;

/// The reverse drift mu_theta(x_t, t) - x_t at t (paper time, >= 1) on a 15 x 15 grid over
/// [-0.9 L, 0.9 L]^2, scaled per panel (the median arrow 60 % of the grid spacing, none
/// longer than the spacing).
fn drift_arrows(
    process: &TensorDiffusion,
    guided: &GuidedModel,
    t: usize,
    limit: f64,
    device: Device,
) -> Vec<Arrow> {
    let k = ARROW_GRID;
    let at = |i: usize| (-0.9 + 1.8 * i as f64 / (k - 1) as f64) * limit;
    let grid: Vec<[f32; 2]> = (0..k * k).map(|i| [at(i % k) as f32, at(i / k) as f32]).collect();
    let flat: Vec<f32> = grid.iter().flat_map(|p| [p[0], p[1]]).collect();
    let x = Tensor::from_slice(&flat).view([(k * k) as i64, 2]).to_device(device);
    let ts = process.full_t((k * k) as i64, t - 1);
    let o = process.p_mean_variance(
        &guided.output(&x, &process.model_timesteps(&ts), None),
        &x,
        &ts,
        true,
    );
    let drift = to_vec_unclamped(&(o.mean - &x));
    // Far from the data the drift is much longer than near it: scale the median arrow to 60 %
    // of the grid spacing and cap the long ones at the spacing, so the field near the data
    // (where it points at the structure) stays readable.
    let mut lens: Vec<f64> = drift.chunks(2).map(|d| (d[0] as f64).hypot(d[1] as f64)).collect();
    lens.sort_by(f64::total_cmp);
    let median = lens[lens.len() / 2];
    let spacing = 1.8 * limit / (k - 1) as f64;
    let scale = if median > 0.0 { 0.6 * spacing / median } else { 0.0 };
    grid.iter()
        .zip(drift.chunks(2))
        .map(|(p, d)| {
            let (dx, dy) = (d[0] as f64 * scale, d[1] as f64 * scale);
            let cap = (spacing / dx.hypot(dy).max(1e-30)).min(1.0);
            Arrow { from: *p, delta: [(dx * cap) as f32, (dy * cap) as f32] }
        })
        .collect()
}

fn to_vec_unclamped(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(t.to_device(Device::Cpu).to_kind(Kind::Float).contiguous().flatten(0, -1))
        .unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ddpm_core::DiffusionConfig;

    fn abar(steps: usize, beta_start: f64, beta_end: f64) -> Vec<f64> {
        let c = DiffusionConfig { steps, beta_start, beta_end, ..DiffusionConfig::default() };
        c.build().unwrap().alphas_cumprod
    }

    #[test]
    fn swiss_roll_panels_are_evenly_spaced_in_log_snr_where_the_roll_dissolves() {
        // configs/swissroll.toml: T = 100, betas 1e-3 .. 0.1; the roll's variance is ~0.2.
        let a = abar(100, 1e-3, 0.1);
        let var = 0.2;
        let times = trajectory_times(&a, var, 6);
        assert_eq!(times.len(), 6, "{times:?}");
        assert_eq!((times[0], times[5]), (0, 100));
        assert!(times.windows(2).all(|w| w[0] < w[1]), "{times:?}");
        // The old panels (t = 20, 40, 60, 80) were the same noise from t = 20 on; these stay
        // inside the structured range, SNR Var(x0) from 100 down to 1 (t <= 20).
        assert!(times[4] <= 20, "{times:?}");
        // Evenly spaced in log-SNR from SNR Var(x0) = 100 to 1: each is the integer t whose
        // lambda_t is nearest its target.
        let (hi, lo) = ((STRUCTURE_SNR.0 / var).ln(), (STRUCTURE_SNR.1 / var).ln());
        for (i, &t) in times[1..5].iter().enumerate() {
            let target = hi + (lo - hi) * i as f64 / 3.0;
            let miss = |u: usize| (log_snr(&a, u) - target).abs();
            let below = if t > 1 { miss(t - 1) } else { f64::INFINITY };
            assert!(miss(t) <= below && miss(t) <= miss(t + 1), "t = {t} for {target}");
        }
    }

    #[test]
    fn panel_times_fit_any_schedule() {
        for (steps, b0, b1, var, points) in [
            (1000, 1e-4, 0.02, 0.25, 6),
            (1000, 1e-4, 0.02, 0.25, 10),
            (4, 0.1, 0.5, 0.2, 6),
            (100, 1e-3, 0.1, 1e-6, 5),
            (100, 1e-3, 0.1, 0.2, 2),
        ] {
            let a = abar(steps, b0, b1);
            let times = trajectory_times(&a, var, points);
            assert!(times.windows(2).all(|w| w[0] < w[1]), "{times:?}");
            assert_eq!((times[0], *times.last().unwrap()), (0, steps), "{times:?}");
            assert!(times.len() <= points && times.len() >= 2.min(points), "{times:?}");
            if steps >= 100 {
                assert_eq!(times.len(), points, "{steps} steps: {times:?}");
            }
        }
    }
}
