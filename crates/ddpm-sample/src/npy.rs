//! NumPy `.npy`/`.npz` I/O for sample arrays: float32, C order. `samples.npz` is assembled by
//! streaming per-batch parts into a zip, so memory does not grow with the sample count.

use crate::error::{Result, SampleError, io};
use std::io::{Read, Write};
use std::path::Path;

/// The `.npy` v1.0 header for a little-endian f32 array of `shape`.
pub fn npy_header(shape: &[usize]) -> Vec<u8> {
    let dims = match shape {
        [d] => format!("({d},)"),
        _ => format!("({})", shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")),
    };
    let dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {dims}, }}");
    // magic (6) + version (2) + header length (2) + dict + padding + '\n', a multiple of 64.
    let unpadded = 10 + dict.len() + 1;
    let pad = (64 - unpadded % 64) % 64;
    let mut h = b"\x93NUMPY\x01\x00".to_vec();
    h.extend_from_slice(&((dict.len() + pad + 1) as u16).to_le_bytes());
    h.extend_from_slice(dict.as_bytes());
    h.extend(std::iter::repeat_n(b' ', pad));
    h.push(b'\n');
    h
}

pub fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Writes one `.npy` file atomically.
pub fn write_npy(path: &Path, shape: &[usize], values: &[f32]) -> Result<()> {
    let mut bytes = npy_header(shape);
    bytes.extend(f32_bytes(values));
    let tmp = path.with_extension("npy.tmp");
    std::fs::write(&tmp, &bytes).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// Parses an `.npy` array of f32 or f64 (little-endian, C order) into (shape, f32 values).
pub fn parse_npy(bytes: &[u8], origin: &Path) -> Result<(Vec<usize>, Vec<f32>)> {
    let bad = |why: &str| SampleError::Arg(format!("{}: {why}", origin.display()));
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad("not a .npy array"));
    }
    let (hlen, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12),
        v => return Err(bad(&format!("unsupported .npy version {v}"))),
    };
    let header =
        std::str::from_utf8(bytes.get(start..start + hlen).ok_or_else(|| bad("truncated header"))?)
            .map_err(|_| bad("bad header"))?;
    if header.contains("'fortran_order': True") {
        return Err(bad("Fortran-ordered arrays are not supported"));
    }
    let shape_str = header
        .split("'shape':")
        .nth(1)
        .and_then(|s| s.split('(').nth(1))
        .and_then(|s| s.split(')').next())
        .ok_or_else(|| bad("no shape in header"))?;
    let shape: Vec<usize> = shape_str
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().map_err(|_| bad("bad shape")))
        .collect::<Result<_>>()?;
    let n: usize = shape.iter().product();
    let data = &bytes[start + hlen..];
    let values = if header.contains("'<f4'") {
        if data.len() < 4 * n {
            return Err(bad(&format!("truncated: {} values expected", n)));
        }
        data[..4 * n].chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()
    } else if header.contains("'<f8'") {
        if data.len() < 8 * n {
            return Err(bad(&format!("truncated: {} values expected", n)));
        }
        data[..8 * n]
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap()) as f32)
            .collect()
    } else {
        return Err(bad("only float32 and float64 arrays are read"));
    };
    Ok((shape, values))
}

/// Reads array `key` of an `.npz` file (or the only array of an `.npy` file).
pub fn read_array(path: &Path, key: &str) -> Result<(Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(path).map_err(io(path))?;
    if bytes.starts_with(b"\x93NUMPY") {
        return parse_npy(&bytes, path);
    }
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(|e| {
        SampleError::Arg(format!("{}: not an .npy or .npz file ({e})", path.display()))
    })?;
    let mut entry = zip
        .by_name(&format!("{key}.npy"))
        .map_err(|_| SampleError::Arg(format!("{}: has no array {key:?}", path.display())))?;
    let mut buf = Vec::new();
    entry.read_to_end(&mut buf).map_err(io(path))?;
    parse_npy(&buf, path)
}

/// Streams `parts` (npy files whose first dimension adds up to `shape[0]`) into
/// `out.npz` as the single array `key`, atomically.
pub fn assemble_npz(
    out: &Path,
    key: &str,
    shape: &[usize],
    parts: &[std::path::PathBuf],
) -> Result<()> {
    let tmp = out.with_extension("npz.tmp");
    let file = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    let mut zip = zip::ZipWriter::new(std::io::BufWriter::new(file));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .large_file(true);
    zip.start_file(format!("{key}.npy"), opts)
        .map_err(|e| SampleError::Arg(format!("{}: {e}", tmp.display())))?;
    zip.write_all(&npy_header(shape)).map_err(io(&tmp))?;
    for p in parts {
        let bytes = std::fs::read(p).map_err(io(p))?;
        let (_, values) = parse_npy(&bytes, p)?;
        zip.write_all(&f32_bytes(&values)).map_err(io(&tmp))?;
    }
    let mut w = zip.finish().map_err(|e| SampleError::Arg(format!("{}: {e}", tmp.display())))?;
    w.flush().map_err(io(&tmp))?;
    drop(w);
    std::fs::rename(&tmp, out).map_err(io(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_round_trip_and_alignment() {
        let h = npy_header(&[2, 3]);
        assert_eq!(h.len() % 64, 0);
        let dir = std::env::temp_dir().join(format!("ddpm-npy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let a = dir.join("a.npy");
        write_npy(&a, &[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
        let (shape, v) = read_array(&a, "x").unwrap();
        assert_eq!(shape, vec![2, 3]);
        assert_eq!(v[5], 6.0);
        let b = dir.join("b.npy");
        write_npy(&b, &[1, 3], &[7.0, 8.0, 9.0]).unwrap();
        let z = dir.join("s.npz");
        assemble_npz(&z, "samples", &[3, 3], &[a, b]).unwrap();
        let (shape, v) = read_array(&z, "samples").unwrap();
        assert_eq!(shape, vec![3, 3]);
        assert_eq!(v, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
