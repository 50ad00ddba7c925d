//! The Fashion-MNIST measure, with a floor (docs/metrics.md states it in full): samples and
//! data go through the feature layer of [`FashionClassifier`] (128-d), divided by one scale,
//! the root mean square of the test images' features (sqrt(mean_i |f_i|^2 / 128)), and are
//! compared with the 10,000 test images by
//! - the Frechet distance (Heusel et al. 2017, arXiv:1706.08500) of the features' Gaussians,
//! - KID (Binkowski et al. 2018, arXiv:1801.01401, [`crate::kid`]): 100 subsets of
//!   min(n, 1000), seed [`KID_SEED`].
//!
//! n = min(number of samples, 10,000); the first n samples are used. The floor is the same
//! protocol applied to n training images (the first n of a SplitMix64 shuffle of the 60,000,
//! seed [`FLOOR_SEED`]) in place of the samples: what images from the data distribution
//! itself score, so a result reads as a ratio to it.
//!
//! Why the scale: the cubic kernel (x.y/d + 1)^3 was made for Inception's pool features,
//! whose x.y/d is well below 1; this network's raw ReLU features have x.y/d about 4, so the
//! kernel's values run into the hundreds and one subset's MMD^2_u has a standard deviation of
//! about 0.9 between two halves of the test split (0.008 after scaling). FD is reported in the
//! same scaled space.

use crate::error::{EvalError, Result};
use crate::fashion_classifier::FashionClassifier;
use crate::kid::{self, Kid};
use crate::samples::Samples;
use crate::{Stats, frechet_distance, images};
use ddpm_core::rng::SplitMix64;
use serde::Serialize;
use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use tch::{Device, Tensor};

/// The most samples compared (the size of the test split).
pub const MAX_N: usize = 10_000;
/// Seed of the shuffle that picks the floor's training images.
pub const FLOOR_SEED: u64 = 19;
/// Seed of the KID subsets (samples and floor alike).
pub const KID_SEED: u64 = 0;

/// The Fashion-MNIST distances of a set of samples, beside the floor.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FashionDistance {
    /// Frechet distance, samples vs the test split.
    #[serde(rename = "fashion_fd")]
    pub fd: f64,
    #[serde(rename = "fashion_kid")]
    pub kid_mean: f64,
    #[serde(rename = "fashion_kid_std")]
    pub kid_std: f64,
    /// The same, for n training images in place of the samples.
    #[serde(rename = "fashion_fd_floor")]
    pub floor_fd: f64,
    #[serde(rename = "fashion_kid_floor")]
    pub floor_kid: f64,
    #[serde(rename = "fashion_kid_floor_std")]
    pub floor_kid_std: f64,
    /// Samples (and floor training images) compared with the 10,000 test images.
    #[serde(rename = "fashion_images")]
    pub n: usize,
    #[serde(rename = "fashion_kid_subsets")]
    pub kid_subsets: usize,
    #[serde(rename = "fashion_kid_subset_size")]
    pub kid_subset_size: usize,
    /// The feature network's accuracy on the test split.
    #[serde(rename = "fashion_classifier_accuracy")]
    pub classifier_accuracy: f64,
    /// For samples asked for classes (a class-conditional model, guided or not): the share
    /// the feature network classifies as the class asked for.
    #[serde(rename = "fashion_class_accuracy", skip_serializing_if = "Option::is_none")]
    pub class_accuracy: Option<f64>,
}

impl FashionDistance {
    /// The line a person reads, with the floor beside the result.
    pub fn summary(&self) -> String {
        format!(
            "Fashion-MNIST FD {:.3} (floor {:.3}, ratio {:.2})  KID {:.5} +- {:.5} (floor {:.5})  \
             ({} samples vs the 10,000 test images; classifier test accuracy {:.1} %)",
            self.fd,
            self.floor_fd,
            self.fd / self.floor_fd,
            self.kid_mean,
            self.kid_std,
            self.floor_kid,
            self.n,
            100.0 * self.classifier_accuracy
        ) + &self
            .class_accuracy
            .map(|a| {
                format!(
                    "  class accuracy {:.1} % (samples classified as the class asked for)",
                    100.0 * a
                )
            })
            .unwrap_or_default()
    }
}

