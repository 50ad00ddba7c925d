//! `eval.jsonl`: the run's sample-quality metric measured during training, one JSON object per
//! line and per metric, appended at each evaluation (rank 0, EMA weights):
//!
//! ```json
//! {"step":2000,"metric":"digits_fd","value":3.91,"baseline":3.18,"samples":898,"sampler":"dpm++2m","sampler_steps":20,"seconds":41.2}
//! ```
//!
//! - `step` (required): the optimiser step whose EMA weights were evaluated;
//! - `metric` (required): `digits_fd` (classifier Frechet distance of the digits), `sliced_w2`
//!   (2-D sets), `fid`, `inception_score`, ...; one line per metric when several are measured;
//! - `value` (required);
//! - `baseline`: the same metric between two halves of the data (or the reference set), the
//!   floor a perfect model reaches with this many samples; the report draws it as a line;
//! - `higher_is_better`: false when absent (true for the Inception Score), for "best";
//! - `samples`, `sampler`, `sampler_steps`, `seconds`: how it was measured and how long it took.

use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// One line of `eval.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalLine {
    pub step: u64,
    pub metric: String,
    pub value: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<f64>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub higher_is_better: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub samples: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampler: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampler_steps: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds: Option<f64>,
}

impl EvalLine {
    /// A line with the required fields only.
    pub fn new(step: u64, metric: impl Into<String>, value: f64) -> Self {
        Self {
            step,
            metric: metric.into(),
            value,
            baseline: None,
            higher_is_better: false,
            samples: None,
            sampler: None,
            sampler_steps: None,
            seconds: None,
        }
    }

    /// The value over its baseline (1.23 for "1.23x the floor"), where the baseline is above
    /// zero; none otherwise (KID's floor is about 0 and may be negative: a ratio to it means
    /// nothing).
    pub fn ratio_to_baseline(&self) -> Option<f64> {
        self.baseline.filter(|&b| b > 0.0).map(|b| self.value / b)
    }

    /// Whether `self` is a better value of the same metric than `other`.
    pub fn beats(&self, other: &EvalLine) -> bool {
        if self.higher_is_better { self.value > other.value } else { self.value < other.value }
    }
}

/// Every well-formed line of an `eval.jsonl` (none when the file does not exist); a torn last
/// line from a crash is skipped.
pub fn read_evals(path: &Path) -> std::io::Result<Vec<EvalLine>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// The best line of each metric, in order of first appearance.
pub fn best_by_metric(lines: &[EvalLine]) -> Vec<&EvalLine> {
    let mut best: Vec<&EvalLine> = Vec::new();
    for l in lines.iter().filter(|l| l.value.is_finite()) {
        match best.iter_mut().find(|b| b.metric == l.metric) {
            Some(b) if l.beats(b) => *b = l,
            Some(_) => {}
            None => best.push(l),
        }
    }
    best
}

/// Appends lines to a run's `eval.jsonl`.
#[derive(Debug)]
pub struct EvalLog {
    pub path: PathBuf,
    lines: Vec<EvalLine>,
}

