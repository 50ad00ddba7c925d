//! The paper's pictures, each one call:
//! - [`progressive`]: the predicted x0 at evenly spaced t while sampling (Ho et al. 2020, Fig. 6);
//! - [`interpolate`]: two images encoded by q(x_t | x0), interpolated in x_t, decoded (Fig. 8);
//! - [`trajectories`]: forward and reverse marginals of 2-D data at several t (Sohl-Dickstein et al. 2015, Fig. 1).

use crate::error::{Result, io};
use crate::guidance::GuidedModel;
use crate::noise::ImageNoise;
use ddpm_core::tensor::TensorDiffusion;
use ddpm_run::LoadedModel;
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
    ddpm_data::viz::save_image_grid(
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
    ddpm_data::viz::save_image_grid(&p, &to_vec(&row), [k + 2, c, h, w], k + 2, (64 / h).max(1), 2)
        .map_err(io(&p))?;
    Ok(p)
}

/// For 2-D data: q(x_t | x0) of `data` (N x 2) and the reverse process's x_t at the same t,
/// for `points` evenly spaced t, as one SVG of panels. Writes `trajectories.svg`.
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
    let keep = evenly(process.num_timesteps(), points);
    let m = n.min(data.len()).max(1);
    let flat: Vec<f32> = data[..m].iter().flat_map(|p| [p[0], p[1]]).collect();
    let x0 = Tensor::from_slice(&flat).view([m as i64, 2]).to_device(device);
    let mut fwd_noise = ImageNoise::new(seed, &(0..m as u64).collect::<Vec<_>>(), &[2], device);
    let indices: Vec<u64> = (0..n as u64).collect();
    let mut noise = ImageNoise::new(seed ^ 0x7a11, &indices, &[2], device);
    let x_t = noise.draw();
    let guided = GuidedModel::new(&model.net, 1.0, false);
    // The reverse chain's state x_t entering each step t.
    let mut reverse = std::collections::BTreeMap::new();
    let mut x = x_t;
    {
        let _g = tch::no_grad_guard();
        for s in (0..process.num_timesteps()).rev() {
            if keep.contains(&s) {
                reverse.insert(s, x.shallow_clone());
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
    }
    let final_x = x;
    let pairs = |t: &Tensor| -> Vec<[f32; 2]> {
        to_vec_unclamped(t).chunks(2).map(|c| [c[0], c[1]]).collect()
    };
    let mut panels = Vec::new();
    for &t in keep.iter().rev() {
        let q = process.q_sample(&x0, &process.full_t(m as i64, t), &fwd_noise.draw());
        let r = if t == 0 {
            final_x.shallow_clone()
        } else {
            reverse.get(&t).map(|x| x.shallow_clone()).unwrap_or_else(|| final_x.shallow_clone())
        };
        panels.push((
            format!("t = {t}"),
            vec![
                ("forward q(x_t | x0)".to_string(), pairs(&q), "#7f7f7f".to_string()),
                ("reverse p(x_t)".to_string(), pairs(&r), "#d62728".to_string()),
            ],
        ));
    }
    let p = out.join("trajectories.svg");
    ddpm_data::viz::scatter_panels_svg(&p, "forward and reverse trajectories", &panels, 1.0)
        .map_err(io(&p))?;
    Ok(p)
}

fn to_vec_unclamped(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(t.to_device(Device::Cpu).to_kind(Kind::Float).contiguous().flatten(0, -1))
        .unwrap()
}