/// Images [N, 1, 28, 28] as they are, or [N, 1, 32, 32] (Fashion-MNIST zero-padded by 2 on
/// every side, `data.image_size = 32`) cropped back to the centre 28x28.
pub fn to_28(samples: &Tensor) -> Result<Tensor> {
    match samples.size().as_slice() {
        [_, 1, 28, 28] => Ok(samples.shallow_clone()),
        [_, 1, 32, 32] => Ok(samples.narrow(2, 2, 28).narrow(3, 2, 28)),
        s => Err(EvalError::Samples(format!(
            "Fashion-MNIST samples must be [N, 1, 28, 28] or padded [N, 1, 32, 32], got {s:?}"
        ))),
    }
}

/// Which training images the floor uses: the first `n` of a shuffle of 0..`n_train`.
pub fn floor_indices(n_train: usize, n: usize) -> Vec<i64> {
    let mut order: Vec<i64> = (0..n_train as i64).collect();
    SplitMix64::new(FLOOR_SEED).shuffle(&mut order);
    order.truncate(n);
    order
}

/// The root mean square of the reference features [n, d]: sqrt(mean_i |f_i|^2 / d), in f64.
pub fn feature_scale(reference: &Tensor) -> f64 {
    let d = reference.size()[1] as f64;
    let r = reference.to_kind(tch::Kind::Double);
    (r.square().sum(tch::Kind::Double).double_value(&[]) / r.size()[0] as f64 / d).sqrt()
}

/// FD and KID of `features` [n, d] against `reference` [m, d] (the protocol's subsets).
pub fn fd_and_kid(features: &Tensor, reference: &Tensor) -> Result<(f64, Kid)> {
    let fd = frechet_distance(&Stats::from_features(features)?, &Stats::from_features(reference)?)?;
    let kid = kid::kernel_distance(
        features,
        reference,
        kid::NUM_SUBSETS,
        kid::MAX_SUBSET_SIZE,
        KID_SEED,
    )?;
    Ok((fd, kid))
}

/// The reference side of the measure, built once per process and reused by every
/// evaluation: the feature network, the test split's features and the floor's training
/// images' features (both divided by the scale), and the floor's distances for each n asked.
pub struct FashionReference {
    pub classifier: FashionClassifier,
    /// What the features are divided by: the test features' root mean square.
    pub scale: f64,
    /// The test split's features / scale [10,000, 128].
    reference: Tensor,
    /// The first [`MAX_N`] floor images' features / scale (the floor at n uses the first n).
    floor_features: Tensor,
    /// (FD, KID) of the floor, by n.
    floors: RefCell<HashMap<usize, (f64, Kid)>>,
    /// The folder it was read from (None: Debian's package).
    data_dir: Option<PathBuf>,
}

impl std::fmt::Debug for FashionReference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FashionReference")
            .field("classifier", &self.classifier.path)
            .field("data_dir", &self.data_dir)
            .finish_non_exhaustive()
    }
}

impl FashionReference {
    /// Reads both splits from `data_dir` (default: Debian's package), trains the feature
    /// network on the first call (see [`FashionClassifier::trained`]) and computes the test
    /// and floor features.
    pub fn load(data_dir: Option<&Path>, device: Device) -> Result<Self> {
        let train = ddpm_data::fashion::load(data_dir, "train", None)?;
        let test = ddpm_data::fashion::load(data_dir, "test", None)?;
        let classifier = FashionClassifier::trained(&train, &test, device)?;
        let reference = classifier.features_of(&images::from_dataset(&test));
        let scale = feature_scale(&reference);
        let n_floor = MAX_N.min(train.n);
        let floor_images = images::from_dataset(&train)
            .index_select(0, &Tensor::from_slice(&floor_indices(train.n, n_floor)));
        let floor_features = classifier.features_of(&floor_images) / scale;
        Ok(Self {
            classifier,
            scale,
            reference: reference / scale,
            floor_features,
            floors: RefCell::new(HashMap::new()),
            data_dir: data_dir.map(Path::to_path_buf),
        })
    }