impl EvalLog {
    /// Opens the log of a run, keeping the lines up to `step` (a resumed run drops what it
    /// logged after its checkpoint); rewrites the file atomically when it is not exactly those
    /// lines, so that a torn last line of a crash is dropped here rather than glued to the
    /// next line appended (which would make readers skip that evaluation too).
    pub fn open(run: &ddpm_run::RunDir, step: u64) -> std::io::Result<Self> {
        let path = run.eval_log_path();
        let old = match std::fs::read_to_string(&path) {
            Ok(text) => Some(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let lines: Vec<EvalLine> =
            read_evals(&path)?.into_iter().filter(|l| l.step <= step).collect();
        let mut text = String::new();
        for l in &lines {
            text.push_str(&serde_json::to_string(l).expect("eval lines serialise"));
            text.push('\n');
        }
        if old.is_some_and(|old| old != text) {
            ddpm_io::write_atomic(&path, text.as_bytes())?;
        }
        Ok(Self { path, lines })
    }

    /// Appends one line (one `write` of the whole line, so a crash leaves at most a torn last
    /// line, which readers skip).
    pub fn append(&mut self, line: EvalLine) -> std::io::Result<()> {
        let mut text = serde_json::to_string(&line).expect("eval lines serialise");
        text.push('\n');
        let mut f = std::fs::OpenOptions::new().append(true).create(true).open(&self.path)?;
        f.write_all(text.as_bytes())?;
        self.lines.push(line);
        Ok(())
    }

    pub fn lines(&self) -> &[EvalLine] {
        &self.lines
    }

    /// Whether `line` beats every earlier line of its metric (call it before appending `line`);
    /// the trainer keeps `checkpoints/best.safetensors` when it does.
    pub fn is_best(&self, line: &EvalLine) -> bool {
        line.value.is_finite()
            && self.lines.iter().filter(|l| l.metric == line.metric).all(|l| line.beats(l))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_format_is_stable_and_optional_fields_stay_out() {
        let mut l = EvalLine::new(2000, "digits_fd", 3.91);
        assert_eq!(
            serde_json::to_string(&l).unwrap(),
            r#"{"step":2000,"metric":"digits_fd","value":3.91}"#
        );
        l.baseline = Some(3.18);
        l.samples = Some(898);
        l.sampler = Some("dpm++2m".into());
        l.sampler_steps = Some(20);
        l.seconds = Some(41.2);
        let text = serde_json::to_string(&l).unwrap();
        assert_eq!(
            text,
            r#"{"step":2000,"metric":"digits_fd","value":3.91,"baseline":3.18,"samples":898,"sampler":"dpm++2m","sampler_steps":20,"seconds":41.2}"#
        );
        assert_eq!(serde_json::from_str::<EvalLine>(&text).unwrap(), l);
    }

    #[test]
    fn open_drops_lines_past_the_resumed_step_and_best_follows_the_direction() {
        let dir = ddpm_testkit::temp_dir("eval-log");
        let mut log = EvalLog::open(&ddpm_run::RunDir::new(&dir), 0).unwrap();
        for (s, v) in [(500, 5.0), (1000, 4.0), (1500, 4.5)] {
            log.append(EvalLine::new(s, "digits_fd", v)).unwrap();
        }
        let mut is = EvalLine::new(1500, "inception_score", 2.0);
        is.higher_is_better = true;
        log.append(is.clone()).unwrap();
        // A torn line from a crash is skipped by readers.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&log.path)
            .unwrap()
            .write_all(b"{\"step\":20")
            .unwrap();
        assert_eq!(read_evals(&log.path).unwrap().len(), 4);
        let best = best_by_metric(log.lines());
        assert_eq!(best.len(), 2);
        assert_eq!((best[0].step, best[0].value), (1000, 4.0));
        assert!(log.is_best(&EvalLine::new(2000, "digits_fd", 3.9)));
        assert!(!log.is_best(&EvalLine::new(2000, "digits_fd", 4.1)));
        let mut higher = is.clone();
        higher.value = 2.5;
        assert!(log.is_best(&higher));
        assert!(!log.is_best(&EvalLine::new(2000, "digits_fd", f64::NAN)));
        // Resuming from step 1000 drops the later lines and the torn one.
        let log = EvalLog::open(&ddpm_run::RunDir::new(&dir), 1000).unwrap();
        assert_eq!(log.lines().len(), 2);
        assert_eq!(read_evals(&log.path).unwrap(), log.lines());
        assert!(std::fs::read_to_string(&log.path).unwrap().ends_with("}\n"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Regression: a torn last line from a crash, resumed at a step past every logged line,
    /// stayed in the file, and the next evaluation's line was appended to it, so readers
    /// skipped that evaluation too.
    #[test]
    fn a_torn_last_line_does_not_swallow_the_next_evaluation() {
        let dir = ddpm_testkit::temp_dir("eval-log-torn");
        let run = ddpm_run::RunDir::new(&dir);
        let mut log = EvalLog::open(&run, 0).unwrap();
        log.append(EvalLine::new(500, "digits_fd", 5.0)).unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&log.path)
            .unwrap()
            .write_all(b"{\"step\":1000,\"met")
            .unwrap();
        let mut log = EvalLog::open(&run, 1000).unwrap();
        log.append(EvalLine::new(1000, "digits_fd", 4.0)).unwrap();
        let steps: Vec<u64> = read_evals(&log.path).unwrap().iter().map(|l| l.step).collect();
        assert_eq!(steps, vec![500, 1000]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_log_reads_as_empty() {
        assert!(read_evals(Path::new("/nonexistent/eval.jsonl")).unwrap().is_empty());
    }
}
