//! Errors of the networks crate: configuration, weights files and checkpoints.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A configuration value that cannot describe a network.
    #[error("model.{field}: {reason}")]
    Config { field: &'static str, reason: String },
    /// A weights file that cannot be read at all.
    #[error("{}: {reason}", path.display())]
    File { path: PathBuf, reason: String },
    /// A weights file shorter than its header says (an interrupted copy or write).
    #[error("{}: truncated: the header describes {expected} bytes of data but the file holds {actual}", path.display())]
    Truncated { path: PathBuf, expected: u64, actual: u64 },
    /// Keys the network needs that the file lacks.
    #[error("{}: missing {} tensor(s) for this architecture, e.g. {}", path.display(), keys.len(), keys.iter().take(3).cloned().collect::<Vec<_>>().join(", "))]
    MissingKeys { path: PathBuf, keys: Vec<String> },
    /// Keys in the file that this architecture does not have.
    #[error("{}: {} tensor(s) this architecture does not have, e.g. {}", path.display(), keys.len(), keys.iter().take(3).cloned().collect::<Vec<_>>().join(", "))]
    UnexpectedKeys { path: PathBuf, keys: Vec<String> },
    /// A tensor whose shape differs from the network's.
    #[error("{}: tensor {key} has shape {found:?}, this architecture needs {expected:?}", path.display())]
    Shape { path: PathBuf, key: String, expected: Vec<i64>, found: Vec<i64> },
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Torch(#[from] tch::TchError),
}

pub type Result<T, E = NetError> = std::result::Result<T, E>;