    /// The distances of `samples` ([N, 1, 28, 28] or [N, 1, 32, 32] in [0, 1]), with the
    /// floor at the same n.
    pub fn distance(&self, samples: &Tensor) -> Result<FashionDistance> {
        let samples = to_28(samples)?;
        let n = (samples.size()[0] as usize).min(self.floor_features.size()[0] as usize);
        let sample_feats =
            self.classifier.features_of(&samples.narrow(0, 0, n as i64)) / self.scale;
        let (fd, kid) = fd_and_kid(&sample_feats, &self.reference)?;
        let (floor_fd, floor_kid) = self.floor(n)?;
        Ok(FashionDistance {
            fd,
            kid_mean: kid.mean,
            kid_std: kid.std,
            floor_fd,
            floor_kid: floor_kid.mean,
            floor_kid_std: floor_kid.std,
            n,
            kid_subsets: kid.subsets,
            kid_subset_size: kid.subset_size,
            classifier_accuracy: self.classifier.record.test_accuracy,
            class_accuracy: None,
        })
    }

    /// The share of `samples` ([N, 1, 28, 28] or padded [N, 1, 32, 32] in [0, 1]) that the
    /// feature network classifies as `classes[i]`, the class image i was asked for.
    pub fn class_accuracy(&self, samples: &Tensor, classes: &[i64]) -> Result<f64> {
        let samples = to_28(samples)?;
        let n = samples.size()[0];
        if n as usize != classes.len() || n == 0 {
            return Err(EvalError::Samples(format!(
                "class accuracy: {n} samples for {} classes asked for",
                classes.len()
            )));
        }
        Ok(self.classifier.accuracy_of(&samples, &Tensor::from_slice(classes)))
    }

    /// [`Self::class_accuracy`] of every sample of `samples` (a `samples.npz` read from disk,
    /// say), `batch` images at a time, so that memory does not grow with their number.
    pub fn class_accuracy_of(
        &self,
        samples: &Samples,
        classes: &[i64],
        batch: usize,
    ) -> Result<f64> {
        let n = samples.len();
        if n != classes.len() || n == 0 {
            return Err(EvalError::Samples(format!(
                "class accuracy: {n} samples for {} classes asked for",
                classes.len()
            )));
        }
        let batch = batch.max(1);
        let mut right = 0.0;
        for first in (0..n).step_by(batch) {
            let count = batch.min(n - first);
            let asked = &classes[first..first + count];
            right += self.class_accuracy(&samples.rows(first, count)?, asked)? * count as f64;
        }
        Ok(right / n as f64)
    }

    /// The floor's (FD, KID) at `n`, computed once.
    fn floor(&self, n: usize) -> Result<(f64, Kid)> {
        let mut floors = self.floors.borrow_mut();
        if let Some(&f) = floors.get(&n) {
            return Ok(f);
        }
        let f = fd_and_kid(&self.floor_features.narrow(0, 0, n as i64), &self.reference)?;
        floors.insert(n, f);
        Ok(f)
    }
}

/// The one [`FashionReference`] of a measurement, built at its first use (on the rank that
/// measures) and shared by every evaluation of a training run (one thread: libtorch's
/// modules are not shared between threads here).
#[derive(Clone, Default)]
pub struct FashionCache(Rc<RefCell<Option<Rc<FashionReference>>>>);

impl std::fmt::Debug for FashionCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let built = self.0.borrow().is_some();
        f.debug_tuple("FashionCache").field(&if built { "built" } else { "empty" }).finish()
    }
}

impl FashionCache {
    /// The reference read from `data_dir`, built now if this cache holds none (or another
    /// folder's).
    pub fn get(&self, data_dir: Option<&Path>, device: Device) -> Result<Rc<FashionReference>> {
        let mut slot = self.0.borrow_mut();
        if let Some(r) = slot.as_ref().filter(|r| r.data_dir.as_deref() == data_dir) {
            return Ok(r.clone());
        }
        let r = Rc::new(FashionReference::load(data_dir, device)?);
        *slot = Some(r.clone());
        Ok(r)
    }
}

