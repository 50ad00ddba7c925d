//! Errors of data loading: one line each, naming the file or field and what was expected.

use std::path::PathBuf;

/// Why a data set could not be loaded or a loader could not start.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A file or directory that should exist does not; `hint` says what was expected there.
    #[error("{}: not found{}", path.display(), hint.as_deref().map(|h| format!(" ({h})")).unwrap_or_default())]
    NotFound { path: PathBuf, hint: Option<String> },
    /// A file of fixed-size records whose size is not a whole number of records.
    #[error("{}: truncated: {size} bytes is not a whole number of {expected}-byte records", path.display())]
    Truncated { path: PathBuf, size: u64, expected: u64 },
    /// A file shorter than its own header says it is.
    #[error("{}: truncated: {size} bytes, but its header needs {needed}", path.display())]
    TooShort { path: PathBuf, size: u64, needed: u64 },
    /// A file that is not what it should be: bad magic, undecodable image, label out of range.
    #[error("{}: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },
    /// A directory with no usable images in it.
    #[error("{}: no .png/.jpg/.jpeg images found under it", path.display())]
    Empty { path: PathBuf },
    /// An images file and its labels file that disagree on the number of examples.
    #[error(
        "{} holds {num_images} images but {} holds {num_labels} labels",
        images.display(),
        labels.display()
    )]
    Mismatch { images: PathBuf, num_images: u64, labels: PathBuf, num_labels: u64 },
    /// A packaged data set's file that is missing or damaged; `hint` names the package.
    #[error("{source} ({hint})")]
    Package { source: Box<DataError>, hint: String },
    /// A `[data]` config field with an unusable value.
    #[error("data.{field}: {reason}")]
    Config { field: &'static str, reason: String },
    /// A [`LoaderOptions`](crate::LoaderOptions) or [`LoaderState`](crate::LoaderState) field
    /// that does not fit the data set.
    #[error("loader {field}: {reason}")]
    Loader { field: &'static str, reason: String },
    /// Any other I/O failure.
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
}

pub type Result<T, E = DataError> = std::result::Result<T, E>;

/// Maps an I/O error on `path` to [`DataError::NotFound`] or [`DataError::Io`].
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_file_and_the_expectation() {
        let e = DataError::Truncated { path: "a/b.bin".into(), size: 100, expected: 3073 };
        assert_eq!(
            e.to_string(),
            "a/b.bin: truncated: 100 bytes is not a whole number of 3073-byte records"
        );
        let e = DataError::Mismatch {
            images: "i".into(),
            num_images: 3,
            labels: "l".into(),
            num_labels: 4,
        };
        assert_eq!(e.to_string(), "i holds 3 images but l holds 4 labels");
        let e = io("x/y")(std::io::Error::from(std::io::ErrorKind::NotFound));
        assert!(matches!(e, DataError::NotFound { .. }));
        assert_eq!(e.to_string(), "x/y: not found");
        let e = io("x/y")(std::io::Error::from(std::io::ErrorKind::PermissionDenied));
        assert!(matches!(e, DataError::Io { .. }) && e.to_string().starts_with("x/y: "), "{e}");
    }
}
