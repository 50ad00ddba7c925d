//! The CIFAR-10 binary release (`cifar-10-batches-bin`): `data_batch_1.bin` .. `data_batch_5.bin`
//! (train, 50000 images) and `test_batch.bin` (10000). Each record is one label byte and
//! 3072 pixel bytes (the red, green and blue 32x32 planes, row-major).

use crate::dataset::ImageSet;
use crate::error::{DataError, Result, io};
use std::path::{Path, PathBuf};

pub const RECORD: usize = 1 + 3 * 32 * 32;

/// The files of a split under `dir` (or `dir/cifar-10-batches-bin`).
pub fn files(dir: &Path, split: &str) -> Result<Vec<PathBuf>> {
    let root = if dir.join("cifar-10-batches-bin").is_dir() {
        dir.join("cifar-10-batches-bin")
    } else {
        dir.to_path_buf()
    };
    let names: Vec<String> = match split {
        "train" => (1..=5).map(|i| format!("data_batch_{i}.bin")).collect(),
        "test" => vec!["test_batch.bin".into()],
        other => {
            return Err(DataError::Config {
                field: "split",
                reason: format!("must be train or test, got {other:?}"),
            });
        }
    };
    names
        .into_iter()
        .map(|n| {
            let p = root.join(&n);
            if p.is_file() {
                Ok(p)
            } else {
                Err(DataError::NotFound {
                    path: p,
                    hint: Some(
                        "expected the CIFAR-10 binary version (cifar-10-binary.tar.gz)".into(),
                    ),
                })
            }
        })
        .collect()
}

pub fn is_cifar_dir(dir: &Path) -> bool {
    files(dir, "train").is_ok() || files(dir, "test").is_ok()
}

pub fn load(dir: &Path, split: &str) -> Result<ImageSet> {
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for path in files(dir, split)? {
        let bytes = std::fs::read(&path).map_err(io(&path))?;
        if bytes.is_empty() || bytes.len() % RECORD != 0 {
            return Err(DataError::Truncated {
                path,
                size: bytes.len() as u64,
                expected: RECORD as u64,
            });
        }
        for rec in bytes.chunks_exact(RECORD) {
            if rec[0] > 9 {
                return Err(DataError::Corrupt {
                    path: path.clone(),
                    reason: format!("label byte {} is not a CIFAR-10 class", rec[0]),
                });
            }
            labels.push(rec[0] as u32);
            pixels.extend_from_slice(&rec[1..]);
        }
    }
    Ok(ImageSet {
        n: labels.len(),
        channels: 3,
        height: 32,
        width: 32,
        pixels,
        max_value: 255,
        labels: Some(labels),
        num_classes: 10,
        name: "cifar10".into(),
    })
}
