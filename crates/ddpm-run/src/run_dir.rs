//! Run directories. `runs/<name>/` holds:
//!
//! | path | written by |
//! |---|---|
//! | `config.toml` | training, before the first step: the resolved run config |
//! | `checkpoints/ckpt-<step>.safetensors` | training ([`crate::checkpoint`]) |
//! | `metrics.jsonl`, `loss.svg` | training, at each logging interval |
//! | `samples/step-<step>.png` (`.svg` for 2-D data), `samples.png` | training previews |
//! | `eval.jsonl`, `checkpoints/best.safetensors` | evaluation during training |
//! | `tb/events.out.tfevents.*` | TensorBoard event files |
//! | `report.html` | the run report |
//! | `samples/step<step>[-raw]-<sampler>-<steps>[-<sigmas>][-w<w>][-o<digest>]-seed<seed>/` | `ddpm-sample` jobs |
//! | `fid/step<step>[-raw]-<sampler>-<steps>[-<sigmas>][-w<w>][-o<digest>]-n<n>-seed<seed>/` | `ddpm-eval fid` (samples and `fid.json`) |
//!
//! `--checkpoint run1` anywhere resolves to `runs/run1`'s latest good checkpoint; a path to a
//! run directory or to one checkpoint file works too.

use crate::checkpoint::{Checkpoint, CheckpointFile};
use crate::error::{Result, RunError, io};
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};

/// Where runs live unless `--runs-dir` says otherwise.
pub const DEFAULT_RUNS_DIR: &str = "runs";

/// A run directory, and optionally one checkpoint in it asked for by path.
#[derive(Debug, Clone)]
pub struct RunDir {
    pub root: PathBuf,
    /// A specific checkpoint asked for, instead of the latest.
    pub pinned: Option<PathBuf>,
}

