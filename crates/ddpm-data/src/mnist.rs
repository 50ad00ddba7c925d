//! MNIST IDX files: `train-images-idx3-ubyte` / `train-labels-idx1-ubyte` (or `t10k-*` for the
//! test split), plain or gzipped (`.gz`, or recognised by the gzip magic). 28x28, 10 classes;
//! `image_size` 32 pads 2 black pixels on every side (the usual way to fit a UNet).

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

pub fn is_mnist_dir(dir: &Path) -> bool {
    find(dir, "train-images-idx3-ubyte").is_some() || find(dir, "t10k-images-idx3-ubyte").is_some()
}

fn header(bytes: &[u8], path: &Path, magic: u32, dims: usize) -> Result<Vec<usize>> {
    let bad = |reason: String| DataError::Corrupt { path: path.into(), reason };
    if bytes.len() < 4 + 4 * dims {
        return Err(bad("too short for an IDX header".into()));
    }
    let m = u32::from_be_bytes(bytes[..4].try_into().unwrap());
    if m != magic {
        return Err(bad(format!("IDX magic {m}, expected {magic}")));
    }
    let d: Vec<usize> = (0..dims)
        .map(|i| u32::from_be_bytes(bytes[4 + 4 * i..8 + 4 * i].try_into().unwrap()) as usize)
        .collect();
    let need = 4 + 4 * dims + d.iter().product::<usize>();
    if bytes.len() < need {
        return Err(DataError::Truncated {
            path: path.into(),
            size: bytes.len() as u64,
            expected: need as u64,
        });
    }
    Ok(d)
}

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
    let d = header(&ib, &ip, 2051, 3)?;
    let l = header(&lb, &lp, 2049, 1)?;
    if d[0] != l[0] {
        return Err(DataError::Mismatch(format!(
            "{} holds {} images but {} holds {} labels",
            ip.display(),
            d[0],
            lp.display(),
            l[0]
        )));
    }
    let (n, h, w) = (d[0], d[1], d[2]);
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
    if let Some(size) = image_size.filter(|&s| s != h) {
        if size < h || size < w || (size - h) % 2 != 0 {
            return Err(DataError::Config {
                field: "image_size",
                reason: format!(
                    "MNIST is {h}x{w}; pad to an even larger size such as 32, got {size}"
                ),
            });
        }
        set = pad(&set, (size - h) / 2);
    }
    Ok(set)
}

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
