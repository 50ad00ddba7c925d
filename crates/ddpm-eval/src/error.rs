//! Errors of evaluation.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// The Inception weights are not on this machine (they cannot be downloaded here).
    #[error("Inception weights not found at {}: FID/IS need pytorch-fid's pt_inception-2015-12-05-6726825d.pth (its FID_WEIGHTS_URL), converted once with `cargo xtask convert-inception pt_inception-2015-12-05-6726825d.pth {}` (or pass --inception FILE)", .0.display(), .0.display())]
    MissingWeights(PathBuf),
    /// A statistics file that cannot be used.
    #[error("{}: {reason}", path.display())]
    Stats { path: PathBuf, reason: String },
    /// An impossible argument (`-n 0`, `--batch-size 0`), named.
    #[error("{0}")]
    Arg(String),
    /// Sample images that cannot be evaluated together.
    #[error("{0}")]
    Samples(String),
    #[error(transparent)]
    Net(#[from] ddpm_nets::NetError),
    #[error(transparent)]
    Data(#[from] ddpm_data::DataError),
    #[error(transparent)]
    Sample(#[from] ddpm_sample::SampleError),
    #[error(transparent)]
    Core(#[from] ddpm_core::CoreError),
    #[error(transparent)]
    Run(#[from] ddpm_run::RunError),
    #[error(transparent)]
    Array(#[from] ddpm_io::NpyError),
    /// The launcher's environment, or a collective across ranks (a rank died or hung).
    #[error(transparent)]
    Dist(#[from] ddpm_dist::DistError),
    /// The launcher's variables (torchrun, srun) that form no group.
    #[error(transparent)]
    Launcher(#[from] ddpm_dist::EnvError),
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
}

pub type Result<T, E = EvalError> = std::result::Result<T, E>;

pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> EvalError {
    let path = path.into();
    move |source| EvalError::Io { path, source }
}
