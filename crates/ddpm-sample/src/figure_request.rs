//! The paper's figures as the command line asks for them: which figure, its sizes, and the data
//! it needs (the run's own data set unless another is named), checked before any sampling.

use crate::error::{Result, SampleError};
use crate::figures;
use ddpm_data::DataConfig;
use ddpm_run::{LoadedModel, RunDir};
use std::path::{Path, PathBuf};

/// Which figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Figure {
    /// Predicted x0 at evenly spaced t while sampling (paper Fig. 6).
    Progressive,
    /// Two data images encoded to x_t, interpolated, decoded (paper Fig. 8).
    Interpolate,
    /// Forward and reverse marginals of 2-D data (the swiss roll figure).
    Trajectories,
}

/// A figure and its settings (None: the figure's default).
#[derive(Debug, Clone)]
pub struct FigureRequest {
    pub figure: Figure,
    pub seed: u64,
    /// Samples (progressive) or points (trajectories).
    pub num: Option<usize>,
    /// Ancestral steps (progressive).
    pub steps: Option<usize>,
    /// Columns: values of t (progressive, trajectories) or of lambda (interpolate).
    pub points: usize,
    /// Data set for interpolate/trajectories (default: the run's data).
    pub data: Option<String>,
    /// Indices of the two images to interpolate.
    pub pair: [u64; 2],
    /// Diffusion step to encode to for interpolate (default T/2).
    pub t: Option<usize>,
}

fn arg(msg: String) -> SampleError {
    SampleError::Arg(msg)
}

impl FigureRequest {
    /// Checks the sizes before anything is sampled or written: a figure of no samples or of
    /// fewer than two columns (its first and its last t) is refused, not drawn empty or silently
    /// widened.
    pub fn validate(&self) -> Result<()> {
        if self.num == Some(0) {
            return Err(arg("-n must be at least 1".into()));
        }
        if self.points < 2 {
            return Err(arg(format!(
                "--points must be at least 2 (the first and the last column), got {}",
                self.points
            )));
        }
        Ok(())
    }
}

/// Draws the figure into `out` and returns its path.
pub fn draw(r: &FigureRequest, model: &LoadedModel, run: &RunDir, out: &Path) -> Result<PathBuf> {
    r.validate()?;
    // The output folder only once every argument has been checked.
    let mkdir = || std::fs::create_dir_all(out).map_err(crate::error::io(out));
    let t = model.diffusion.steps;
    let shape = model.net.sample_shape();
    let data_config = || -> Result<DataConfig> {
        Ok(match &r.data {
            Some(d) => ddpm_data::config_from_arg(d),
            None => run.section("data")?,
        })
    };
    match r.figure {
        Figure::Progressive => {
            if shape.len() != 3 {
                return Err(arg(
                    "progressive needs an image model; use `trajectories` for 2-D data".into(),
                ));
            }
            let steps = r.steps.unwrap_or(t);
            if steps == 0 || steps > t {
                return Err(arg(format!("--steps must be in 1..=T = {t}, got {steps}")));
            }
            mkdir()?;
            figures::progressive(model, r.seed, r.num.unwrap_or(4), steps, r.points, out)
        }
        Figure::Interpolate => {
            if shape.len() != 3 {
                return Err(arg("interpolate needs an image model".into()));
            }
            let (data, _) = ddpm_data::load(&data_config()?)?;
            let n = data.len() as u64;
            if r.pair.iter().any(|&i| i >= n) {
                return Err(arg(format!(
                    "--pair indices must be below {n} (the data set's size), got {:?}",
                    r.pair
                )));
            }
            if data.sample_shape().iter().map(|&d| d as i64).collect::<Vec<_>>() != shape {
                return Err(arg(format!(
                    "the data's images {:?} do not fit the model's {shape:?}",
                    data.sample_shape()
                )));
            }
            let img = |i: u64| {
                tch::Tensor::from_slice(&data.sample_f32(i as usize)).view(shape.as_slice())
            };
            let step = r.t.unwrap_or(t / 2);
            if step >= t {
                return Err(arg(format!("--t must be below T = {t}, got {step}")));
            }
            let (a, b) = (img(r.pair[0]), img(r.pair[1]));
            mkdir()?;
            figures::interpolate(model, r.seed, &a, &b, step, r.points, out)
        }
        Figure::Trajectories => {
            if shape.len() != 1 || shape[0] != 2 {
                return Err(arg(
                    "trajectories needs a 2-D model (e.g. configs/swissroll.toml)".into()
                ));
            }
            let (data, _) = ddpm_data::load(&data_config()?)?;
            let pts = data.points_xy(usize::MAX);
            mkdir()?;
            figures::trajectories(model, r.seed, &pts, r.num.unwrap_or(2000), r.points.min(6), out)
        }
    }
}
