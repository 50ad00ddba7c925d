//! # ddpm-io
//!
//! The file formats and habits every crate shares, with no libtorch: [`write_atomic`] (temporary
//! file, fsync, rename, fsync of the directory: a crash leaves the old file or the new one, never
//! half of either), NumPy arrays ([`npy`]: `.npy` and `.npz`, f32 and f64, read and written,
//! streamed), and [`home`], the `.ddpm` directory that holds the environment's links, exported
//! data and caches.

pub mod atomic;
pub mod home;
pub mod npy;

pub use atomic::{stale_temporaries, write_atomic, write_atomic_with};
pub use home::ddpm_home;
pub use npy::{Array, NpyError};
