//! What a sampler sweep ([`crate::sweep`]) writes: `sweep.json` (every number), `sweep.md`
//! (one table per metric: a row per sampler and clipping, a column per budget of network
//! evaluations, mean +- std over the seeds as a ratio to the data's floor) and `sweep.svg`
//! (the run's own measure against NFE on log axes, one line per sampler, the floor and the
//! ancestral sampler at T drawn as dashed lines).

use crate::error::{Result, io};
use crate::sweep::{Cell, CellMetric, Sweep};
use ddpm_viz::{LinePlot, Series};
use std::fmt::Write;
use std::path::Path;

/// Published CIFAR-10 FIDs the 10-NFE line is read beside: DPM-Solver at 10 NFE (Lu et al.
/// 2022) and ancestral sampling at T = 1000 (Ho et al. 2020, Table 1).
const DPM_SOLVER_10_NFE_FID: f64 = 4.70;
const DDPM_1000_STEPS_FID: f64 = 3.17;

/// Writes `sweep.json`, `sweep.md` and `sweep.svg` into `dir` (each atomically).
pub fn write(sweep: &Sweep, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let json = serde_json::to_string_pretty(sweep).expect("serialises");
    for (name, bytes) in [
        ("sweep.json", json.into_bytes()),
        ("sweep.md", markdown(sweep).into_bytes()),
        ("sweep.svg", plot(sweep).to_svg().into_bytes()),
    ] {
        let path = dir.join(name);
        ddpm_io::write_atomic(&path, &bytes).map_err(io(&path))?;
    }
    Ok(())
}

/// "sampler" or "sampler (clip)"/"(no clip)" where the sweep holds both for it.
fn label(sweep: &Sweep, cell: &Cell) -> String {
    let both = sweep.cells.iter().any(|c| c.sampler == cell.sampler && c.clip_x0 != cell.clip_x0);
    match (both, cell.clip_x0) {
        (false, _) => cell.sampler.name().to_string(),
        (true, true) => format!("{} (clip)", cell.sampler.name()),
        (true, false) => format!("{} (no clip)", cell.sampler.name()),
    }
}

fn metric_of<'a>(cell: &'a Cell, metric: &str) -> Option<&'a CellMetric> {
    cell.metrics.iter().find(|m| m.metric == metric)
}

/// "12.3 +- 0.4", with significant digits for small values.
fn number(mean: f64, std: Option<f64>) -> String {
    let digits = if mean.abs() >= 10.0 {
        1
    } else if mean.abs() >= 1.0 {
        2
    } else {
        3
    };
    match std {
        Some(s) => format!("{mean:.digits$} +- {s:.digits$}"),
        None => format!("{mean:.digits$}"),
    }
}

/// The budgets of the table's columns, in order.
fn budgets(sweep: &Sweep) -> Vec<usize> {
    let mut b: Vec<usize> = sweep.cells.iter().filter(|c| !c.at_t).map(|c| c.nfe_budget).collect();
    b.sort_unstable();
    b.dedup();
    b
}

/// The rows of the table: (sampler, clip) in the sweep's order.
fn rows(sweep: &Sweep) -> Vec<(ddpm_sample::SamplerKind, bool)> {
    let mut r = Vec::new();
    for c in sweep.cells.iter().filter(|c| !c.at_t) {
        if !r.contains(&(c.sampler, c.clip_x0)) {
            r.push((c.sampler, c.clip_x0));
        }
    }
    r
}

/// The metrics measured, in the order of the first cell.
fn metric_names(sweep: &Sweep) -> Vec<String> {
    sweep
        .cells
        .first()
        .map(|c| c.metrics.iter().map(|m| m.metric.clone()).collect())
        .unwrap_or_default()
}

