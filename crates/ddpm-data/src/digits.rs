//! The 8x8 handwritten digits that scikit-learn ships (1797 images, 10 classes, 17 grey
//! levels 0..16; the UCI "optical recognition of handwritten digits" test set), exported once
//! by `cargo xtask setup` (`scripts/export_digits.py`) to `$DDPM_HOME/data/digits.bin`.
//!
//! Kept at the native 8x8 by default (a UNet with ch_mult (1, 2, 2) reaches 8, 4 and 2);
//! `image_size` 16 or 32 (any multiple of 8) repeats each pixel (nearest neighbour) by the
//! integer factor, which adds no grey levels that the data does not have. Pixels keep their 17
//! levels (`max_value` 16), so training scales them as x / 8 - 1.
//!
//! File format (little-endian): magic `b"DDPMDIG1"`, u32 n, height, width, max_value, then n
//! label bytes, then n * height * width pixel bytes in 0..=max_value, row-major.

use crate::dataset::ImageSet;
use crate::error::{DataError, Result};
use std::path::{Path, PathBuf};

/// `$DDPM_HOME/data/digits.bin` (see [`ddpm_io::ddpm_home`]).
pub fn default_path() -> PathBuf {
    ddpm_io::ddpm_home().join("data/digits.bin")
}

/// Reads the digits file at `path`, upsampled to `image_size` if given.
pub fn load(path: &Path, image_size: Option<usize>) -> Result<ImageSet> {
    let bytes = std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => DataError::NotFound {
            path: path.into(),
            hint: Some("run `cargo xtask setup` to export scikit-learn's digits there".into()),
        },
        _ => DataError::Io { path: path.into(), source: e },
    })?;
    let bad = |reason: String| DataError::Corrupt { path: path.into(), reason };
    if bytes.len() < 24 || &bytes[..8] != b"DDPMDIG1" {
        return Err(bad("not a digits file (bad magic); rerun `cargo xtask setup`".into()));
    }
    let u = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().unwrap()) as usize;
    let (n, h, w, max) = (u(8), u(12), u(16), u(20));
    if n == 0 || h == 0 || w == 0 || max == 0 || max > 255 {
        return Err(bad(format!("bad header: {n} images of {h}x{w} with max value {max}")));
    }
    let need = 24 + n + n * h * w;
    if bytes.len() != need {
        return Err(bad(format!(
            "{} bytes, expected {need} for {n} images of {h}x{w}",
            bytes.len()
        )));
    }
    let labels: Vec<u32> = bytes[24..24 + n].iter().map(|&l| l as u32).collect();
    if let Some(l) = labels.iter().find(|&&l| l > 9) {
        return Err(bad(format!("label {l} is not a digit")));
    }
    if let Some(p) = bytes[24 + n..].iter().find(|&&p| p as usize > max) {
        return Err(bad(format!("pixel value {p} above the max value {max}")));
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
    if let Some(size) = image_size.filter(|&s| s != h || h != w) {
        if size == 0 || h != w || size % h != 0 {
            return Err(DataError::Config {
                field: "image_size",
                reason: format!(
                    "the digits are {h}x{w}; image_size must be a positive multiple of {h} \
                     (upsampling repeats pixels), got {size}"
                ),
            });
        }
        set = upsample_nearest(&set, size / h);
    }
    Ok(set)
}

/// Nearest-neighbour upsampling by an integer factor: repeats every pixel `k` x `k` times.
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

#[cfg(test)]
mod tests {
    use super::*;

    fn file(n: u32, pixels: &[u8], labels: &[u8]) -> Vec<u8> {
        let mut b = b"DDPMDIG1".to_vec();
        for v in [n, 2, 2, 16] {
            b.extend(v.to_le_bytes());
        }
        b.extend_from_slice(labels);
        b.extend_from_slice(pixels);
        b
    }

    fn write(name: &str, bytes: &[u8]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ddpm-digits-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("digits.bin");
        std::fs::write(&p, bytes).unwrap();
        p
    }

    #[test]
    fn reads_the_export_format_and_upsamples_by_repeating() {
        let p = write("ok", &file(2, &[0, 1, 2, 3, 16, 15, 14, 13], &[3, 9]));
        let s = load(&p, None).unwrap();
        assert_eq!((s.n, s.height, s.max_value, s.labels.clone()), (2, 2, 16, Some(vec![3, 9])));
        assert_eq!(s.image(1), &[16, 15, 14, 13]);
        let big = load(&p, Some(4)).unwrap();
        assert_eq!(big.image(0), &[0, 0, 1, 1, 0, 0, 1, 1, 2, 2, 3, 3, 2, 2, 3, 3]);
        for bad in [0, 3, 5] {
            let e = load(&p, Some(bad)).unwrap_err();
            assert!(e.to_string().contains(&format!("got {bad}")), "{e}");
        }
    }

    #[test]
    fn bad_files_are_refused() {
        let p = write("label", &file(1, &[0; 4], &[10]));
        assert!(load(&p, None).unwrap_err().to_string().contains("label 10"));
        let p = write("pixel", &file(1, &[0, 0, 17, 0], &[1]));
        assert!(load(&p, None).unwrap_err().to_string().contains("pixel value 17"));
        let p = write("short", &file(2, &[0; 5], &[1, 2]));
        assert!(load(&p, None).unwrap_err().to_string().contains("expected 34"));
        let missing = p.with_file_name("nothing.bin");
        let e = load(&missing, None).unwrap_err().to_string();
        assert!(e.contains("nothing.bin") && e.contains("cargo xtask setup"), "{e}");
    }
}
