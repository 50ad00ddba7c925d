//! `ddpm-eval sampler-sweep`: what each sampler buys per network evaluation (NFE) on a run's
//! own measure. Every sampler at each budget (5, 10, 20 and 50 NFE by default), ancestral
//! sampling also at all T steps, each over a few sampling seeds, measured exactly as
//! `ddpm-eval fid --checkpoint` measures (each cell is such an evaluation, in its own folder
//! under `<run>/fid/`, so a sweep resumes and `fid` finds its samples). Writes `sweep.json`,
//! `sweep.md` (the table: mean +- std over seeds, as a ratio to the data's floor where the
//! measure has one) and `sweep.svg` (distance against NFE, one line per sampler, the floor
//! drawn) into `<run>/sampler-sweep/step<step>[-raw]-n<n>/`.

use crate::args::Common;
use crate::error::{EvalError, Result};
use crate::fid_request::{CheckpointSampling, FidRequest};
use crate::protocol::{EvalOptions, Headline};
use ddpm_dist::Dist;
use ddpm_run::{LoadedModel, RunDir};
use ddpm_sample::samplers::SamplerKind;
use ddpm_sample::{SamplerArgs, SamplerOptions};
use serde::Serialize;
use std::path::PathBuf;
use std::time::Instant;

/// Samples per cell unless `-n` says otherwise (or the measure's own number, if smaller).
pub const DEFAULT_N: usize = 1000;

#[derive(Debug, clap::Args)]
pub struct SweepArgs {
    #[command(flatten)]
    pub common: Common,
    /// A run (name under --runs-dir, directory, or checkpoint file).
    #[arg(long)]
    pub checkpoint: String,
    /// Samplers, comma-separated (default: all six).
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = SamplerKind::ALL)]
    pub samplers: Vec<SamplerKind>,
    /// Network evaluations per image, comma-separated (Heun: the most steps within each).
    #[arg(long, value_delimiter = ',', default_values_t = [5, 10, 20, 50])]
    pub nfe: Vec<usize>,
    /// Also sample ancestrally over all T steps: the reference the budgets are read against.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub ancestral_at_t: bool,
    /// Sampling seeds, comma-separated: each cell is the mean and std over them.
    #[arg(long, value_delimiter = ',', default_values_t = [0, 1])]
    pub seeds: Vec<u64>,
    /// Clipping of the x0 prediction, comma-separated (`true,false` sweeps both); default each
    /// sampler's own (the run's [sampling] clip, else on).
    #[arg(long, value_delimiter = ',')]
    pub clip: Vec<bool>,
    /// Samples per cell (default: 1,000, or the measure's standard number if smaller).
    #[arg(short = 'n', long)]
    pub num: Option<usize>,
    /// Images per sampling batch (default: 64 on the CPU, on CUDA the largest that fits).
    #[arg(long)]
    pub sample_batch_size: Option<usize>,
    /// Sample with the raw weights instead of the EMA weights.
    #[arg(long)]
    pub raw: bool,
    /// Where sweep.json, sweep.md and sweep.svg go (default: <run>/sampler-sweep/step<step>[-raw]-n<n>).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// One sampler setting at one budget: its numbers over the seeds.
#[derive(Debug, Clone, Serialize)]
pub struct Cell {
    pub sampler: SamplerKind,
    pub clip_x0: bool,
    /// The budget asked for (T for the ancestral reference).
    pub nfe_budget: usize,
    pub steps: usize,
    /// What the sampler really spends per image (Heun: 2 steps - 1).
    pub nfe: usize,
    /// Whether this is ancestral sampling over all T steps.
    pub at_t: bool,
    pub metrics: Vec<CellMetric>,
    /// Each seed's evaluation folder (samples and fid.json).
    pub folders: Vec<PathBuf>,
}

/// One metric of a [`Cell`] over the seeds.
#[derive(Debug, Clone, Serialize)]
pub struct CellMetric {
    pub metric: String,
    pub values: Vec<f64>,
    pub mean: f64,
    /// Sample standard deviation over the seeds (absent for one seed).
    pub std: Option<f64>,
    pub floor: Option<f64>,
}

