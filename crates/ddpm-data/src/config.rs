//! `[data]` of a run config, and what `--data DIR_OR_DATASET` means.

use crate::dataset::Dataset;
use crate::error::{DataError, Result};
use crate::folder::LoadReport;
use crate::{cifar, digits, folder, mnist, toy};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The embedded data sets, which need nothing from the user.
pub const EMBEDDED: [&str; 4] = ["digits", "swissroll", "gaussians8", "moons"];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// digits, swissroll, gaussians8, moons, cifar10, folder or mnist.
    pub dataset: String,
    /// Directory of the user's data (cifar10, folder, mnist).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// train or test.
    pub split: String,
    /// Folders: the square side after resize and crop; digits: 8, 16 or 32; MNIST: 28 or 32 (padded).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_size: Option<usize>,
    /// Folders: 1 (grayscale) or 3 (RGB).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channels: Option<usize>,
    /// Random horizontal flips; default on for natural images (the paper's CIFAR-10 setting),
    /// off for digits and MNIST (a mirrored digit is another glyph) and for points.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub random_flip: Option<bool>,
    /// Image folders: skip unreadable files (counted in the log) instead of failing.
    pub skip_bad_images: bool,
    /// Number of points of the 2-D data sets.
    pub num_points: usize,
    /// Seed of the 2-D data sets.
    pub seed: u64,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            dataset: "digits".into(),
            path: None,
            split: "train".into(),
            image_size: None,
            channels: None,
            random_flip: None,
            skip_bad_images: false,
            num_points: 10_000,
            seed: 0,
        }
    }
}

impl DataConfig {
    /// Whether training flips images horizontally.
    pub fn random_flip_default(&self) -> bool {
        self.random_flip.unwrap_or(matches!(self.dataset.as_str(), "cifar10" | "folder"))
    }
}

/// `--data X`: an embedded data set by name, else a directory holding CIFAR-10 batches, MNIST
/// IDX files, or images.
pub fn config_from_arg(s: &str) -> DataConfig {
    if EMBEDDED.contains(&s) {
        return DataConfig { dataset: s.into(), ..Default::default() };
    }
    let path = PathBuf::from(s);
    let dataset = if cifar::is_cifar_dir(&path) {
        "cifar10"
    } else if mnist::is_mnist_dir(&path) {
        "mnist"
    } else {
        "folder"
    };
    DataConfig { dataset: dataset.into(), path: Some(path), ..Default::default() }
}

/// Loads the configured data set.
pub fn load(c: &DataConfig) -> Result<(Dataset, LoadReport)> {
    let need_path = || {
        c.path.clone().ok_or(DataError::Config {
            field: "path",
            reason: format!("dataset {:?} needs a path (--data DIR)", c.dataset),
        })
    };
    let report = LoadReport::default();
    Ok(match c.dataset.as_str() {
        "digits" => {
            let path = c.path.clone().unwrap_or_else(digits::default_path);
            (Dataset::Images(digits::load(&path, c.image_size)?), report)
        }
        "swissroll" => (Dataset::Points(toy::swissroll(c.num_points, c.seed)), report),
        "gaussians8" => (Dataset::Points(toy::gaussians8(c.num_points, c.seed)), report),
        "moons" => (Dataset::Points(toy::moons(c.num_points, c.seed)), report),
        "cifar10" => (Dataset::Images(cifar::load(&need_path()?, &c.split)?), report),
        "mnist" => (Dataset::Images(mnist::load(&need_path()?, &c.split, c.image_size)?), report),
        "folder" => {
            let size = c.image_size.unwrap_or(32);
            let (set, report) =
                folder::load(&need_path()?, size, c.channels.unwrap_or(3), c.skip_bad_images)?;
            (Dataset::Images(set), report)
        }
        other => {
            return Err(DataError::Config {
                field: "dataset",
                reason: format!(
                    "unknown data set {other:?}; expected digits, swissroll, gaussians8, moons, cifar10, mnist or folder"
                ),
            });
        }
    })
}