impl RunDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into(), pinned: None }
    }

    /// `name` as a run under `runs_dir`, a run directory, or a checkpoint file inside one.
    pub fn resolve(name: &str, runs_dir: &Path) -> Result<Self> {
        let as_path = PathBuf::from(name);
        if as_path.is_file() {
            let root = as_path
                .parent()
                .and_then(|p| {
                    if p.file_name().is_some_and(|f| f == "checkpoints") {
                        p.parent()
                    } else {
                        Some(p)
                    }
                })
                .unwrap_or(Path::new("."))
                .to_path_buf();
            return Ok(Self { root, pinned: Some(as_path) });
        }
        if as_path.join("config.toml").is_file() {
            return Ok(Self::new(as_path));
        }
        let under = runs_dir.join(name);
        if under.join("config.toml").is_file() {
            return Ok(Self::new(under));
        }
        Err(RunError::NotFound {
            path: under,
            reason: format!(
                "no run named {name:?} (expected {}/{name}/config.toml, a run directory or a checkpoint file)",
                runs_dir.display()
            ),
        })
    }

    /// The resolved run config.
    pub fn config_path(&self) -> PathBuf {
        self.root.join("config.toml")
    }

    /// Writes the resolved run config (atomically).
    pub fn write_config(&self, toml_text: &str) -> Result<()> {
        let path = self.config_path();
        ddpm_io::write_atomic(&path, toml_text.as_bytes()).map_err(io(path))
    }

    /// The table `[name]` of the run's config as `T`; a config without the table gives
    /// `T::default()`. Errors name the file and the table.
    pub fn section<T: DeserializeOwned + Default>(&self, name: &str) -> Result<T> {
        let path = self.config_path();
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
        let mut table: toml::Table = toml::from_str(&text).map_err(|e| RunError::Invalid {
            path: path.clone(),
            reason: e.message().to_owned(),
        })?;
        match table.remove(name) {
            None => Ok(T::default()),
            Some(v) => v.try_into().map_err(|e: toml::de::Error| RunError::Invalid {
                path,
                reason: format!("[{name}] {}", e.message()),
            }),
        }
    }

    pub fn checkpoints_dir(&self) -> PathBuf {
        self.root.join("checkpoints")
    }

    pub fn checkpoint_path(&self, step: u64) -> PathBuf {
        self.checkpoints_dir().join(format!("ckpt-{step:09}.safetensors"))
    }

    /// Checkpoint files by step, ascending (temporary files are ignored).
    pub fn list_checkpoints(&self) -> Vec<(u64, PathBuf)> {
        let Ok(entries) = std::fs::read_dir(self.checkpoints_dir()) else { return vec![] };
        let mut v: Vec<(u64, PathBuf)> = entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let step =
                    name.strip_prefix("ckpt-")?.strip_suffix(".safetensors")?.parse().ok()?;
                Some((step, e.path()))
            })
            .collect();
        v.sort();
        v
    }

    /// The pinned checkpoint, or the newest one that opens and validates. A damaged newer file
    /// (say, truncated by a full disk) is reported through `skipped` and passed over.
    pub fn latest_checkpoint(&self, skipped: &mut Vec<RunError>) -> Option<CheckpointFile> {
        if let Some(p) = &self.pinned {
            return Checkpoint::open(p).map_err(|e| skipped.push(e)).ok();
        }
        for (_, path) in self.list_checkpoints().into_iter().rev() {
            match Checkpoint::open(&path) {
                Ok(f) => return Some(f),
                Err(e) => skipped.push(e),
            }
        }
        None
    }

    /// Keeps `written` (the checkpoint just written, known good) and the newest good
    /// checkpoints before it, `keep` in all, and removes the other good ones and the temporary
    /// files that writers killed mid-write left in the checkpoints folder (the trainer of a run
    /// is its only writer; a crashed one leaves a checkpoint-sized file behind).
    ///
    /// A damaged checkpoint (one that [`Checkpoint::open`] refuses) never counts toward
    /// `keep`: were it counted, resuming past a damaged newer file with `keep = 1` would
    /// delete each new checkpoint as soon as it is written, and a crash would then restart
    /// from step 0. Damaged files are left where they are (resume reports them and passes
    /// over them; a later checkpoint of the same step replaces one atomically). Returns the
    /// damaged files found.
    pub fn prune_checkpoints(&self, keep: usize, written: &Path) -> Vec<RunError> {
        let mut damaged = Vec::new();
        let mut kept = 1;
        for (_, path) in self.list_checkpoints().into_iter().rev() {
            if path == written {
                continue;
            }
            match Checkpoint::open(&path) {
                Err(e) => damaged.push(e),
                Ok(_) if kept < keep.max(1) => kept += 1,
                Ok(_) => {
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        for tmp in ddpm_io::stale_temporaries(&self.checkpoints_dir()) {
            let _ = std::fs::remove_file(tmp);
        }
        damaged
    }

    /// One JSON line of training metrics per logging interval.
    pub fn metrics_path(&self) -> PathBuf {
        self.root.join("metrics.jsonl")
    }

    /// The loss curve beside the metrics.
    pub fn loss_plot_path(&self) -> PathBuf {
        self.root.join("loss.svg")
    }

    pub fn samples_dir(&self) -> PathBuf {
        self.root.join("samples")
    }

    /// The preview of step `step`: `samples/step-<step>.<ext>` (`png`, or `svg` for 2-D data).
    pub fn preview_path(&self, step: u64, ext: &str) -> PathBuf {
        self.samples_dir().join(format!("step-{step:09}.{ext}"))
    }

    /// The newest preview, copied to the run's top level: `samples.<ext>`.
    pub fn latest_preview_path(&self, ext: &str) -> PathBuf {
        self.root.join(format!("samples.{ext}"))
    }

    /// Previews written so far, by step: `samples/step-<step>.png` or `.svg`.
    pub fn previews(&self) -> Vec<(u64, PathBuf)> {
        let Ok(entries) = std::fs::read_dir(self.samples_dir()) else { return vec![] };
        let mut v: Vec<(u64, PathBuf)> = entries
            .flatten()
            .filter_map(|e| {
                let path = e.path();
                let name = path.file_name()?.to_str()?;
                let (stem, ext) = name.rsplit_once('.')?;
                if !matches!(ext, "png" | "svg") {
                    return None;
                }
                Some((stem.strip_prefix("step-")?.parse().ok()?, path))
            })
            .collect();
        v.sort();
        v
    }

    /// The metric measured during training, one JSON line per evaluation and metric.
    pub fn eval_log_path(&self) -> PathBuf {
        self.root.join("eval.jsonl")
    }

    /// The checkpoint with the best evaluation so far (not a resume point).
    pub fn best_checkpoint_path(&self) -> PathBuf {
        self.checkpoints_dir().join("best.safetensors")
    }

    /// TensorBoard's event files (`tensorboard --logdir runs` shows every run).
    pub fn tensorboard_dir(&self) -> PathBuf {
        self.root.join("tb")
    }

    /// The run report, one self-contained HTML file.
    pub fn report_path(&self) -> PathBuf {
        self.root.join("report.html")
    }

    /// The output folder of a sampling job named `job` (see `SampleRequest::job_name`).
    pub fn sample_job_dir(&self, job: &str) -> PathBuf {
        self.samples_dir().join(job)
    }

    /// The folder of an FID evaluation named `job`: its samples and `fid.json`.
    pub fn fid_dir(&self, job: &str) -> PathBuf {
        self.root.join("fid").join(job)
    }

    /// The folder of a sampler sweep named `name`: its table, JSON and plot (the samples of
    /// each cell are FID evaluations of their own, under [`RunDir::fid_dir`]).
    pub fn sweep_dir(&self, name: &str) -> PathBuf {
        self.root.join("sampler-sweep").join(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, PartialEq, serde::Deserialize)]
    struct Data {
        dataset: String,
    }

    #[test]
    fn sections_are_typed_and_errors_name_file_and_table() {
        let dir = ddpm_testkit::temp_dir("run-section");
        let run = RunDir::new(&dir);
        run.write_config("name = \"x\"\n[data]\ndataset = \"digits\"\n").unwrap();
        assert_eq!(run.section::<Data>("data").unwrap(), Data { dataset: "digits".into() });
        assert_eq!(run.section::<Data>("absent").unwrap(), Data::default());
        run.write_config("[data]\ndataset = 3\n").unwrap();
        let e = run.section::<Data>("data").unwrap_err().to_string();
        assert!(e.contains("config.toml") && e.contains("[data]"), "{e}");
    }

    #[test]
    fn paths_and_resolution() {
        let runs = ddpm_testkit::temp_dir("run-resolve");
        let run = RunDir::new(runs.join("a"));
        run.write_config("").unwrap();
        assert_eq!(RunDir::resolve("a", &runs).unwrap().root, run.root);
        assert_eq!(run.checkpoint_path(12).file_name().unwrap(), "ckpt-000000012.safetensors");
        assert_eq!(run.preview_path(5, "svg"), run.root.join("samples/step-000000005.svg"));
        let e = RunDir::resolve("b", &runs).unwrap_err().to_string();
        assert!(e.contains("no run named \"b\""), "{e}");
    }
}
