//! Reference features for precision and recall: the pool3 features of every reference image,
//! which the k-NN radii need (statistics are not enough). Stored as one float16 array `pool3`
//! [N, 2048] in an `.npz` (uncompressed, zip64): 50,000 x 2048 x 2 bytes = 204.8 MB (about
//! 195 MiB) for a 50k reference set. float16 keeps 11 significant bits, which is what the
//! evaluator's distance blocks compute with anyway (they cast the features to float16).
//! `numpy.load(path)["pool3"]` reads the file; `.npz` arrays of float32 are read too.

use crate::error::{EvalError, Result, io};
use std::io::{Read, Write};
use std::path::Path;
use tch::{Device, Kind, Tensor};

/// The array name inside the file.
pub const KEY: &str = "pool3";

fn bad(path: &Path, reason: impl std::fmt::Display) -> EvalError {
    EvalError::Stats { path: path.into(), reason: reason.to_string() }
}

fn npy_header(descr: &str, shape: &[i64]) -> Vec<u8> {
    let dims = shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ");
    let dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': ({dims}), }}");
    let pad = (64 - (10 + dict.len() + 1) % 64) % 64;
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&((dict.len() + pad + 1) as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out.extend(std::iter::repeat_n(b' ', pad));
    out.push(b'\n');
    out
}

/// Writes `features` [N, d] as float16 array `pool3` of an `.npz` at `path`, atomically.
pub fn save_features(path: &Path, features: &Tensor) -> Result<()> {
    let size = features.size();
    if size.len() != 2 {
        return Err(bad(path, format!("features must be [N, d], got shape {size:?}")));
    }
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    let tmp = path.with_extension("npz.tmp");
    let file = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    let mut zip = zip::ZipWriter::new(std::io::BufWriter::new(file));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .large_file(true);
    let zerr = |e: zip::result::ZipError| bad(&tmp, e);
    zip.start_file(format!("{KEY}.npy"), opts).map_err(zerr)?;
    zip.write_all(&npy_header("<f2", &size)).map_err(io(&tmp))?;
    // In chunks of rows, so that a 50k set never needs a second full copy in memory.
    let half = features.to_device(Device::Cpu).to_kind(Kind::Half).contiguous();
    for start in (0..size[0]).step_by(4096) {
        let rows = half.narrow(0, start, 4096.min(size[0] - start)).contiguous();
        let bits = Vec::<i16>::try_from(rows.view_dtype(Kind::Int16).flatten(0, -1))
            .map_err(|e| bad(&tmp, e))?;
        let bytes: Vec<u8> = bits.iter().flat_map(|b| b.to_le_bytes()).collect();
        zip.write_all(&bytes).map_err(io(&tmp))?;
    }
    let w = zip.finish().map_err(zerr)?;
    let file = w.into_inner().map_err(|e| bad(&tmp, e))?;
    file.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// Reads array `pool3` (float16 or float32, [N, d]) of an `.npz` as f32 [N, d] on the CPU.
pub fn load_features(path: &Path) -> Result<Tensor> {
    let file = std::fs::File::open(path).map_err(io(path))?;
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(file))
        .map_err(|e| bad(path, format!("not an .npz features file ({e})")))?;
    let mut entry = zip
        .by_name(&format!("{KEY}.npy"))
        .map_err(|_| bad(path, format!("has no array {KEY:?} (reference pool3 features)")))?;
    let mut bytes = Vec::new();
    entry.read_to_end(&mut bytes).map_err(io(path))?;
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad(path, format!("{KEY} is not a .npy array")));
    }
    let (hlen, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        _ => (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12),
    };
    let header = bytes
        .get(start..start + hlen)
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or_else(|| bad(path, "truncated .npy header"))?;
    if header.contains("'fortran_order': True") {
        return Err(bad(path, "Fortran-ordered features are not supported"));
    }
    let shape: Vec<i64> = header
        .split("'shape':")
        .nth(1)
        .and_then(|s| s.split('(').nth(1))
        .and_then(|s| s.split(')').next())
        .map(|s| s.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::parse).collect())
        .and_then(|r: std::result::Result<Vec<i64>, _>| r.ok())
        .ok_or_else(|| bad(path, "no shape in the .npy header"))?;
    if shape.len() != 2 {
        return Err(bad(path, format!("{KEY} must be [N, d], got shape {shape:?}")));
    }
    let n = (shape[0] * shape[1]) as usize;
    let data = &bytes[start + hlen..];
    let t = if header.contains("'<f2'") {
        let raw = data.get(..2 * n).ok_or_else(|| bad(path, "truncated data"))?;
        let bits: Vec<i16> =
            raw.chunks_exact(2).map(|c| i16::from_le_bytes([c[0], c[1]])).collect();
        Tensor::from_slice(&bits).view_dtype(Kind::Half).to_kind(Kind::Float)
    } else if header.contains("'<f4'") {
        let raw = data.get(..4 * n).ok_or_else(|| bad(path, "truncated data"))?;
        let v: Vec<f32> =
            raw.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
        Tensor::from_slice(&v)
    } else {
        return Err(bad(path, format!("{KEY} must be float16 or float32")));
    };
    Ok(t.view(shape.as_slice()))
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
