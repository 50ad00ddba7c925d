//! MNIST IDX files: `train-images-idx3-ubyte` / `train-labels-idx1-ubyte` (or `t10k-*` for the
//! test split), plain or gzipped (a `.gz` name is looked for too; gzip is recognised by its
//! magic bytes 1f 8b whatever the name). 28x28, 10 classes. `image_size` 32 pads 2 black
//! pixels on every side rather than resampling: the digits keep their exact pixels and a
//! UNet gets a side it can halve three times (32, 16, 8, 4).
//!
//! IDX (LeCun et al.): a big-endian u32 magic, 0x0000_08_dd for unsigned bytes in dd
//! dimensions (2051 for images, N x rows x cols; 2049 for labels, N), dd big-endian u32
//! sizes, then the bytes.

use crate::dataset::ImageSet;
use crate::error::{DataError, Result, io};
use std::io::Read;
use std::path::{Path, PathBuf};

fn find(dir: &Path, stem: &str) -> Option<PathBuf> {
    [stem.to_string(), format!("{stem}.gz")].into_iter().map(|n| dir.join(n)).find(|p| p.is_file())
}

fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).map_err(io(path))?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..]).read_to_end(&mut out).map_err(|e| {
            DataError::Corrupt { path: path.into(), reason: format!("bad gzip data: {e}") }
        })?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// Whether `dir` holds MNIST images of either split.
pub fn is_mnist_dir(dir: &Path) -> bool {
    find(dir, "train-images-idx3-ubyte").is_some() || find(dir, "t10k-images-idx3-ubyte").is_some()
}

/// The sizes of an IDX file of unsigned bytes with `dims` dimensions, after checking its
/// magic and that the file holds all the bytes the sizes promise.
fn header(bytes: &[u8], path: &Path, dims: usize) -> Result<Vec<usize>> {
    let bad = |reason: String| DataError::Corrupt { path: path.into(), reason };
    let magic = 0x0800 + dims as u32;
    let short = || {
        bad(format!("{} bytes is too short for an IDX header with {dims} dimensions", bytes.len()))
    };
    if bytes.len() < 4 {
        return Err(short());
    }
    // The magic first: a swapped or foreign file is named as such, not as short.
    let m = u32::from_be_bytes(bytes[..4].try_into().unwrap());
    if m != magic {
        let what = if m >> 8 == 0x08 {
            format!("{} dimensions", m & 0xff)
        } else {
            "not an IDX file of unsigned bytes".into()
        };
        return Err(bad(format!(
            "IDX magic {m} ({what}), expected {magic} (unsigned bytes, {dims} dimensions)"
        )));
    }
    if bytes.len() < 4 + 4 * dims {
        return Err(short());
    }
    let d: Vec<usize> = (0..dims)
        .map(|i| u32::from_be_bytes(bytes[4 + 4 * i..8 + 4 * i].try_into().unwrap()) as usize)
        .collect();
    // Sizes are u32 each: their product can overflow, which must read as "too large", not wrap.
    let need = d
        .iter()
        .try_fold(1usize, |a, &x| a.checked_mul(x))
        .and_then(|n| n.checked_add(4 + 4 * dims))
        .ok_or_else(|| bad(format!("IDX sizes {d:?} are too large")))?;
    if bytes.len() < need {
        return Err(DataError::TooShort {
            path: path.into(),
            size: bytes.len() as u64,
            needed: need as u64,
        });
    }
    Ok(d)
}

