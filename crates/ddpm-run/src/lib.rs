//! # ddpm-run
//!
//! One owner for a run on disk. A run is a directory, `runs/<name>/` by default
//! ([`DEFAULT_RUNS_DIR`]); [`RunDir`] knows every file in it (the resolved `config.toml`,
//! `checkpoints/`, `metrics.jsonl` and its plots, preview samples, sampling jobs, FID results)
//! and reads the config's tables as typed sections. [`checkpoint`] owns the checkpoint format:
//! its tensor key prefixes, its metadata, writing (atomic) and reading (validated).
//! [`load_model`] builds a run's network and loads its EMA or raw weights for sampling and
//! evaluation.

pub mod checkpoint;
pub mod error;
pub mod model;
pub mod run_dir;

pub use checkpoint::{AdamMoments, Checkpoint, CheckpointFile, CheckpointMeta};
pub use error::{Result, RunError};
pub use model::{LoadedModel, load_model, open_model};
pub use run_dir::{DEFAULT_RUNS_DIR, RunDir};
