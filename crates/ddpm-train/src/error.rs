//! Errors of the training library; the binary prints them with anyhow.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Data(#[from] ddpm_data::DataError),
    #[error(transparent)]
    Net(#[from] ddpm_nets::NetError),
    #[error(transparent)]
    Run(#[from] ddpm_run::RunError),
    #[error(transparent)]
    Sample(#[from] ddpm_sample::SampleError),
    #[error(transparent)]
    Eval(#[from] ddpm_eval::EvalError),
    /// The launcher's environment, or a collective of the process group (a rank died or hung).
    #[error(transparent)]
    Dist(#[from] ddpm_dist::DistError),
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    /// The data set does not fit the network.
    #[error("{0}")]
    Mismatch(String),
    /// The run directory holds a run with another configuration.
    #[error("{} holds a run with a different configuration ({differs} differs): resume it with the same config, or choose another --name", dir.display())]
    RunConflict { dir: PathBuf, differs: String },
    /// The loss stopped being finite; no checkpoint was written after it.
    #[error("the loss became NaN or infinite at step {step}; stopped without writing a checkpoint (the last good one is kept{})", last_good.map(|s| format!(", step {s}")).unwrap_or_default())]
    NonFinite { step: u64, last_good: Option<u64> },
    #[error("{0}")]
    Unsupported(String),
}

pub type Result<T, E = TrainError> = std::result::Result<T, E>;

pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> TrainError {
    let path = path.into();
    move |source| TrainError::Io { path, source }
}