/// The table a person reads.
pub fn markdown(sweep: &Sweep) -> String {
    let mut s = String::new();
    let seeds: Vec<String> = sweep.seeds.iter().map(u64::to_string).collect();
    let _ = writeln!(
        s,
        "# Sampler sweep: {}, step {} ({} weights)\n\n{} samples per cell, sampling seeds {}; \
         each cell the mean +- std over the seeds. A cell whose sampler spends fewer network \
         evaluations than its column's budget names them (Heun: 2 steps - 1).\n",
        sweep.checkpoint,
        sweep.step,
        sweep.weights,
        sweep.n,
        seeds.join(", ")
    );
    let budgets = budgets(sweep);
    for metric in metric_names(sweep) {
        let floor = sweep.cells.iter().find_map(|c| metric_of(c, &metric).and_then(|m| m.floor));
        let ratio = floor.is_some_and(|f| f > 0.0);
        let _ = match (floor, ratio) {
            (Some(f), true) => writeln!(
                s,
                "## {metric} / floor\n\n{metric} divided by the data's own {metric} at the same n \
                 ({f:.4}): 1 is as good as the data.\n"
            ),
            (Some(f), false) => {
                writeln!(s, "## {metric}\n\nThe data's own {metric} at the same n: {f:.4}.\n")
            }
            (None, _) => writeln!(s, "## {metric}\n"),
        };
        let mut head = "| sampler | clip x0 |".to_string();
        let mut rule = "|---|---|".to_string();
        for b in &budgets {
            let _ = write!(head, " {b} NFE |");
            rule.push_str("---|");
        }
        let _ = writeln!(s, "{head}\n{rule}");
        for (kind, clip) in rows(sweep) {
            let mut line = format!("| {} | {} |", kind.name(), if clip { "on" } else { "off" });
            for b in &budgets {
                let cell = sweep.cells.iter().find(|c| {
                    !c.at_t && c.sampler == kind && c.clip_x0 == clip && c.nfe_budget == *b
                });
                let text = match cell.and_then(|c| metric_of(c, &metric).map(|m| (c, m))) {
                    Some((c, m)) => {
                        let (v, sd) = m.shown();
                        let spent =
                            if c.nfe != *b { format!(" ({} NFE)", c.nfe) } else { String::new() };
                        format!("{}{spent}", number(v, sd))
                    }
                    None => "".into(),
                };
                let _ = write!(line, " {text} |");
            }
            let _ = writeln!(s, "{line}");
        }
        for c in sweep.cells.iter().filter(|c| c.at_t) {
            if let Some(m) = metric_of(c, &metric) {
                let (v, sd) = m.shown();
                let _ = writeln!(
                    s,
                    "\nAncestral (ddpm) over all T = {} steps, clip {}: {}.",
                    c.steps,
                    if c.clip_x0 { "on" } else { "off" },
                    number(v, sd)
                );
            }
        }
        let _ = writeln!(s);
    }
    if let Some(line) = ten_nfe_line(sweep) {
        let _ = writeln!(s, "{line}");
    }
    s
}

/// The best sampler at 10 NFE beside ancestral sampling at T, on the run's own measure, and
/// the published CIFAR-10 ratio for scale.
pub fn ten_nfe_line(sweep: &Sweep) -> Option<String> {
    let m = &sweep.metric;
    let value = |c: &Cell| metric_of(c, m).map(|x| x.mean);
    let at_t = sweep.cells.iter().filter(|c| c.at_t).filter_map(value).reduce(f64::min)?;
    let best = sweep
        .cells
        .iter()
        .filter(|c| !c.at_t && c.nfe_budget == 10)
        .filter_map(|c| value(c).map(|v| (c, v)))
        .min_by(|a, b| a.1.total_cmp(&b.1))?;
    Some(format!(
        "Best at 10 NFE: {} ({} NFE, clip {}), {m} {:.4}, {:.2}x ancestral sampling over all T \
         ({at_t:.4}). For scale, on CIFAR-10 the published FIDs are {DPM_SOLVER_10_NFE_FID} for \
         DPM-Solver at 10 NFE and {DDPM_1000_STEPS_FID} for ancestral sampling at T = 1000: {:.2}x.",
        best.0.sampler.name(),
        best.0.nfe,
        if best.0.clip_x0 { "on" } else { "off" },
        best.1,
        best.1 / at_t,
        DPM_SOLVER_10_NFE_FID / DDPM_1000_STEPS_FID
    ))
}

/// The run's own measure against NFE: a line per row of the table, the ancestral sampler at
/// T as a dashed line across, and the data floor (1 on the ratio axis).
pub fn plot(sweep: &Sweep) -> LinePlot {
    let m = &sweep.metric;
    let ratio = sweep.cells.iter().find_map(|c| metric_of(c, m)?.floor).is_some_and(|f| f > 0.0);
    let y_label = if ratio { format!("{m} / floor") } else { m.clone() };
    let mut p = LinePlot::new(
        format!("{}: samplers by network evaluations (n = {})", sweep.checkpoint_name(), sweep.n),
        "network evaluations per image (NFE)",
        y_label,
    )
    .log_x(true)
    .log_y(true);
    for (kind, clip) in rows(sweep) {
        let cells =
            sweep.cells.iter().filter(|c| !c.at_t && c.sampler == kind && c.clip_x0 == clip);
        let mut points: Vec<(f64, f64)> =
            cells.filter_map(|c| metric_of(c, m).map(|x| (c.nfe as f64, x.shown().0))).collect();
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        let any = sweep.cells.iter().find(|c| c.sampler == kind && c.clip_x0 == clip);
        let name = any.map(|c| label(sweep, c)).unwrap_or_else(|| kind.name().into());
        p = p.with(Series::new(name, points).markers());
    }
    let xs: Vec<f64> = sweep.cells.iter().map(|c| c.nfe as f64).collect();
    let (lo, hi) = xs.iter().fold((f64::INFINITY, 0.0f64), |(a, b), &x| (a.min(x), b.max(x)));
    for c in sweep.cells.iter().filter(|c| c.at_t) {
        if let Some(x) = metric_of(c, m) {
            let v = x.shown().0;
            let name =
                format!("ddpm at T = {}{}", c.steps, if c.clip_x0 { "" } else { ", no clip" });
            p = p.with(Series::new(name, vec![(lo, v), (hi, v)]).dashed().color("#555555"));
        }
    }
    if ratio {
        p = p.with(Series::new("data floor", vec![(lo, 1.0), (hi, 1.0)]).dashed().color("#999999"));
    }
    p
}

