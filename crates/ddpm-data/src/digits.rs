//! The 8x8 handwritten digits that scikit-learn ships (1797 images, 10 classes, 17 grey
//! levels 0..16; the UCI "optical recognition of handwritten digits" test set), exported once
//! by `cargo xtask setup` (`scripts/export_digits.py`) to `$DDPM_HOME/data/digits.bin`.
//!
//! Kept at the native 8x8 by default (a UNet with ch_mult (1, 2, 2) reaches 8, 4 and 2);
//! `image_size` 16 or 32 repeats each pixel (nearest neighbour) by an integer factor.

use crate::dataset::ImageSet;
use crate::error::{DataError, Result};
use std::path::{Path, PathBuf};

/// `$DDPM_HOME` at run time, else the checkout's `.ddpm` this crate was built in.
pub fn ddpm_home() -> Option<PathBuf> {
    std::env::var_os("DDPM_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| option_env!("DDPM_HOME").map(PathBuf::from))
}

pub fn default_path() -> PathBuf {
    ddpm_home().unwrap_or_else(|| PathBuf::from(".ddpm")).join("data/digits.bin")
}

pub fn load(path: &Path, image_size: Option<usize>) -> Result<ImageSet> {
    let bytes = std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => DataError::NotFound {
            path: path.into(),
            hint: Some("the digits are exported from scikit-learn by `cargo xtask setup`".into()),
        },
        _ => DataError::Io { path: path.into(), source: e },
    })?;
    let bad = |reason: String| DataError::Corrupt { path: path.into(), reason };
    if bytes.len() < 24 || &bytes[..8] != b"DDPMDIG1" {
        return Err(bad("not a digits file (bad magic); rerun `cargo xtask setup`".into()));
    }
    let u = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().unwrap()) as usize;
    let (n, h, w, max) = (u(8), u(12), u(16), u(20));
    let need = 24 + n + n * h * w;
    if bytes.len() != need || max == 0 || max > 255 {
        return Err(bad(format!(
            "{} bytes, expected {need} for {n} images of {h}x{w}",
            bytes.len()
        )));
    }
    let labels: Vec<u32> = bytes[24..24 + n].iter().map(|&l| l as u32).collect();
    if let Some(l) = labels.iter().find(|&&l| l > 9) {
        return Err(bad(format!("label {l} is not a digit")));
    }
    let mut set = ImageSet {
        n,
        channels: 1,
        height: h,
        width: w,
        pixels: bytes[24 + n..].to_vec(),
        max_value: max as u8,
        labels: Some(labels),
        num_classes: 10,
        name: "digits".into(),
    };
    if let Some(size) = image_size.filter(|&s| s != h) {
        if size % h != 0 || size % w != 0 {
            return Err(DataError::Config {
                field: "image_size",
                reason: format!(
                    "the digits are {h}x{w}; image_size must be a multiple (8, 16, 32), got {size}"
                ),
            });
        }
        set = upsample_nearest(&set, size / h);
    }
    Ok(set)
}

/// Repeats every pixel `k` x `k` times.
pub fn upsample_nearest(set: &ImageSet, k: usize) -> ImageSet {
    let (h, w) = (set.height * k, set.width * k);
    let mut pixels = Vec::with_capacity(set.n * set.channels * h * w);
    for i in 0..set.n {
        let img = set.image(i);
        for c in 0..set.channels {
            for y in 0..h {
                for x in 0..w {
                    pixels.push(img[(c * set.height + y / k) * set.width + x / k]);
                }
            }
        }
    }
    ImageSet { height: h, width: w, pixels, ..set.clone() }
}
