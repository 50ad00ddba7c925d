//! Training metrics: accumulated on the device between logging intervals (no host sync per
//! step), then written as one JSON line per interval to `metrics.jsonl`, with a loss-curve plot.

use crate::error::{Result, io};
use ddpm_run::RunDir;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// One line of `metrics.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MetricsLine {
    pub step: u64,
    /// Mean training loss over the interval.
    pub loss: f64,
    /// Mean loss for t in each quarter of [0, T).
    pub loss_by_t_quartile: [f64; 4],
    /// Mean global gradient norm before clipping.
    pub grad_norm: f64,
    pub lr: f64,
    pub images_per_s: f64,
    pub elapsed_s: f64,
}

/// Every line of a `metrics.jsonl` (none when the file does not exist), for readers such as
/// the run report. JSON has no NaN: serde_json writes an empty t-quartile's NaN as `null`,
/// which reads back here as NaN (a strict `MetricsLine` parse would drop the whole line).
/// A torn last line from a crash is skipped.
pub fn read_metrics(path: &Path) -> std::io::Result<Vec<MetricsLine>> {
    #[derive(Deserialize)]
    struct Lenient {
        step: u64,
        loss: Option<f64>,
        loss_by_t_quartile: [Option<f64>; 4],
        grad_norm: Option<f64>,
        lr: Option<f64>,
        images_per_s: Option<f64>,
        elapsed_s: Option<f64>,
    }
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let nan = |v: Option<f64>| v.unwrap_or(f64::NAN);
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str::<Lenient>(l).ok())
        .map(|l| MetricsLine {
            step: l.step,
            loss: nan(l.loss),
            loss_by_t_quartile: l.loss_by_t_quartile.map(nan),
            grad_norm: nan(l.grad_norm),
            lr: nan(l.lr),
            images_per_s: nan(l.images_per_s),
            elapsed_s: nan(l.elapsed_s),
        })
        .collect())
}

/// Device-side sums over the current interval.
#[derive(Debug)]
pub struct Accumulator {
    loss_sum: Tensor,
    quartile_sum: Tensor,
    quartile_count: Tensor,
    grad_norm_sum: Tensor,
    /// First step whose loss was not finite, or -1.
    first_bad_step: Tensor,
    pub steps: u64,
    pub examples: u64,
}

impl Accumulator {
    pub fn new(device: Device) -> Self {
        let z = |n: i64| Tensor::zeros([n], (Kind::Double, device));
        Self {
            loss_sum: z(1),
            quartile_sum: z(4),
            quartile_count: z(4),
            grad_norm_sum: z(1),
            first_bad_step: Tensor::full([1], -1, (Kind::Int64, device)),
            steps: 0,
            examples: 0,
        }
    }

    /// Adds step `step` (1-based: the update that just ran): the batch mean loss, per-example
    /// losses with their t, and the grad norm. A non-finite loss or gradient norm is remembered.
    pub fn add(
        &mut self,
        step: u64,
        loss: &Tensor,
        per_example: &Tensor,
        t: &Tensor,
        num_timesteps: usize,
        grad_norm: &Tensor,
    ) {
        tch::no_grad(|| {
            let loss = loss.detach().to_kind(Kind::Double).reshape([1]);
            let _ = self.loss_sum.g_add_(&loss);
            let q = (t * 4).divide_scalar_mode(num_timesteps as i64, "floor").clamp(0, 3);
            let _ =
                self.quartile_sum.scatter_add_(0, &q, &per_example.detach().to_kind(Kind::Double));
            let _ = self.quartile_count.scatter_add_(0, &q, &q.ones_like().to_kind(Kind::Double));
            let _ =
                self.grad_norm_sum.g_add_(&grad_norm.detach().to_kind(Kind::Double).reshape([1]));
            let gn = grad_norm.detach().to_kind(Kind::Double).reshape([1]);
            let finite = loss.isfinite().logical_and(&gn.isfinite());
            let bad = finite.logical_not().logical_and(&self.first_bad_step.lt(0));
            let step_t =
                Tensor::full([1], step as i64, (Kind::Int64, self.first_bad_step.device()));
            self.first_bad_step = step_t.where_self(&bad, &self.first_bad_step);
        });
        self.steps += 1;
        self.examples += per_example.size()[0] as u64;
    }

    /// The first step with a non-finite loss since the accumulator was made (reads back).
    pub fn first_bad_step(&self) -> Option<u64> {
        let v = self.first_bad_step.int64_value(&[0]);
        (v >= 0).then_some(v as u64)
    }