impl CellMetric {
    /// The mean as a ratio to the floor where there is a positive one, else the mean.
    pub fn shown(&self) -> (f64, Option<f64>) {
        match self.floor {
            Some(f) if f > 0.0 => (self.mean / f, self.std.map(|s| s / f)),
            _ => (self.mean, self.std),
        }
    }
}

/// The whole sweep, as `sweep.json` holds it.
#[derive(Debug, Clone, Serialize)]
pub struct Sweep {
    pub checkpoint: String,
    pub step: u64,
    pub weights: &'static str,
    /// Samples per cell.
    pub n: usize,
    pub seeds: Vec<u64>,
    pub num_timesteps: usize,
    /// The run's own measure: the first metric of every cell.
    pub metric: String,
    pub cells: Vec<Cell>,
    pub seconds: f64,
}

/// Mean and sample standard deviation.
pub fn mean_std(v: &[f64]) -> (f64, Option<f64>) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let std = (v.len() > 1)
        .then(|| (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt());
    (mean, std)
}

/// A planned cell: the sampler's options and the budget they came from.
struct Plan {
    options: SamplerOptions,
    budget: usize,
    at_t: bool,
}

impl SweepArgs {
    /// Checks the lists before anything is loaded: every one non-empty, no budget of 0.
    fn check(&self) -> Result<()> {
        let arg = |m: &str| Err(EvalError::Arg(m.into()));
        if self.samplers.is_empty() {
            return arg("--samplers needs at least one sampler");
        }
        if self.nfe.is_empty() && !self.ancestral_at_t {
            return arg("--nfe needs at least one budget (or --ancestral-at-t true)");
        }
        if self.nfe.contains(&0) {
            return arg("--nfe must be at least 1 network evaluation, got 0");
        }
        if self.seeds.is_empty() {
            return arg("--seeds needs at least one seed");
        }
        if self.sample_batch_size == Some(0) {
            return arg("--sample-batch-size must be at least 1");
        }
        Ok(())
    }

    /// Every cell's options, checked against the model (a budget over T is refused by name).
    fn plan(&self, run: &RunDir, model: &LoadedModel) -> Result<Vec<Plan>> {
        let t = model.diffusion.steps;
        if let Some(&big) = self.nfe.iter().find(|&&n| n > t) {
            return Err(EvalError::Arg(format!(
                "--nfe {big} is more than the model's T = {t} steps"
            )));
        }
        let clips: Vec<Option<bool>> = match self.clip.is_empty() {
            true => vec![None],
            false => self.clip.iter().copied().map(Some).collect(),
        };
        let options = |kind: SamplerKind, steps: usize, clip: Option<bool>| {
            SamplerArgs { steps: Some(steps), clip, ..SamplerArgs::for_sampler(kind) }
                .options(run, model)
                .map_err(|e| EvalError::Arg(format!("sampler-sweep: {e}")))
        };
        let mut plan = Vec::new();
        for &kind in &self.samplers {
            for &clip in &clips {
                for &budget in &self.nfe {
                    let o = options(kind, kind.steps_for_evaluations(budget), clip)?;
                    plan.push(Plan { options: o, budget, at_t: false });
                }
            }
        }
        if self.ancestral_at_t {
            for &clip in &clips {
                let o = options(SamplerKind::Ddpm, t, clip)?;
                plan.push(Plan { options: o, budget: t, at_t: true });
            }
        }
        Ok(plan)
    }