/// The Fashion-MNIST distances of `samples` ([N, 1, 28, 28] or [N, 1, 32, 32] in [0, 1])
/// against the test split in `data_dir` (default: Debian's package), with the floor, from a
/// reference built for this call alone (see [`FashionCache`] to reuse one).
pub fn fashion_distance(
    samples: &Tensor,
    data_dir: Option<&Path>,
    device: Device,
) -> Result<FashionDistance> {
    FashionReference::load(data_dir, device)?.distance(samples)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    #[test]
    fn padded_samples_are_cropped_to_the_centre() {
        let x = Tensor::rand([2, 1, 32, 32], (Kind::Float, Device::Cpu));
        let c = to_28(&x).unwrap();
        assert_eq!(c.size(), [2, 1, 28, 28]);
        assert_eq!(c.double_value(&[1, 0, 0, 0]), x.double_value(&[1, 0, 2, 2]));
        assert_eq!(c.double_value(&[1, 0, 27, 27]), x.double_value(&[1, 0, 29, 29]));
        assert_eq!(to_28(&c).unwrap().size(), [2, 1, 28, 28]);
        let e = to_28(&Tensor::zeros([2, 3, 32, 32], (Kind::Float, Device::Cpu))).unwrap_err();
        assert!(e.to_string().contains("[2, 3, 32, 32]"), "{e}");
    }

    #[test]
    fn the_scale_is_the_root_mean_square_of_the_reference() {
        let r = Tensor::from_slice(&[3.0f32, 4.0, 0.0, 0.0]).view([2, 2]);
        // Norms 5 and 0: mean |f|^2 / d = 25 / 2 / 2.
        assert!((feature_scale(&r) - (25.0f64 / 4.0).sqrt()).abs() < 1e-12);
    }

    #[test]
    fn floor_images_are_a_seeded_sample_without_repeats() {
        let a = floor_indices(60_000, 10_000);
        assert_eq!(a, floor_indices(60_000, 10_000));
        let mut s = a.clone();
        s.sort();
        s.dedup();
        assert_eq!(s.len(), 10_000);
        assert!(*s.last().unwrap() < 60_000 && *s.last().unwrap() > 59_000);
    }

    #[test]
    fn a_set_against_itself_is_zero_and_shifted_copies_are_farther_in_order() {
        tch::manual_seed(0);
        let x = Tensor::randn([1200, 16], (Kind::Double, Device::Cpu)).relu();
        let (fd, kid) = fd_and_kid(&x, &x).unwrap();
        assert!(fd.abs() < 1e-8, "{fd}");
        // Against itself KID is slightly negative (subsets drawn apart share features, see
        // kid.rs); against another draw of the same distribution it is zero within its error.
        assert!(kid.mean <= 0.0, "{kid:?}");
        let y = Tensor::randn([1200, 16], (Kind::Double, Device::Cpu)).relu();
        let (_, other) = fd_and_kid(&y, &x).unwrap();
        // (Subsets of 1,000 of 1,200 overlap, so their values are not independent: the bound is
        // their spread, not spread / sqrt(100).)
        assert!(other.mean.abs() < 2.0 * other.std, "{other:?}");
        let (mut last_fd, mut last_kid) = (fd, kid.mean);
        for shift in [0.1, 0.2, 0.4, 0.8] {
            let (fd, kid) = fd_and_kid(&(&x + shift), &x).unwrap();
            // A pure shift moves only the mean: FD = d * shift^2.
            assert!((fd - 16.0 * shift * shift).abs() < 1e-6, "shift {shift}: {fd}");
            assert!(fd > last_fd && kid.mean > last_kid, "shift {shift}: {fd}, {kid:?}");
            (last_fd, last_kid) = (fd, kid.mean);
        }
        let d = FashionDistance {
            fd: 3.0,
            kid_mean: 0.01,
            kid_std: 0.001,
            floor_fd: 1.5,
            floor_kid: 0.0001,
            floor_kid_std: 0.0001,
            n: 10_000,
            kid_subsets: 100,
            kid_subset_size: 1000,
            classifier_accuracy: 0.91,
            class_accuracy: None,
        };
        let line = d.summary();
        assert!(
            line.contains("FD 3.000 (floor 1.500, ratio 2.00)") && line.contains("91.0 %"),
            "{line}"
        );
        assert!(!line.contains("class accuracy"), "{line}");
        let guided = FashionDistance { class_accuracy: Some(0.875), ..d }.summary();
        assert!(
            guided.ends_with("class accuracy 87.5 % (samples classified as the class asked for)")
        );
    }
}