    /// Sums the interval over the ranks of `dist` (one collective, at logging intervals only):
    /// afterwards the sums describe the global batches, as one process's would. Each rank's
    /// loss is the mean over its rows, so the global mean is the mean of the ranks' means; the
    /// gradient norm is the same on every rank (it is taken after the gradient all-reduce).
    /// Without a group, nothing happens.
    pub fn all_reduce(&mut self, dist: &ddpm_dist::Dist) -> ddpm_dist::Result<()> {
        if dist.backend().is_none() {
            return Ok(());
        }
        dist.all_reduce_sum(&[
            self.loss_sum.shallow_clone(),
            self.quartile_sum.shallow_clone(),
            self.quartile_count.shallow_clone(),
            self.grad_norm_sum.shallow_clone(),
        ])?;
        let world = dist.world_size() as f64;
        tch::no_grad(|| {
            let _ = self.loss_sum.g_div_scalar_(world);
            let _ = self.grad_norm_sum.g_div_scalar_(world);
        });
        self.examples *= dist.world_size() as u64;
        Ok(())
    }

    /// Reads the interval back (one host sync) and resets the sums.
    pub fn take(&mut self, step: u64, lr: f64, seconds: f64, elapsed_s: f64) -> MetricsLine {
        let n = self.steps.max(1) as f64;
        let qs = Vec::<f64>::try_from(&self.quartile_sum.to_device(Device::Cpu)).unwrap();
        let qc = Vec::<f64>::try_from(&self.quartile_count.to_device(Device::Cpu)).unwrap();
        let line = MetricsLine {
            step,
            loss: self.loss_sum.double_value(&[0]) / n,
            loss_by_t_quartile: std::array::from_fn(|i| {
                if qc[i] > 0.0 { qs[i] / qc[i] } else { f64::NAN }
            }),
            grad_norm: self.grad_norm_sum.double_value(&[0]) / n,
            lr,
            images_per_s: self.examples as f64 / seconds.max(1e-9),
            elapsed_s,
        };
        tch::no_grad(|| {
            let _ = self.loss_sum.zero_();
            let _ = self.quartile_sum.zero_();
            let _ = self.quartile_count.zero_();
            let _ = self.grad_norm_sum.zero_();
        });
        self.steps = 0;
        self.examples = 0;
        line
    }
}

/// Appends metric lines to the run's `metrics.jsonl` and redraws `loss.svg` beside it.
#[derive(Debug)]
pub struct MetricsLog {
    pub path: PathBuf,
    plot: PathBuf,
    lines: Vec<MetricsLine>,
}

impl MetricsLog {
    /// Opens the log of a run, keeping the lines up to `step` (a resumed run drops the lines
    /// written after its checkpoint).
    pub fn open(run: &RunDir, step: u64) -> Result<Self> {
        let path = run.metrics_path();
        let mut lines = read_metrics(&path).map_err(io(&path))?;
        lines.retain(|l| l.step <= step);
        let mut text = String::new();
        for l in &lines {
            text.push_str(&serde_json::to_string(l).expect("serialises"));
            text.push('\n');
        }
        ddpm_io::write_atomic(&path, text.as_bytes()).map_err(io(&path))?;
        Ok(Self { path, plot: run.loss_plot_path(), lines })
    }

    pub fn append(&mut self, line: MetricsLine) -> Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&self.path)
            .map_err(io(&self.path))?;
        writeln!(f, "{}", serde_json::to_string(&line).expect("serialises"))
            .map_err(io(&self.path))?;
        self.lines.push(line);
        self.plot().map_err(io(&self.plot))
    }

    fn plot(&self) -> std::io::Result<()> {
        let series = |f: &dyn Fn(&MetricsLine) -> f64| -> Vec<(f64, f64)> {
            self.lines.iter().map(|l| (l.step as f64, f(l))).collect()
        };
        ddpm_viz::line_plot_svg(
            &self.plot,
            "training loss",
            "step",
            "loss (log scale)",
            &[
                ("loss", series(&|l| l.loss)),
                ("t in [0, T/4)", series(&|l| l.loss_by_t_quartile[0])),
                ("t in [3T/4, T)", series(&|l| l.loss_by_t_quartile[3])),
            ],
            true,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_t_quartile_survives_the_round_trip_through_json() {
        let line = MetricsLine {
            step: 7,
            loss: 0.5,
            loss_by_t_quartile: [0.9, f64::NAN, 0.3, 0.1],
            grad_norm: 1.0,
            lr: 1e-4,
            images_per_s: 100.0,
            elapsed_s: 3.0,
        };
        let text = serde_json::to_string(&line).unwrap();
        assert!(text.contains("null"), "{text}");
        let dir = ddpm_testkit::temp_dir("metrics-read");
        let path = dir.join("metrics.jsonl");
        std::fs::write(&path, format!("{text}\n{text}\n{{\"step\":9,\"lo")).unwrap();
        let back = read_metrics(&path).unwrap();
        assert_eq!(back.len(), 2);
        assert!(back[0].loss_by_t_quartile[1].is_nan());
        assert_eq!(back[0].loss_by_t_quartile[3], 0.1);
        assert_eq!((back[1].step, back[1].loss), (7, 0.5));
        assert!(read_metrics(&dir.join("none.jsonl")).unwrap().is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
