//! # ddpm-data
//!
//! Data sets for diffusion training, with no libtorch: embedded ones that need nothing from
//! the user (`digits` — scikit-learn's real 8x8 handwritten digits —, `swissroll`,
//! `gaussians8`, `moons`), Fashion-MNIST from Debian's `dataset-fashion-mnist`, and the
//! user's CIFAR-10 binary batches, image folders and MNIST IDX files; a background [`Loader`] that is exactly reproducible, resumable and sharded by
//! rank. Pictures (PNG grids, SVG plots) are `ddpm-viz`'s.
//!
//! Images are kept as bytes ([`ImageSet`], N x C x H x W) and become f32 in [-1, 1] only in
//! the loader's batches (x / (max/2) - 1, the scaling of Ho et al. 2020, arXiv:2006.11239).
//! All randomness comes from [`ddpm_core::rng`], so every set and every batch reproduces
//! exactly from its seed.

pub mod cifar;
pub mod config;
pub mod dataset;
pub mod digits;
pub mod error;
pub mod fashion;
pub mod folder;
pub mod loader;
pub mod mnist;
pub mod toy;

pub use config::{DataConfig, EMBEDDED, EMBEDDED_POINTS, config_from_arg, load};
pub use dataset::{Dataset, ImageSet, PointSet};
pub use error::{DataError, Result};
pub use folder::LoadReport;
pub use loader::{Batch, Loader, LoaderOptions, LoaderState};
