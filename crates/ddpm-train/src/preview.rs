//! Preview samples during training: a grid from the EMA model with the configured sampler
//! (`train.sample_sampler`, DPM-Solver++ with 20 network evaluations by default) and fixed
//! noise, so that previews of successive steps are comparable; conditional models show every
//! class in turn. `samples/step-<step>.png` (2-D data: `.svg`, the samples over the data),
//! copied to the run's `samples.png`/`samples.svg`. Under a group every rank samples its share
//! of the grid (image i's noise and class depend on (seed, i) alone, so the grid is one
//! process's) and rank 0 gathers and writes it: no rank samples alone while others wait.

use crate::config::RunConfig;
use crate::error::{Result, io};
use ddpm_core::tensor::TensorDiffusion;
use ddpm_data::Dataset;
use ddpm_dist::Dist;
use ddpm_nets::Denoiser;
use ddpm_run::RunDir;
use ddpm_sample::batch::BatchSampler;
use ddpm_sample::job::Labels;
use ddpm_sample::samplers::SamplerOptions;
use std::path::PathBuf;
use tch::Kind;

/// A preview written to disk; `png` holds the grid's bytes for image data.
#[derive(Debug)]
pub struct Preview {
    pub path: PathBuf,
    pub png: Option<Vec<u8>>,
}

/// The preview sampler's options: `train.sample_sampler` over `train.sample_steps`.
pub fn preview_sampler(config: &RunConfig) -> SamplerOptions {
    let kind = config.train.sample_sampler;
    let mut opts = SamplerOptions::new(kind, config.diffusion.steps);
    opts.steps = config.train.sample_steps;
    opts
}

/// Draws the preview of step `step` from `net` (the EMA network), as one rank of `dist`
/// (every rank calls it): rank 0 gets the preview, the other ranks `None`.
pub fn write_preview(
    config: &RunConfig,
    run: &RunDir,
    net: &Denoiser,
    diffusion: &TensorDiffusion,
    data: &Dataset,
    step: u64,
    dist: &Dist,
) -> Result<Option<Preview>> {
    let n = config.train.sample_count;
    let opts = preview_sampler(config);
    let seed = crate::streams::Stream::Preview.seed(config.seed, &[]);
    let mut sampler =
        BatchSampler::new(net, diffusion, opts.clone(), seed, Labels::Cycle, false, None)?;
    let range = dist.shard(n);
    let mine = sampler.sample_range(range.clone(), range.len().max(1), &mut |_| {})?;
    let Some(x0) = dist.gather_rows(&mine.to_device(dist.device()))? else { return Ok(None) };
    let x0 = x0.to_device(tch::Device::Cpu).to_kind(Kind::Float);
    let values = Vec::<f32>::try_from(x0.flatten(0, -1)).expect("f32");
    let shape = net.sample_shape();
    let (path, ext, png) = match shape.len() {
        3 => {
            let (ch, h, w) = (shape[0] as usize, shape[1] as usize, shape[2] as usize);
            let p = run.preview_path(step, "png");
            let nrow = (n as f64).sqrt().ceil() as usize;
            let scale = (64 / h.max(1)).max(1);
            let png =
                ddpm_viz::image_grid_png(&values, [n, ch, h, w], nrow, scale, 2).map_err(io(&p))?;
            ddpm_io::write_atomic(&p, &png).map_err(io(&p))?;
            (p, "png", Some(png))
        }
        _ => {
            let p = run.preview_path(step, "svg");
            let points = data.points_xy(2000);
            let samples: Vec<[f32; 2]> = values.chunks(2).map(|c| [c[0], c[1]]).collect();
            ddpm_viz::scatter_panels_svg(
                &p,
                &format!("{} at step {step}", config.name),
                &[(
                    format!("EMA samples, {} {}", config.train.sample_sampler.name(), opts.steps),
                    vec![
                        ("data".into(), points, "#999999".into()),
                        ("samples".into(), samples, "#d62728".into()),
                    ],
                )],
                1.0,
            )
            .map_err(io(&p))?;
            (p, "svg", None)
        }
    };
    let latest = run.latest_preview_path(ext);
    let bytes = std::fs::read(&path).map_err(io(&path))?;
    ddpm_io::write_atomic(&latest, &bytes).map_err(io(&latest))?;
    Ok(Some(Preview { path, png }))
}
