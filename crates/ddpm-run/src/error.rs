//! Errors of run directories and checkpoints; every message names the file.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// No run under that name, directory or file.
    #[error("{}: {reason}", path.display())]
    NotFound { path: PathBuf, reason: String },
    /// A run directory without a usable checkpoint.
    #[error("{}: no checkpoint yet", path.display())]
    NoCheckpoint { path: PathBuf },
    /// A config or checkpoint that exists but cannot be used.
    #[error("{}: {reason}", path.display())]
    Invalid { path: PathBuf, reason: String },
    #[error(transparent)]
    Net(#[from] ddpm_nets::NetError),
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
}

pub type Result<T, E = RunError> = std::result::Result<T, E>;

pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> RunError {
    let path = path.into();
    move |source| RunError::Io { path, source }
}