/// Reads split `train` or `test` (`t10k-*`), zero-padded to `image_size` if given.
pub fn load(dir: &Path, split: &str, image_size: Option<usize>) -> Result<ImageSet> {
    let prefix = match split {
        "train" => "train",
        "test" => "t10k",
        other => {
            return Err(DataError::Config {
                field: "split",
                reason: format!("must be train or test, got {other:?}"),
            });
        }
    };
    let missing = |name: String| DataError::NotFound {
        path: dir.join(name),
        hint: Some("expected MNIST IDX files, plain or .gz".into()),
    };
    let ip = find(dir, &format!("{prefix}-images-idx3-ubyte"))
        .ok_or_else(|| missing(format!("{prefix}-images-idx3-ubyte")))?;
    let lp = find(dir, &format!("{prefix}-labels-idx1-ubyte"))
        .ok_or_else(|| missing(format!("{prefix}-labels-idx1-ubyte")))?;
    let (ib, lb) = (read_maybe_gz(&ip)?, read_maybe_gz(&lp)?);
    let d = header(&ib, &ip, 3)?;
    let l = header(&lb, &lp, 1)?;
    if d[0] != l[0] {
        return Err(DataError::Mismatch {
            images: ip,
            num_images: d[0] as u64,
            labels: lp,
            num_labels: l[0] as u64,
        });
    }
    let (n, h, w) = (d[0], d[1], d[2]);
    // MNIST and its drop-in relatives (Fashion-MNIST, KMNIST, EMNIST) are 28x28: other sizes
    // in the header are damage, which would otherwise be read as images of the wrong shape.
    if (h, w) != (28, 28) {
        return Err(DataError::Corrupt {
            path: ip,
            reason: format!("MNIST images are 28x28, but the IDX header says {h}x{w}"),
        });
    }
    let labels: Vec<u32> = lb[8..8 + n].iter().map(|&x| x as u32).collect();
    if let Some(bad) = labels.iter().find(|&&x| x > 9) {
        return Err(DataError::Corrupt { path: lp, reason: format!("label {bad} is not a digit") });
    }
    let mut set = ImageSet {
        n,
        channels: 1,
        height: h,
        width: w,
        pixels: ib[16..16 + n * h * w].to_vec(),
        max_value: 255,
        labels: Some(labels),
        num_classes: 10,
        name: "mnist".into(),
    };
    if let Some(size) = image_size.filter(|&s| s != h || h != w) {
        if h != w || size < h || (size - h) % 2 != 0 {
            return Err(DataError::Config {
                field: "image_size",
                reason: format!(
                    "MNIST is {h}x{w}; image_size must be {h} plus an even number of \
                     zero-padding pixels, e.g. 32, got {size}"
                ),
            });
        }
        set = pad(&set, (size - h) / 2);
    }
    Ok(set)
}

/// Adds `p` black (0) pixels on every side.
fn pad(set: &ImageSet, p: usize) -> ImageSet {
    let (h, w) = (set.height + 2 * p, set.width + 2 * p);
    let mut pixels = vec![0u8; set.n * h * w];
    for i in 0..set.n {
        let img = set.image(i);
        for y in 0..set.height {
            let dst = i * h * w + (y + p) * w + p;
            pixels[dst..dst + set.width].copy_from_slice(&img[y * set.width..(y + 1) * set.width]);
        }
    }
    ImageSet { height: h, width: w, pixels, ..set.clone() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx(magic: u32, dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut v = magic.to_be_bytes().to_vec();
        for d in dims {
            v.extend(d.to_be_bytes());
        }
        v.extend_from_slice(data);
        v
    }

    #[test]
    fn idx_headers_are_checked() {
        let p = Path::new("f");
        assert_eq!(header(&idx(2051, &[2, 3, 4], &[0; 24]), p, 3).unwrap(), vec![2, 3, 4]);
        // Extra bytes after the data are tolerated, as other readers do.
        assert_eq!(header(&idx(2049, &[2], &[0; 3]), p, 1).unwrap(), vec![2]);
        let e = header(&idx(2049, &[2], &[0; 2]), p, 3).unwrap_err().to_string();
        assert!(e.contains("magic 2049 (1 dimensions), expected 2051"), "{e}");
        let e = header(b"\x1f\x8b\x08\x00rest of it", p, 3).unwrap_err().to_string();
        assert!(e.contains("not an IDX file"), "{e}");
        let e = header(&idx(2051, &[2, 3, 4], &[0; 23]), p, 3).unwrap_err();
        assert!(matches!(e, DataError::TooShort { size: 39, needed: 40, .. }), "{e}");
        assert!(header(&[0, 0, 8], p, 1).unwrap_err().to_string().contains("too short"));
        let e = header(&[0, 0, 8, 3, 0, 0], p, 3).unwrap_err().to_string();
        assert!(e.contains("6 bytes is too short"), "{e}");
    }

    #[test]
    fn padding_centres_the_image() {
        let s = ImageSet {
            n: 1,
            channels: 1,
            height: 2,
            width: 2,
            pixels: vec![1, 2, 3, 4],
            max_value: 255,
            labels: None,
            num_classes: 0,
            name: "t".into(),
        };
        #[rustfmt::skip]
        let want = [
            0, 0, 0, 0,
            0, 1, 2, 0,
            0, 3, 4, 0,
            0, 0, 0, 0,
        ];
        assert_eq!(pad(&s, 1).pixels, want);
    }
}