    /// Runs every cell as one rank of `dist` (every rank calls it; each cell is shared out as
    /// `fid` shares it), logging each cell and the sweep's progress by network evaluations
    /// (rate, ETA). Rank 0 gets the sweep and its folder, written; the other ranks `None`.
    pub fn run(
        &self,
        device: tch::Device,
        dist: &Dist,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Option<(Sweep, PathBuf)>> {
        self.check()?;
        let (run, model) =
            crate::args::open(&self.checkpoint, &self.common.runs_dir, device, self.raw)?;
        let options = EvalOptions {
            device,
            inception: self.common.inception(),
            reference: None,
            batch_size: self.common.batch_size,
            metrics: crate::Metrics { fid: true, is: false, sfid: false, pr: false },
            ref_features: None,
            fashion: Default::default(),
        };
        let data = run.section("data")?;
        let mut request = FidRequest::for_data(&data, self.num, options)?;
        if self.num.is_none() {
            request.n = request.n.min(DEFAULT_N);
        }
        let plan = self.plan(&run, &model)?;
        let n = request.n;
        let total: usize = plan.iter().map(|p| p.options.network_evaluations()).sum::<usize>()
            * n
            * self.seeds.len();
        let (started, mut done) = (Instant::now(), 0usize);
        let mut cells = Vec::new();
        for (k, p) in plan.iter().enumerate() {
            let o = &p.options;
            let mut values: Vec<Vec<Headline>> = Vec::new();
            let mut folders = Vec::new();
            for &seed in &self.seeds {
                if dist.is_main() {
                    tracing::info!(
                        "cell {}/{}: {} {} steps ({} NFE), clip {}, seed {seed}",
                        k + 1,
                        plan.len(),
                        o.kind().name(),
                        o.steps,
                        o.network_evaluations(),
                        if o.clip_x0 { "on" } else { "off" },
                    );
                }
                let sampling = CheckpointSampling {
                    sampler: o.clone(),
                    seed,
                    batch_size: self.sample_batch_size,
                    out: None,
                };
                let r = request.of_checkpoint(&run, &model, &sampling, dist, progress)?;
                done += o.network_evaluations() * n;
                if let Some((report, folder)) = r {
                    report.write(&folder)?;
                    values.push(report.headlines());
                    folders.push(folder);
                    let s = started.elapsed().as_secs_f64();
                    let rate = done as f64 / s.max(1e-9);
                    tracing::info!(
                        "{:.0} % of the sweep's network evaluations, {rate:.0} image-evaluations/s, ETA {}",
                        100.0 * done as f64 / total as f64,
                        ddpm_cli::fmt_duration((total - done) as f64 / rate.max(1e-9))
                    );
                }
            }
            if values.is_empty() {
                continue;
            }
            let metrics = values[0]
                .iter()
                .enumerate()
                .map(|(i, h)| {
                    let v: Vec<f64> = values.iter().map(|seed| seed[i].value).collect();
                    let (mean, std) = mean_std(&v);
                    CellMetric { metric: h.metric.into(), values: v, mean, std, floor: h.floor }
                })
                .collect::<Vec<_>>();
            cells.push(Cell {
                sampler: o.kind(),
                clip_x0: o.clip_x0,
                nfe_budget: p.budget,
                steps: o.steps,
                nfe: o.network_evaluations(),
                at_t: p.at_t,
                metrics,
                folders,
            });
        }
        if !dist.is_main() {
            return Ok(None);
        }
        let metric = cells.first().and_then(|c| c.metrics.first()).map(|m| m.metric.clone());
        let weights = if model.ema { "ema" } else { "raw" };
        let sweep = Sweep {
            checkpoint: model.checkpoint.display().to_string(),
            step: model.step,
            weights,
            n,
            seeds: self.seeds.clone(),
            num_timesteps: model.diffusion.steps,
            metric: metric.unwrap_or_default(),
            cells,
            seconds: started.elapsed().as_secs_f64(),
        };
        let raw = if model.ema { "" } else { "-raw" };
        let out = self
            .out
            .clone()
            .unwrap_or_else(|| run.sweep_dir(&format!("step{}{raw}-n{n}", model.step)));
        crate::sweep_report::write(&sweep, &out)?;
        Ok(Some((sweep, out)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_and_sample_std_over_seeds() {
        let (m, s) = mean_std(&[1.0, 2.0, 3.0, 6.0]);
        assert_eq!(m, 3.0);
        // sum of squares 4 + 1 + 0 + 9 = 14, over n - 1 = 3.
        assert!((s.unwrap() - (14.0f64 / 3.0).sqrt()).abs() < 1e-15);
        assert_eq!(mean_std(&[2.5]), (2.5, None));
    }

    #[test]
    fn a_cell_is_shown_against_its_floor_where_it_has_one() {
        let m = |floor| CellMetric {
            metric: "fashion_fd".into(),
            values: vec![],
            mean: 6.0,
            std: Some(1.5),
            floor,
        };
        assert_eq!(m(Some(0.5)).shown(), (12.0, Some(3.0)));
        assert_eq!(m(None).shown(), (6.0, Some(1.5)));
        // A floor of 0 or below (KID's unbiased floor can be) is no ratio.
        assert_eq!(m(Some(-0.004)).shown(), (6.0, Some(1.5)));
    }
}
