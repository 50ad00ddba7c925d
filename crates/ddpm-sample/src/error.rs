//! Errors of sampling; the binary prints them on one line and exits with code 2.

#[derive(Debug, thiserror::Error)]
pub enum SampleError {
    /// An impossible argument; the message names it and echoes the value.
    #[error("{0}")]
    Arg(String),
    #[error(transparent)]
    Net(#[from] ddpm_nets::NetError),
    #[error(transparent)]
    Core(#[from] ddpm_core::CoreError),
    #[error(transparent)]
    Run(#[from] ddpm_run::RunError),
    #[error(transparent)]
    Data(#[from] ddpm_data::DataError),
    #[error(transparent)]
    Array(#[from] ddpm_io::NpyError),
    /// The launcher's environment, or a collective across ranks (a rank died or hung).
    #[error(transparent)]
    Dist(#[from] ddpm_dist::DistError),
    #[error("{}: {source}", path.display())]
    Io { path: std::path::PathBuf, source: std::io::Error },
}

pub type Result<T, E = SampleError> = std::result::Result<T, E>;

pub(crate) fn io(
    path: impl Into<std::path::PathBuf>,
) -> impl FnOnce(std::io::Error) -> SampleError {
    let path = path.into();
    move |source| SampleError::Io { path, source }
}
