//! The run report: `runs/<name>/report.html`, one self-contained page a person can read (and
//! mail, or open from a cluster's file browser): inline SVG plots and base64 PNG sample grids,
//! no scripts, no network. It is generated from what the run directory holds, so it can be
//! rewritten at every logging interval and regenerated for any old run:
//!
//! - `config.toml`: the resolved config (a summary line, and the file itself);
//! - `metrics.jsonl` ([`crate::metrics`]): the loss with its t-quartile curves, the gradient
//!   norm, the learning rate and the throughput;
//! - `eval.jsonl` ([`crate::eval_log`]): each metric over steps beside its data-vs-data
//!   baseline;
//! - `samples/step-<step>.png` (or `.svg` for 2-D data): the preview grids over training;
//! - `checkpoints/`: the latest and best checkpoints.
//!
//! The page is deterministic (no clock in it): the same run directory gives the same bytes.

use crate::config::RunConfig;
use crate::eval_log::{EvalLine, best_by_metric, read_evals};
use crate::metrics::{MetricsLine, read_metrics};
use base64::Engine as _;
use ddpm_run::RunDir;
use ddpm_viz::{LinePlot, Series, esc, write_atomic};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// At most this many sample grids are embedded: the latest and earlier ones evenly spread.
pub const MAX_GRIDS: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{} is not a run directory (no config.toml and no metrics.jsonl)", .0.display())]
    NotARun(PathBuf),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ReportError + '_ {
    move |source| ReportError::Io { path: path.to_path_buf(), source }
}

/// One sample grid of the run: its step and its file.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleGrid {
    pub step: u64,
    pub path: PathBuf,
}

/// The preview grids `samples/step-<step>.{png,svg}`, by step.
pub fn sample_grids(run: &RunDir) -> Vec<SampleGrid> {
    run.previews().into_iter().map(|(step, path)| SampleGrid { step, path }).collect()
}

/// At most `k` of `n` indices, evenly spread, always keeping the last.
fn spread(n: usize, k: usize) -> Vec<usize> {
    if n <= k {
        return (0..n).collect();
    }
    let mut idx: Vec<usize> = (0..k).map(|i| (i * (n - 1)) / (k - 1)).collect();
    idx.dedup();
    idx
}

/// Step numbers of the run's checkpoints, and whether a best checkpoint exists.
fn checkpoints(run: &RunDir) -> (Vec<u64>, bool) {
    let steps = run.list_checkpoints().into_iter().map(|(s, _)| s).collect();
    (steps, run.best_checkpoint_path().exists())
}

/// Four significant digits, scientific when small or large.
fn num(v: f64) -> String {
    if !v.is_finite() {
        return "–".into();
    }
    let a = v.abs();
    if a != 0.0 && !(1e-3..1e6).contains(&a) {
        format!("{v:.3e}")
    } else {
        let decimals = if a == 0.0 { 0 } else { (3 - a.log10().floor() as i32).max(0) as usize };
        format!("{v:.decimals$}")
    }
}

