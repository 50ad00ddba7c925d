//! Denoising networks over libtorch.
