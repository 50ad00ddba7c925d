//! Preview samples during training: a grid from the EMA model with the respaced ancestral
//! sampler (Algorithm 2 over `train.sample_steps` steps) and fixed noise, so that previews of
//! successive steps are comparable. `samples/step-<step>.png` (2-D data: `.svg`, the samples
//! over the data), copied to the run's `samples.png`/`samples.svg`.

use crate::config::{ConfigError, RunConfig};
use crate::error::{Result, TrainError, io};
use ddpm_core::rng::SplitMix64;
use ddpm_core::tensor::TensorDiffusion;
use ddpm_data::Dataset;
use ddpm_nets::Denoiser;
use ddpm_run::RunDir;
use std::path::PathBuf;
use tch::{Device, Kind, Tensor};

const STREAM_PREVIEW: u64 = 3;

/// Draws the preview of step `step` from `net` (the EMA network) and returns its path.
pub fn write_preview(
    config: &RunConfig,
    run: &RunDir,
    net: &Denoiser,
    diffusion: &TensorDiffusion,
    data: &Dataset,
    step: u64,
) -> Result<PathBuf> {
    let n = config.train.sample_count as i64;
    let process = diffusion
        .respaced_str(&config.train.sample_steps.to_string())
        .map_err(|e| TrainError::Config(ConfigError(format!("train.sample_steps: {e}"))))?;
    let shape = net.sample_shape();
    let mut full = vec![n];
    full.extend(&shape);
    let device = diffusion.device;
    let _rng = ddpm_nets::torch_rng_lock();
    tch::manual_seed(SplitMix64::derived(config.seed, &[STREAM_PREVIEW]).next_u64() as i64);
    let x_t = Tensor::randn(full.as_slice(), (Kind::Float, device));
    let y = net.num_classes().map(|k| {
        let labels: Vec<i64> = (0..n).map(|i| i % k as i64).collect();
        Tensor::from_slice(&labels).to_device(device)
    });
    let mut model =
        |x: &Tensor, t: &Tensor| net.forward_t(x, t, y.as_ref(), false).to_kind(Kind::Float);
    let x0 = process.p_sample_loop(
        &mut model,
        x_t,
        &mut |_| Tensor::randn(full.as_slice(), (Kind::Float, device)),
        true,
        &mut |_, _| {},
    );
    let x0 = x0.clamp(-1.0, 1.0).to_device(Device::Cpu);
    let values = Vec::<f32>::try_from(x0.flatten(0, -1)).expect("f32 samples");
    let (path, ext) = match shape.len() {
        3 => {
            let (ch, h, w) = (shape[0] as usize, shape[1] as usize, shape[2] as usize);
            let p = run.preview_path(step, "png");
            let nrow = (n as f64).sqrt().ceil() as usize;
            let scale = (64 / h.max(1)).max(1);
            ddpm_data::viz::save_image_grid(&p, &values, [n as usize, ch, h, w], nrow, scale, 2)
                .map_err(io(&p))?;
            (p, "png")
        }
        _ => {
            let p = run.preview_path(step, "svg");
            let points = data.points_xy(2000);
            let samples: Vec<[f32; 2]> = values.chunks(2).map(|c| [c[0], c[1]]).collect();
            ddpm_data::viz::scatter_panels_svg(
                &p,
                &format!("{} at step {step}", config.name),
                &[(
                    format!("EMA samples, {} steps", config.train.sample_steps),
                    vec![
                        ("data".into(), points, "#999999".into()),
                        ("samples".into(), samples, "#d62728".into()),
                    ],
                )],
                1.0,
            )
            .map_err(io(&p))?;
            (p, "svg")
        }
    };
    let latest = run.latest_preview_path(ext);
    let bytes = std::fs::read(&path).map_err(io(&path))?;
    ddpm_io::write_atomic(&latest, &bytes).map_err(io(&latest))?;
    Ok(path)
}
