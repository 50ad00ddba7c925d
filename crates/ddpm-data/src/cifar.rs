//! The CIFAR-10 binary release (`cifar-10-batches-bin`): `data_batch_1.bin` .. `data_batch_5.bin`
//! (train, 50000 images) and `test_batch.bin` (10000). Each record is one label byte and
//! 3072 pixel bytes (the red, green and blue 32x32 planes, row-major), which is already the
//! CHW layout of [`ImageSet`]. The directory given may hold the files or hold
//! `cifar-10-batches-bin` with them.

use crate::dataset::ImageSet;
use crate::error::{DataError, Result, io};
use std::path::{Path, PathBuf};

/// Bytes per record: one label byte and a 3 x 32 x 32 image.
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

/// Whether `dir` holds a complete train or test split.
pub fn is_cifar_dir(dir: &Path) -> bool {
    files(dir, "train").is_ok() || files(dir, "test").is_ok()
}

/// Reads split `train` (the five data batches, in order) or `test`.
pub fn load(dir: &Path, split: &str) -> Result<ImageSet> {
    let files = files(dir, split)?;
    let mut pixels = Vec::with_capacity(files.len() * 10_000 * (RECORD - 1));
    let mut labels = Vec::with_capacity(files.len() * 10_000);
    let mut first: Option<(PathBuf, usize)> = None;
    for path in files {
        let bytes = std::fs::read(&path).map_err(io(&path))?;
        if bytes.is_empty() || bytes.len() % RECORD != 0 {
            return Err(DataError::Truncated {
                path,
                size: bytes.len() as u64,
                expected: RECORD as u64,
            });
        }
        // The format holds no count: a file cut at a record boundary is only seen as shorter
        // than its siblings (the release's batches all hold 10,000 records).
        let records = bytes.len() / RECORD;
        match &first {
            None => first = Some((path.clone(), records)),
            Some((p, n)) if *n != records => {
                return Err(DataError::Corrupt {
                    path,
                    reason: format!(
                        "{records} records, but {} holds {n}: the batches of a split are all \
                         the same size (10,000 in the release); is one cut short?",
                        p.display()
                    ),
                });
            }
            _ => {}
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_batches_in_the_nested_release_folder_and_checks_labels() {
        let dir = std::env::temp_dir().join(format!("ddpm-cifar-unit-{}", std::process::id()));
        let inner = dir.join("cifar-10-batches-bin");
        std::fs::create_dir_all(&inner).unwrap();
        let mut rec = vec![7u8];
        rec.extend((0..3072).map(|i| (i % 256) as u8));
        std::fs::write(inner.join("test_batch.bin"), &rec).unwrap();
        assert!(is_cifar_dir(&dir));
        let s = load(&dir, "test").unwrap();
        assert_eq!((s.n, s.labels.clone(), s.pixels), (1, Some(vec![7]), rec[1..].to_vec()));
        let e = load(&dir, "train").unwrap_err();
        assert!(e.to_string().contains("data_batch_1.bin"), "{e}");
        assert!(load(&dir, "valid").unwrap_err().to_string().contains("\"valid\""));
        rec[0] = 10;
        std::fs::write(inner.join("test_batch.bin"), &rec).unwrap();
        let e = load(&dir, "test").unwrap_err();
        assert!(matches!(e, DataError::Corrupt { .. }) && e.to_string().contains("label byte 10"));
        std::fs::write(inner.join("test_batch.bin"), []).unwrap();
        assert!(matches!(load(&dir, "test").unwrap_err(), DataError::Truncated { size: 0, .. }));
    }
}