impl Sweep {
    /// The run's name: the checkpoint file's run folder.
    pub fn checkpoint_name(&self) -> String {
        let path = Path::new(&self.checkpoint);
        let run = path.parent().and_then(|p| p.parent()).and_then(|p| p.file_name());
        run.map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| self.checkpoint.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ddpm_sample::SamplerKind;

    fn cell(sampler: SamplerKind, clip: bool, budget: usize, nfe: usize, fds: &[f64]) -> Cell {
        let (mean, std) = crate::sweep::mean_std(fds);
        Cell {
            sampler,
            clip_x0: clip,
            nfe_budget: budget,
            steps: nfe,
            nfe,
            at_t: budget == 1000,
            metrics: vec![CellMetric {
                metric: "fashion_fd".into(),
                values: fds.to_vec(),
                mean,
                std,
                floor: Some(0.5),
            }],
            folders: vec![],
        }
    }

    fn sweep() -> Sweep {
        Sweep {
            checkpoint: "runs/fm/checkpoints/ckpt-000002000.safetensors".into(),
            step: 2000,
            weights: "ema",
            n: 500,
            seeds: vec![0, 1],
            num_timesteps: 1000,
            metric: "fashion_fd".into(),
            cells: vec![
                cell(SamplerKind::Ddim, true, 10, 10, &[4.0, 6.0]),
                cell(SamplerKind::Ddim, true, 20, 20, &[3.0, 3.0]),
                cell(SamplerKind::Heun, false, 10, 9, &[2.0, 4.0]),
                cell(SamplerKind::Heun, false, 20, 19, &[1.5, 1.5]),
                cell(SamplerKind::Ddpm, true, 1000, 1000, &[1.0, 1.2]),
            ],
            seconds: 1.0,
        }
    }

    #[test]
    fn the_table_has_a_row_per_sampler_a_column_per_budget_and_ratios_to_the_floor() {
        let md = markdown(&sweep());
        let table: Vec<&str> = md.lines().filter(|l| l.starts_with('|')).collect();
        assert_eq!(table[0], "| sampler | clip x0 | 10 NFE | 20 NFE |");
        // ddim at 10: mean 5 over floor 0.5 = 10.0, std sqrt(2) / 0.5 = 2.83.
        assert_eq!(table[2], "| ddim | on | 10.0 +- 2.8 | 6.00 +- 0.00 |");
        // Heun spends 9 and 19: named in the cell.
        assert_eq!(table[3], "| heun | off | 6.00 +- 2.83 (9 NFE) | 3.00 +- 0.00 (19 NFE) |");
        assert_eq!(table.len(), 4);
        assert!(
            md.contains("Ancestral (ddpm) over all T = 1000 steps, clip on: 2.20 +- 0.28."),
            "{md}"
        );
        // The best at 10 NFE is heun's 3.0, against 1.1 at T: 2.73x; the published 1.48x beside.
        let line = ten_nfe_line(&sweep()).unwrap();
        assert!(
            line.starts_with("Best at 10 NFE: heun (9 NFE, clip off), fashion_fd 3.0000, 2.73x"),
            "{line}"
        );
        assert!(line.contains(": 1.48x."), "{line}");
    }

    #[test]
    fn the_plot_has_a_line_per_sampler_the_ancestral_reference_and_the_floor() {
        let p = plot(&sweep());
        let names: Vec<&str> = p.series.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, vec!["ddim", "heun", "ddpm at T = 1000", "data floor"]);
        assert_eq!(p.series[1].points, vec![(9.0, 6.0), (19.0, 3.0)]);
        assert_eq!(p.series[2].points, vec![(9.0, 2.2), (1000.0, 2.2)]);
        assert_eq!(p.series[3].points, vec![(9.0, 1.0), (1000.0, 1.0)]);
        assert!(p.log_x && p.log_y && p.series[3].dashed);
        assert_eq!(p.to_svg().matches("class=\"series\"").count(), 4);
    }

    #[test]
    fn both_clip_settings_of_one_sampler_get_their_own_labels() {
        let mut s = sweep();
        s.cells.push(cell(SamplerKind::Ddim, false, 10, 10, &[8.0, 8.0]));
        let names: Vec<String> = plot(&s).series.iter().map(|x| x.name.clone()).collect();
        assert_eq!(names[..3], ["ddim (clip)", "heun", "ddim (no clip)"]);
    }
}