fn series(lines: &[MetricsLine], f: impl Fn(&MetricsLine) -> f64) -> Vec<(f64, f64)> {
    lines.iter().map(|l| (l.step as f64, f(l))).collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The plots of the training curves and of each evaluation metric, as inline SVG elements.
fn plots(lines: &[MetricsLine], evals: &[EvalLine]) -> Vec<(String, String)> {
    let (w, h) = (640.0, 340.0);
    let mut out = Vec::new();
    let q = ["t in [0, T/4)", "t in [T/4, T/2)", "t in [T/2, 3T/4)", "t in [3T/4, T)"];
    // Quartile curves from light (small t: hardest to predict eps) to dark.
    let q_colors = ["#9ecae1", "#6baed6", "#3182bd", "#08519c"];
    let mut loss = LinePlot::new("training loss", "step", "loss (log scale)")
        .log_y(true)
        .size(w, h)
        .with(Series::new("mean over t", series(lines, |l| l.loss)).color("#d62728"));
    for (i, name) in q.iter().enumerate() {
        loss = loss.with(
            Series::new(*name, series(lines, |l| l.loss_by_t_quartile[i])).color(q_colors[i]),
        );
    }
    out.push(("loss".to_string(), loss.to_svg()));
    let mut metrics: Vec<&str> = Vec::new();
    for e in evals {
        if !metrics.contains(&e.metric.as_str()) {
            metrics.push(&e.metric);
        }
    }
    for m in &metrics {
        let of: Vec<&EvalLine> = evals.iter().filter(|e| e.metric == *m).collect();
        let mut plot = LinePlot::new(format!("evaluation: {m}"), "step", *m).size(w, h).with(
            Series::new(*m, of.iter().map(|e| (e.step as f64, e.value)).collect())
                .color("#2ca02c")
                .markers(),
        );
        let base: Vec<(f64, f64)> =
            of.iter().filter_map(|e| Some((e.step as f64, e.baseline?))).collect();
        if !base.is_empty() {
            plot = plot.with(Series::new("data vs data", base).color("#555").dashed());
        }
        out.push((format!("eval-{m}"), plot.to_svg()));
    }
    if metrics.is_empty() {
        let plot = LinePlot::new("evaluation", "step", "metric").size(w, h);
        out.push(("eval".to_string(), plot.to_svg()));
    }
    let single = |id: &str,
                  title: &str,
                  y: &str,
                  log: bool,
                  color: &str,
                  f: &dyn Fn(&MetricsLine) -> f64| {
        let plot = LinePlot::new(title, "step", y)
            .size(w, h)
            .log_y(log)
            .with(Series::new(y, series(lines, f)).color(color));
        (id.to_string(), plot.to_svg())
    };
    out.push(single(
        "grad-norm",
        "gradient norm (before clipping)",
        "global L2 norm",
        true,
        "#9467bd",
        &|l| l.grad_norm,
    ));
    out.push(single("lr", "learning rate", "lr", false, "#8c564b", &|l| l.lr));
    out.push(single("throughput", "throughput", "images / s", false, "#17becf", &|l| {
        l.images_per_s
    }));
    out
}

const STYLE: &str = "\
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;background:#f6f6f4;color:#222}\
main{max-width:1340px;margin:0 auto;padding:20px 28px 40px}\
h1{font-size:26px;margin:8px 0 2px}h2{font-size:18px;margin:28px 0 10px;border-bottom:1px solid #ddd;padding-bottom:4px}\
.sub{color:#555;margin:0 0 14px}\
.cards{display:flex;flex-wrap:wrap;gap:10px}\
.card{background:#fff;border:1px solid #e2e2e2;border-radius:6px;padding:10px 14px;min-width:150px}\
.card .k{font-size:12px;color:#666;text-transform:uppercase;letter-spacing:.04em}\
.card .v{font-size:22px;font-weight:600;margin-top:2px}.card .n{font-size:12px;color:#666}\
.plots{display:grid;grid-template-columns:repeat(auto-fill,minmax(560px,1fr));gap:12px}\
.plots figure{margin:0;background:#fff;border:1px solid #e2e2e2;border-radius:6px;padding:4px}\
.plots svg{width:100%;height:auto;display:block}\
.grids{display:flex;flex-wrap:wrap;gap:14px;align-items:flex-start}\
.grids figure{margin:0;background:#fff;border:1px solid #e2e2e2;border-radius:6px;padding:6px}\
.grids img{display:block;image-rendering:pixelated;max-width:100%}\
figcaption{font-size:13px;color:#444;text-align:center;margin-top:4px}\
pre{background:#fff;border:1px solid #e2e2e2;border-radius:6px;padding:12px;font-size:12.5px;overflow:auto}\
table{border-collapse:collapse;background:#fff}td,th{border:1px solid #e2e2e2;padding:4px 10px;text-align:right}\
th{background:#fafafa}td:first-child,th:first-child{text-align:left}";

/// The report of the run in `run_dir`, as HTML.
pub fn render_report(run: &RunDir) -> Result<String, ReportError> {
    let run_dir = &run.root;
    let config_path = run.config_path();
    let metrics_path = run.metrics_path();
    let config_text = match std::fs::read_to_string(&config_path) {
        Ok(t) => Some(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io(&config_path)(e)),
    };
    let lines = read_metrics(&metrics_path).map_err(io(&metrics_path))?;
    if config_text.is_none() && lines.is_empty() {
        return Err(ReportError::NotARun(run_dir.to_path_buf()));
    }
    let eval_path = run.eval_log_path();
    let evals = read_evals(&eval_path).map_err(io(&eval_path))?;
    let config = config_text.as_ref().map(|_| RunConfig::load(&config_path));
    let dir_name =
        run_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let name = match &config {
        Some(Ok(c)) => c.name.clone(),
        _ => dir_name,
    };

    let mut h = String::with_capacity(1 << 16);
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{} · ddpm-rs run report</title><style>{STYLE}</style></head><body><main>\
         <h1>{}</h1>",
        esc(&name),
        esc(&name)
    );
    let last = lines.last();
    let step = last.map(|l| l.step).unwrap_or(0);
    let total = match &config {
        Some(Ok(c)) => Some(c.train.total_steps),
        _ => None,
    };
    let mut sub = Vec::new();
    if let Some(Ok(c)) = &config {
        sub.push(format!("data <b>{}</b>", esc(&c.data.dataset)));
        sub.push(match &c.model {
            ddpm_nets::ModelConfig::Unet(u) => format!(
                "UNet ch {} x {:?}, {} res block(s), attention at {:?}",
                u.ch, u.ch_mult, u.num_res_blocks, u.attention_resolutions
            ),
            ddpm_nets::ModelConfig::Mlp(m) => {
                format!("MLP {} x {} hidden", m.layers, m.hidden)
            }
        });
        let schedule = serde_json::to_value(c.diffusion.schedule)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        sub.push(format!("T = {}, {} betas", c.diffusion.steps, esc(&schedule)));
        sub.push(format!(
            "batch {}, lr {}, EMA {}",
            c.optim.batch_size, c.optim.lr, c.optim.ema_decay
        ));
    }
    let _ = write!(h, "<p class=\"sub\">{}</p>", sub.join(" · "));

    // Final numbers.
    h.push_str("<section id=\"numbers\"><h2>Numbers</h2><div class=\"cards\">");
    let card = |h: &mut String, k: &str, v: String, n: String| {
        let _ = write!(
            h,
            "<div class=\"card\"><div class=\"k\">{}</div><div class=\"v\">{v}</div><div class=\"n\">{n}</div></div>",
            esc(k)
        );
    };
    let progress = match total {
        Some(t) if step >= t => "finished".to_string(),
        Some(t) => format!("of {t} ({:.0} %)", 100.0 * step as f64 / t.max(1) as f64),
        None => String::new(),
    };
    card(&mut h, "step", step.to_string(), progress);
    if let Some(l) = last {
        let from = step.saturating_sub(step_gap(&lines)) + 1;
        card(&mut h, "loss", num(l.loss), format!("mean of steps {from}-{step}"));
        card(
            &mut h,
            "time",
            ddpm_cli::fmt_duration(l.elapsed_s),
            format!(
                "{} img/s (median)",
                num(median(lines.iter().map(|l| l.images_per_s).collect()))
            ),
        );
    }
    let latest_eval: Vec<&EvalLine> = {
        let mut v: Vec<&EvalLine> = Vec::new();
        for e in evals.iter().rev() {
            if !v.iter().any(|x| x.metric == e.metric) {
                v.push(e);
            }
        }
        v.reverse();
        v
    };
    let best = best_by_metric(&evals);
    for e in &latest_eval {
        let mut note = format!("at step {}", e.step);
        if let Some(b) = e.baseline {
            let _ = write!(note, "; data vs data {}", num(b));
            if let Some(r) = e.ratio_to_baseline() {
                let _ = write!(note, " ({r:.2}x)");
            }
        }
        if let Some(b) = best.iter().find(|b| b.metric == e.metric).filter(|b| b.step != e.step) {
            let _ = write!(note, "; best {} at step {}", num(b.value), b.step);
        }
        card(&mut h, &e.metric, num(e.value), note);
    }
    let (ckpts, has_best) = checkpoints(run);
    if let Some(c) = ckpts.last() {
        card(
            &mut h,
            "checkpoint",
            format!("step {c}"),
            format!("{} kept{}", ckpts.len(), if has_best { ", and best.safetensors" } else { "" }),
        );
    }
    h.push_str("</div></section>");

    // Plots.
    h.push_str("<section id=\"plots\"><h2>Training</h2><div class=\"plots\">");
    for (id, svg) in plots(&lines, &evals) {
        let svg = svg.replacen("<svg xmlns=\"http://www.w3.org/2000/svg\" ", "<svg ", 1);
        let _ = write!(h, "<figure id=\"plot-{}\">{}</figure>", esc(&id), svg.trim_end());
    }
    h.push_str("</div></section>");

    // Sample grids.
    let grids = sample_grids(run);
    let _ = write!(h, "<section id=\"samples\"><h2>Samples (EMA weights)</h2>");
    if grids.is_empty() {
        h.push_str("<p>No sample grid yet.</p>");
    } else {
        h.push_str("<div class=\"grids\">");
        let keep = spread(grids.len(), MAX_GRIDS);
        for (k, &i) in keep.iter().rev().enumerate() {
            let g = &grids[i];
            let bytes = std::fs::read(&g.path).map_err(io(&g.path))?;
            let mime = if g.path.extension().is_some_and(|e| e == "svg") {
                "image/svg+xml"
            } else {
                "image/png"
            };
            let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
            let class = if k == 0 { "latest" } else { "earlier" };
            let width = match png_width(&bytes) {
                Some(w) => {
                    format!(" width=\"{}\"", display_width(w, if k == 0 { 680 } else { 340 }))
                }
                None => String::new(),
            };
            let _ = write!(
                h,
                "<figure class=\"{class}\"><img src=\"data:{mime};base64,{b64}\"{width} alt=\"samples at step {}\">\
                 <figcaption>step {}{}</figcaption></figure>",
                g.step,
                g.step,
                if k == 0 { " (latest)" } else { "" }
            );
        }
        h.push_str("</div>");
        if grids.len() > keep.len() {
            let _ =
                write!(h, "<p class=\"sub\">{} of {} grids shown.</p>", keep.len(), grids.len());
        }
    }
    h.push_str("</section>");

    // Evaluations as a table.
    if !evals.is_empty() {
        h.push_str(
            "<section id=\"evals\"><h2>Evaluations</h2><table><tr><th>step</th><th>metric</th>\
             <th>value</th><th>data vs data</th><th>samples</th><th>sampler</th><th>seconds</th></tr>",
        );
        for e in &evals {
            let opt = |v: Option<String>| v.unwrap_or_default();
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                e.step,
                esc(&e.metric),
                num(e.value),
                opt(e.baseline.map(num)),
                opt(e.samples.map(|s| s.to_string())),
                esc(&opt(e.sampler.clone().map(|s| match e.sampler_steps {
                    Some(n) => format!("{s}, {n} steps"),
                    None => s,
                }))),
                opt(e.seconds.map(|s| format!("{s:.1}"))),
            );
        }
        h.push_str("</table></section>");
    }

    // Config.
    h.push_str("<section id=\"config\"><h2>Config</h2>");
    match (&config_text, &config) {
        (Some(text), Some(Ok(_))) => {
            let _ = write!(h, "<pre>{}</pre>", esc(text));
        }
        (Some(text), Some(Err(e))) => {
            let _ = write!(h, "<p>{}</p><pre>{}</pre>", esc(&e.to_string()), esc(text));
        }
        _ => h.push_str("<p>No config.toml in the run directory.</p>"),
    }
    h.push_str("</section></main></body></html>\n");
    Ok(h)
}

