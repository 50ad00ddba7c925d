//! Errors of data loading: each names the file or field and what was expected.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{}: not found{}", path.display(), hint.as_deref().map(|h| format!(" ({h})")).unwrap_or_default())]
    NotFound { path: PathBuf, hint: Option<String> },
    #[error("{}: truncated: {size} bytes is not a whole number of {expected}-byte records", path.display())]
    Truncated { path: PathBuf, size: u64, expected: u64 },
    #[error("{}: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },
    #[error("{}: no .png/.jpg/.jpeg images found under it", path.display())]
    Empty { path: PathBuf },
    #[error("{0}")]
    Mismatch(String),
    #[error("data.{field}: {reason}")]
    Config { field: &'static str, reason: String },
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
}

pub type Result<T, E = DataError> = std::result::Result<T, E>;

pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> DataError {
    let path = path.into();
    move |source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            DataError::NotFound { path, hint: None }
        } else {
            DataError::Io { path, source }
        }
    }
}
