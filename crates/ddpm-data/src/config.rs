//! `[data]` of a run config, and what `--data DIR_OR_DATASET` means.

use crate::dataset::Dataset;
use crate::error::{DataError, Result};
use crate::folder::LoadReport;
use crate::{cifar, digits, fashion, folder, mnist, toy};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The embedded data sets, which need nothing from the user.
pub const EMBEDDED: [&str; 4] = ["digits", "swissroll", "gaussians8", "moons"];

/// The embedded 2-D point sets.
pub const EMBEDDED_POINTS: [&str; 3] = ["swissroll", "gaussians8", "moons"];

/// `[data]`: which data set, where it is, and how to read it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// digits, swissroll, gaussians8, moons, fashion-mnist, cifar10, folder or mnist.
    pub dataset: String,
    /// Directory of the user's data (cifar10, folder, mnist; fashion-mnist defaults to
    /// Debian's package, see [`fashion::DEFAULT_DIR`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// train or test (Fashion-MNIST, CIFAR-10 and MNIST; the other sources have one split).
    pub split: String,
    /// Folders: the square side after resize and crop (default 32); digits: 8 (default), 16 or
    /// 32 (pixels repeated); MNIST: 28 (default) or 32 (zero-padded); CIFAR-10: 32 only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_size: Option<usize>,
    /// Folders: 1 (grayscale) or 3 (RGB, default); other image sources only accept their own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channels: Option<usize>,
    /// Random horizontal flips; default on for natural images (the paper's CIFAR-10 setting),
    /// off for digits and MNIST (a mirrored digit is another glyph) and for points.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub random_flip: Option<bool>,
    /// Image folders: skip unreadable files (counted in the log) instead of failing.
    pub skip_bad_images: bool,
    /// Number of points of the 2-D data sets (default 10 000).
    pub num_points: usize,
    /// Seed of the 2-D data sets' generation (not of the data order, which the loader owns).
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
    /// Whether training flips images horizontally: `random_flip` if set, else on for CIFAR-10
    /// and folders (natural images, as in the paper's CIFAR-10 runs) and off for the rest.
    pub fn random_flip_default(&self) -> bool {
        self.random_flip.unwrap_or(matches!(self.dataset.as_str(), "cifar10" | "folder"))
    }
}

