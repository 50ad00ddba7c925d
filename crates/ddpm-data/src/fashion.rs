//! Fashion-MNIST (Xiao, Rasul and Vollgraf 2017, arXiv:1708.07747): 60,000 training and 10,000
//! test images of garments, 28x28 grey, 10 balanced classes, in MNIST's IDX format (read by
//! [`crate::mnist`]). Debian's package `dataset-fashion-mnist` installs the four gzipped files
//! in [`DEFAULT_DIR`]; `data.path` (`--data DIR`) points at any other copy.
//!
//! A missing or damaged file is one line naming it and the package that provides it.

use crate::dataset::ImageSet;
use crate::error::{DataError, Result};
use crate::mnist;
use std::path::Path;

/// Where Debian's `dataset-fashion-mnist` installs the files.
pub const DEFAULT_DIR: &str = "/usr/share/datasets/fashion-mnist";
/// The Debian package holding the files.
pub const PACKAGE: &str = "dataset-fashion-mnist";
/// The command that installs it.
pub const INSTALL: &str = "apt-get install dataset-fashion-mnist";
/// Images per class: 6,000 in the training split, 1,000 in the test split.
pub const PER_CLASS: [(&str, usize); 2] = [("train", 6000), ("test", 1000)];
/// The class names, by label.
pub const CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// Reads split `train` or `test` from `dir` (default [`DEFAULT_DIR`]), zero-padded to
/// `image_size` (28 or 32) if given, as [`mnist::load`] does.
pub fn load(dir: Option<&Path>, split: &str, image_size: Option<usize>) -> Result<ImageSet> {
    let dir = dir.unwrap_or(Path::new(DEFAULT_DIR));
    let packaged = dir == Path::new(DEFAULT_DIR);
    let mut set = mnist::load(dir, split, image_size).map_err(|e| match e {
        // A bad config value is the user's, not the files'.
        e @ DataError::Config { .. } => e,
        e => {
            let hint = if packaged {
                format!("Fashion-MNIST from Debian's {PACKAGE}: `{INSTALL}` (or --reinstall)")
            } else {
                format!("Fashion-MNIST IDX files, plain or .gz; Debian's {PACKAGE} installs them in {DEFAULT_DIR} (`{INSTALL}`)")
            };
            DataError::Package { source: Box::new(e), hint }
        }
    })?;
    set.name = "fashion-mnist".into();
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_copy_names_the_path_and_the_package_in_one_line() {
        let e = load(Some(Path::new("/no/such/fashion")), "train", None).unwrap_err().to_string();
        assert!(e.starts_with("/no/such/fashion/train-images-idx3-ubyte: not found"), "{e}");
        assert!(e.contains(PACKAGE) && e.contains(INSTALL) && !e.contains('\n'), "{e}");
        let e = load(Some(Path::new("/no/such/fashion")), "val", None).unwrap_err().to_string();
        assert!(e.starts_with("data.split: ") && e.contains("\"val\""), "{e}");
    }
}
