//! Reference features for precision and recall: the pool3 features of every reference image,
//! which the k-NN radii need (statistics are not enough). Stored as one float16 array `pool3`
//! [N, 2048] in an `.npz` (uncompressed, zip64): 50,000 x 2048 x 2 bytes = 204.8 MB (about
//! 195 MiB) for a 50k reference set. float16 keeps 11 significant bits, which is what the
//! evaluator's distance blocks compute with anyway (they cast the features to float16).
//! `numpy.load(path)["pool3"]` reads the file; `.npz` arrays of float32 are read too.

use crate::error::{EvalError, Result};
use ddpm_io::npy;
use std::path::Path;
use tch::{Device, Kind, Tensor};

/// The array name inside the file.
pub const KEY: &str = "pool3";

fn bad(path: &Path, reason: impl std::fmt::Display) -> EvalError {
    EvalError::Stats { path: path.into(), reason: reason.to_string() }
}

/// Writes `features` [N, d] as float16 array `pool3` of an `.npz` at `path`, atomically.
pub fn save_features(path: &Path, features: &Tensor) -> Result<()> {
    let size: Vec<usize> = features.size().iter().map(|&d| d as usize).collect();
    if size.len() != 2 {
        return Err(bad(path, format!("features must be [N, d], got shape {size:?}")));
    }
    let npy_err = |e: npy::NpyError| bad(path, e.reason);
    let mut w = npy::NpzWriter::create(path, false).map_err(npy_err)?;
    w.start_array::<half::f16>(KEY, &size).map_err(npy_err)?;
    // In chunks of rows, so that a 50k set never needs a second full copy in memory.
    let cpu = features.to_device(Device::Cpu).to_kind(Kind::Float).contiguous();
    for start in (0..size[0]).step_by(4096) {
        let rows = cpu.narrow(0, start as i64, 4096.min(size[0] - start) as i64);
        let values = Vec::<f32>::try_from(rows.flatten(0, -1)).map_err(|e| bad(path, e))?;
        let h: Vec<half::f16> = values.into_iter().map(half::f16::from_f32).collect();
        w.write_values(&h).map_err(npy_err)?;
    }
    w.finish().map_err(npy_err)
}

/// Reads array `pool3` (float16 or float32, [N, d]) of an `.npz` as f32 [N, d] on the CPU.
pub fn load_features(path: &Path) -> Result<Tensor> {
    let a = npy::read::<f32>(path, Some(KEY)).map_err(|e| bad(path, e.reason))?;
    if a.shape.len() != 2 {
        return Err(bad(path, format!("{KEY} must be [N, d], got shape {:?}", a.shape)));
    }
    Ok(Tensor::from_slice(&a.values).view([a.shape[0] as i64, a.shape[1] as i64]))
}

/// Bytes the features of `n` images of dimension `d` take in the file (float16), header aside.
pub fn file_bytes(n: u64, d: u64) -> u64 {
    n * d * 2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_is_the_float16_rounding() {
        let dir = std::env::temp_dir().join(format!("ddpm-featfile-{}", std::process::id()));
        let p = dir.join("f.npz");
        let x = (Tensor::arange(5000 * 3, (Kind::Float, Device::Cpu)) * 0.37).sin().view([5000, 3])
            * 7.0;
        save_features(&p, &x).unwrap();
        let r = load_features(&p).unwrap();
        assert_eq!(r.size(), [5000, 3]);
        assert!(r.equal(&x.to_kind(Kind::Half).to_kind(Kind::Float)));
        // f16 keeps 11 significant bits.
        let rel = ((&r - &x).abs() / x.abs().clamp_min(1e-3)).max().double_value(&[]);
        assert!(rel < 5e-4, "{rel}");
        assert_eq!(file_bytes(50_000, 2048), 204_800_000);
        std::fs::write(&p, b"junk").unwrap();
        assert!(load_features(&p).unwrap_err().to_string().contains("f.npz"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