/// `--data X`: an embedded data set or `fashion-mnist` (Debian's package) by name, else a
/// directory holding CIFAR-10 batches, MNIST IDX files, or images.
pub fn config_from_arg(s: &str) -> DataConfig {
    if EMBEDDED.contains(&s) || s == "fashion-mnist" {
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

/// Refuses `channels` other than the data set's own, for sources that cannot convert.
fn check_channels(c: &DataConfig, native: usize) -> Result<()> {
    match c.channels {
        Some(ch) if ch != native => Err(DataError::Config {
            field: "channels",
            reason: format!("{} images have {native} channel(s), got {ch}", c.dataset),
        }),
        _ => Ok(()),
    }
}

/// Loads the configured data set. The report counts images skipped by `skip_bad_images`.
pub fn load(c: &DataConfig) -> Result<(Dataset, LoadReport)> {
    let need_path = || {
        c.path.clone().ok_or(DataError::Config {
            field: "path",
            reason: format!("dataset {:?} needs a path (--data DIR)", c.dataset),
        })
    };
    let points = |f: fn(usize, u64) -> crate::dataset::PointSet| {
        if c.num_points == 0 {
            return Err(DataError::Config {
                field: "num_points",
                reason: "must be positive, got 0".into(),
            });
        }
        Ok((Dataset::Points(f(c.num_points, c.seed)), LoadReport::default()))
    };
    let images = |set| Ok((Dataset::Images(set), LoadReport::default()));
    match c.dataset.as_str() {
        "digits" => {
            check_channels(c, 1)?;
            let path = c.path.clone().unwrap_or_else(digits::default_path);
            images(digits::load(&path, c.image_size)?)
        }
        "swissroll" => points(toy::swissroll),
        "gaussians8" => points(toy::gaussians8),
        "moons" => points(toy::moons),
        "cifar10" => {
            check_channels(c, 3)?;
            if let Some(size) = c.image_size.filter(|&s| s != 32) {
                return Err(DataError::Config {
                    field: "image_size",
                    reason: format!("CIFAR-10 is read at its native 32x32, got {size}"),
                });
            }
            images(cifar::load(&need_path()?, &c.split)?)
        }
        "mnist" => {
            check_channels(c, 1)?;
            images(mnist::load(&need_path()?, &c.split, c.image_size)?)
        }
        "fashion-mnist" => {
            check_channels(c, 1)?;
            images(fashion::load(c.path.as_deref(), &c.split, c.image_size)?)
        }
        "folder" => {
            let size = c.image_size.unwrap_or(32);
            let (set, report) =
                folder::load(&need_path()?, size, c.channels.unwrap_or(3), c.skip_bad_images)?;
            Ok((Dataset::Images(set), report))
        }
        other => Err(DataError::Config {
            field: "dataset",
            reason: format!(
                "unknown data set {other:?}; expected digits, swissroll, gaussians8, moons, fashion-mnist, cifar10, mnist or folder"
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_table_is_the_default_and_unknown_keys_are_refused() {
        let c: DataConfig = toml::from_str("").unwrap();
        assert_eq!(c, DataConfig::default());
        assert_eq!(
            (c.dataset.as_str(), c.split.as_str(), c.num_points),
            ("digits", "train", 10_000)
        );
        let c: DataConfig = toml::from_str("dataset = \"moons\"\nnum_points = 50").unwrap();
        assert_eq!((c.dataset.as_str(), c.num_points, c.seed), ("moons", 50, 0));
        let e = toml::from_str::<DataConfig>("datset = \"moons\"").unwrap_err().to_string();
        assert!(e.contains("datset"), "{e}");
        let back: DataConfig = toml::from_str(&toml::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn flips_default_on_for_natural_images_only() {
        let flip = |name: &str, set: Option<bool>| {
            DataConfig { dataset: name.into(), random_flip: set, ..Default::default() }
                .random_flip_default()
        };
        assert!(flip("cifar10", None) && flip("folder", None));
        assert!(!flip("digits", None) && !flip("mnist", None) && !flip("swissroll", None));
        assert!(flip("digits", Some(true)) && !flip("cifar10", Some(false)));
    }

    #[test]
    fn bare_arguments_name_embedded_sets_or_folders() {
        for name in EMBEDDED {
            assert_eq!(
                config_from_arg(name),
                DataConfig { dataset: name.into(), ..Default::default() }
            );
        }
        let c = config_from_arg("fashion-mnist");
        assert_eq!((c.dataset.as_str(), c.path), ("fashion-mnist", None));
        let c = config_from_arg("/no/such/dir");
        assert_eq!((c.dataset.as_str(), c.path), ("folder", Some(PathBuf::from("/no/such/dir"))));
    }

    #[test]
    fn fields_that_do_not_fit_the_source_are_named() {
        let err = |c: DataConfig| load(&c).unwrap_err().to_string();
        let e = err(DataConfig { dataset: "moons".into(), num_points: 0, ..Default::default() });
        assert!(e.starts_with("data.num_points"), "{e}");
        let cifar =
            DataConfig { dataset: "cifar10".into(), path: Some("/x".into()), ..Default::default() };
        let e = err(DataConfig { image_size: Some(64), ..cifar.clone() });
        assert!(e.starts_with("data.image_size") && e.contains("64"), "{e}");
        let e = err(DataConfig { channels: Some(1), ..cifar });
        assert!(e.starts_with("data.channels") && e.contains("got 1"), "{e}");
        let fashion = DataConfig { dataset: "fashion-mnist".into(), ..Default::default() };
        let e = err(DataConfig { split: "validation".into(), ..fashion.clone() });
        assert!(e.starts_with("data.split: ") && e.contains("\"validation\""), "{e}");
        let e = err(DataConfig { channels: Some(3), ..fashion });
        assert!(e.starts_with("data.channels") && e.contains("got 3"), "{e}");
        let (d, report) =
            load(&DataConfig { dataset: "swissroll".into(), num_points: 7, ..Default::default() })
                .unwrap();
        assert_eq!((d.len(), d.sample_shape(), report), (7, vec![2], LoadReport::default()));
    }
}