/// The width of a PNG, from its header.
fn png_width(bytes: &[u8]) -> Option<u32> {
    use image::ImageDecoder;
    let d = image::codecs::png::PngDecoder::new(std::io::Cursor::new(bytes)).ok()?;
    Some(d.dimensions().0)
}

/// The largest width natural x k or natural / k (k integer) within `target`, so pixelated
/// grids keep every cell and gutter the same size on screen.
fn display_width(natural: u32, target: u32) -> u32 {
    if natural <= target {
        natural * (target / natural.max(1)).clamp(1, 4)
    } else {
        natural / natural.div_ceil(target)
    }
}

/// Steps between the last two logged lines (the logging interval).
fn step_gap(lines: &[MetricsLine]) -> u64 {
    match lines {
        [.., a, b] => b.step - a.step.min(b.step),
        [a] => a.step,
        [] => 0,
    }
}

/// (Re)writes `run_dir/report.html` atomically and returns its path. Cheap (it reads the logs
/// and at most [`MAX_GRIDS`] sample grids): call it at every logging and sampling interval.
pub fn write_report(run: &RunDir) -> Result<PathBuf, ReportError> {
    let html = render_report(run)?;
    let path = run.report_path();
    write_atomic(&path, html.as_bytes()).map_err(io(&path))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_keeps_the_ends_and_at_most_k() {
        assert_eq!(spread(3, 8), vec![0, 1, 2]);
        let s = spread(100, 8);
        assert_eq!(s.len(), 8);
        assert_eq!((s[0], s[7]), (0, 99));
        assert!(s.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn grids_are_shown_at_integer_scales() {
        assert_eq!(display_width(662, 680), 662);
        assert_eq!(display_width(662, 340), 331);
        assert_eq!(display_width(266, 680), 532);
        assert_eq!(display_width(100, 680), 400);
        assert_eq!(display_width(2000, 680), 666);
    }

    #[test]
    fn numbers_are_short() {
        assert_eq!(num(3.912345), "3.912");
        assert_eq!(num(1234.5), "1234");
        assert_eq!(num(0.0123456), "0.01235");
        assert_eq!(num(2e-4), "2.000e-4");
        assert_eq!(num(f64::NAN), "–");
        assert_eq!(ddpm_cli::fmt_duration(200.0), "3m20s");
    }

    #[test]
    fn a_directory_without_a_run_is_an_error_naming_it() {
        let dir = ddpm_testkit::temp_dir("report-empty");
        let run = RunDir::new(&dir);
        let e = write_report(&run).unwrap_err();
        assert!(e.to_string().contains("not a run directory"), "{e}");
        assert!(!run.report_path().exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
