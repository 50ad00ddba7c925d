//! Run directories: `runs/<name>/` holds `config.toml` (the resolved run config, written before
//! training starts) and `checkpoints/ckpt-<step>.safetensors`. `--checkpoint run1` anywhere
//! resolves to `runs/run1`'s latest good checkpoint; a path to a run directory or to one
//! checkpoint file works too.
//!
//! A checkpoint file holds `model/<key>` and `ema/<key>` tensors (plus whatever training state
//! the trainer adds under other prefixes) and string metadata: `format`, `step`.

use crate::config::ModelConfig;
use crate::denoiser::Denoiser;
use crate::error::{NetError, Result};
use crate::tensorfile::{TensorFile, load_varstore};
use ddpm_core::DiffusionConfig;
use std::path::{Path, PathBuf};
use tch::Device;
use tch::nn::VarStore;

/// The `format` metadata of our checkpoints.
pub const CHECKPOINT_FORMAT: &str = "ddpm-rs-checkpoint-v1";

#[derive(Debug, Clone)]
pub struct RunDir {
    pub root: PathBuf,
    /// A specific checkpoint asked for, instead of the latest.
    pub pinned: Option<PathBuf>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> NetError + '_ {
    move |source| NetError::Io { path: path.into(), source }
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
        Err(NetError::File {
            path: under,
            reason: format!(
                "no run named {name:?} (expected {}/{name}/config.toml, a run directory or a checkpoint file)",
                runs_dir.display()
            ),
        })
    }

    pub fn config_path(&self) -> PathBuf {
        self.root.join("config.toml")
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
    pub fn latest_checkpoint(&self, skipped: &mut Vec<NetError>) -> Option<(u64, TensorFile)> {
        if let Some(p) = &self.pinned {
            return match TensorFile::open(p) {
                Ok(f) => Some((checkpoint_step(&f), f)),
                Err(e) => {
                    skipped.push(e);
                    None
                }
            };
        }
        for (step, path) in self.list_checkpoints().into_iter().rev() {
            match TensorFile::open(&path) {
                Ok(f)
                    if f.metadata.get("format").map(String::as_str) == Some(CHECKPOINT_FORMAT) =>
                {
                    return Some((step, f));
                }
                Ok(_) => skipped.push(NetError::File {
                    path,
                    reason: format!("not a {CHECKPOINT_FORMAT} checkpoint"),
                }),
                Err(e) => skipped.push(e),
            }
        }
        None
    }

    /// The `[model]` and `[diffusion]` tables of the run's config.
    pub fn model_config(&self) -> Result<(ModelConfig, DiffusionConfig)> {
        let path = self.config_path();
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
        let mut table: toml::Table = toml::from_str(&text)
            .map_err(|e| NetError::File { path: path.clone(), reason: e.message().to_owned() })?;
        let section = |t: &mut toml::Table, k: &str| {
            t.remove(k).unwrap_or(toml::Value::Table(Default::default()))
        };
        let model: ModelConfig =
            section(&mut table, "model").try_into().map_err(|e: toml::de::Error| {
                NetError::File { path: path.clone(), reason: format!("[model] {}", e.message()) }
            })?;
        let diffusion: DiffusionConfig =
            section(&mut table, "diffusion").try_into().map_err(|e: toml::de::Error| {
                NetError::File {
                    path: path.clone(),
                    reason: format!("[diffusion] {}", e.message()),
                }
            })?;
        Ok((model, diffusion))
    }
}

/// The `step` metadata of a checkpoint (0 if absent).
pub fn checkpoint_step(f: &TensorFile) -> u64 {
    f.metadata.get("step").and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// A network ready to sample from.
#[derive(Debug)]
pub struct LoadedModel {
    pub net: Denoiser,
    pub vs: VarStore,
    pub model: ModelConfig,
    pub diffusion: DiffusionConfig,
    pub step: u64,
    /// Whether these are the EMA weights.
    pub ema: bool,
    pub checkpoint: PathBuf,
}

/// Builds the run's network on `device` and loads the EMA (or raw) weights of its latest checkpoint.
pub fn load_model(run: &RunDir, device: Device, ema: bool) -> Result<LoadedModel> {
    let (model, diffusion) = run.model_config()?;
    diffusion.validate().map_err(|e| NetError::File {
        path: run.config_path(),
        reason: format!("[diffusion] {e}"),
    })?;
    let mut skipped = Vec::new();
    let Some((step, file)) = run.latest_checkpoint(&mut skipped) else {
        return Err(match skipped.into_iter().next() {
            Some(e) => e,
            None => {
                NetError::File { path: run.checkpoints_dir(), reason: "no checkpoint yet".into() }
            }
        });
    };
    let vs = VarStore::new(device);
    let net = Denoiser::new(&vs.root(), &model, diffusion.model_var.is_learned())?;
    load_varstore(&vs, &file, if ema { "ema/" } else { "model/" })?;
    Ok(LoadedModel { net, vs, model, diffusion, step, ema, checkpoint: file.path.clone() })
}
