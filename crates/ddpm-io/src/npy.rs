//! NumPy arrays on disk: `.npy` (format versions 1.0, 2.0 and 3.0 read; 1.0 written, 2.0 when
//! the header needs it) and `.npz` (a zip of `.npy` entries), little-endian f16, f32 and f64 in C
//! order — what `np.save`/`np.savez` write for float arrays and what pytorch-fid's statistics
//! files hold. Any float type is read as any other (narrowing rounds to nearest). Large arrays are
//! streamed into an `.npz` entry by [`NpzWriter`], so memory does not grow with the array.
//!
//! Every malformed input (a short file, a truncated header of any version, a header without a
//! shape, a data section shorter than the shape says, an unsupported dtype) is an [`NpyError`]
//! naming the file, never a panic.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 6] = b"\x93NUMPY";

/// Why an array file could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("{}: {reason}", path.display())]
pub struct NpyError {
    pub path: PathBuf,
    pub reason: String,
}

fn err(path: &Path, reason: impl Into<String>) -> NpyError {
    NpyError { path: path.into(), reason: reason.into() }
}

/// A float element type of `.npy` files.
pub trait Element: Copy + Default + 'static {
    /// NumPy's `descr` of the little-endian type: `<f2`, `<f4` or `<f8`.
    const DESCR: &'static str;
    const SIZE: usize;
    fn write_le(self, out: &mut Vec<u8>);
    fn from_f64(v: f64) -> Self;
    fn from_f32(v: f32) -> Self;
}

impl Element for f32 {
    const DESCR: &'static str = "<f4";
    const SIZE: usize = 4;
    fn write_le(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
    fn from_f64(v: f64) -> Self {
        v as f32
    }
    fn from_f32(v: f32) -> Self {
        v
    }
}

impl Element for f64 {
    const DESCR: &'static str = "<f8";
    const SIZE: usize = 8;
    fn write_le(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
    fn from_f64(v: f64) -> Self {
        v
    }
    fn from_f32(v: f32) -> Self {
        v as f64
    }
}

impl Element for half::f16 {
    const DESCR: &'static str = "<f2";
    const SIZE: usize = 2;
    fn write_le(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
    fn from_f64(v: f64) -> Self {
        half::f16::from_f64(v)
    }
    fn from_f32(v: f32) -> Self {
        half::f16::from_f32(v)
    }
}

/// An array read from a file: its shape and its values in C order.
#[derive(Debug, Clone, PartialEq)]
pub struct Array<T> {
    pub shape: Vec<usize>,
    pub values: Vec<T>,
}

/// The `.npy` header (magic, version, header length, dict, padding to a multiple of 64) for
/// an array of `T` with `shape`.
pub fn header<T: Element>(shape: &[usize]) -> Vec<u8> {
    let dims = match shape {
        [d] => format!("({d},)"),
        _ => format!("({})", shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")),
    };
    let dict = format!("{{'descr': '{}', 'fortran_order': False, 'shape': {dims}, }}", T::DESCR);
    // Version 1.0 stores the header length in 2 bytes; 2.0 in 4.
    let (version, len_bytes) = if dict.len() + 11 < 65_536 { (1u8, 2) } else { (2u8, 4) };
    let unpadded = 8 + len_bytes + dict.len() + 1;
    let pad = (64 - unpadded % 64) % 64;
    let hlen = dict.len() + pad + 1;
    let mut h = MAGIC.to_vec();
    h.extend_from_slice(&[version, 0]);
    if len_bytes == 2 {
        h.extend_from_slice(&(hlen as u16).to_le_bytes());
    } else {
        h.extend_from_slice(&(hlen as u32).to_le_bytes());
    }
    h.extend_from_slice(dict.as_bytes());
    h.extend(std::iter::repeat_n(b' ', pad));
    h.push(b'\n');
    h
}

/// Values as little-endian bytes.
pub fn value_bytes<T: Element>(values: &[T]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() * T::SIZE);
    for &v in values {
        v.write_le(&mut out);
    }
    out
}

/// A whole `.npy` file in memory.
pub fn to_bytes<T: Element>(shape: &[usize], values: &[T]) -> Vec<u8> {
    let mut bytes = header::<T>(shape);
    bytes.extend(value_bytes(values));
    bytes
}

/// The `'shape': (...)` of a `.npy` header.
fn header_shape(header: &str, origin: &Path) -> Result<Vec<usize>, NpyError> {
    let shape_str = header
        .split("'shape':")
        .nth(1)
        .and_then(|s| s.split('(').nth(1))
        .and_then(|s| s.split(')').next())
        .ok_or_else(|| err(origin, "no shape in the .npy header"))?;
    shape_str
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().map_err(|_| err(origin, format!("bad shape ({shape_str})"))))
        .collect()
}

/// Parses a `.npy` file's bytes; `origin` names it in errors.
pub fn parse<T: Element>(bytes: &[u8], origin: &Path) -> Result<Array<T>, NpyError> {
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err(err(origin, "not a .npy array (bad magic)"));
    }
    let (hlen, start): (usize, usize) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => {
            let b = bytes.get(8..12).ok_or_else(|| err(origin, "truncated .npy header"))?;
            (u32::from_le_bytes(b.try_into().unwrap()) as usize, 12)
        }
        v => return Err(err(origin, format!("unsupported .npy format version {v}"))),
    };
    let header = bytes
        .get(start..start.saturating_add(hlen))
        .ok_or_else(|| err(origin, "truncated .npy header"))?;
    let header = std::str::from_utf8(header).map_err(|_| err(origin, "bad .npy header"))?;
    if header.contains("'fortran_order': True") {
        return Err(err(origin, "Fortran-ordered arrays are not supported"));
    }
    let shape = header_shape(header, origin)?;
    let n = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| err(origin, format!("shape {shape:?} is too large")))?;
    let data = &bytes[start + hlen..];
    let need = |size: usize| {
        let want = n.saturating_mul(size);
        if data.len() < want {
            Err(err(
                origin,
                format!(
                    "truncated: {n} values of {size} bytes expected, {} bytes present",
                    data.len()
                ),
            ))
        } else {
            Ok(&data[..want])
        }
    };
    let values = if header.contains("'<f2'") {
        need(2)?
            .chunks_exact(2)
            .map(|c| T::from_f32(half::f16::from_le_bytes([c[0], c[1]]).to_f32()))
            .collect()
    } else if header.contains("'<f4'") {
        need(4)?
            .chunks_exact(4)
            .map(|c| T::from_f32(f32::from_le_bytes(c.try_into().unwrap())))
            .collect()
    } else if header.contains("'<f8'") {
        need(8)?
            .chunks_exact(8)
            .map(|c| T::from_f64(f64::from_le_bytes(c.try_into().unwrap())))
            .collect()
    } else {
        return Err(err(origin, "only little-endian float16, float32 and float64 arrays are read"));
    };
    Ok(Array { shape, values })
}

/// Reads an array: a `.npy` file, or from a `.npz` the entry `key` — or, with `key` = None,
/// its only array (an error naming the entries when there are several).
pub fn read<T: Element>(path: &Path, key: Option<&str>) -> Result<Array<T>, NpyError> {
    let bytes = std::fs::read(path).map_err(|e| err(path, e.to_string()))?;
    if bytes.starts_with(MAGIC) {
        return parse(&bytes, path);
    }
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| err(path, format!("not an .npy or .npz file ({e})")))?;
    let names = entry_names(&zip);
    let entry = match key {
        Some(k) => format!("{k}.npy"),
        None if names.len() == 1 => names[0].clone(),
        None => {
            return Err(err(
                path,
                format!("holds {} arrays ({}); expected one", names.len(), names.join(", ")),
            ));
        }
    };
    let mut file = zip.by_name(&entry).map_err(|_| {
        err(
            path,
            format!(
                "has no array {:?} (it holds {})",
                entry.trim_end_matches(".npy"),
                names.join(", ")
            ),
        )
    })?;
    let mut buf = Vec::new();
    file.read_to_end(&mut buf).map_err(|e| err(path, format!("{entry}: {e}")))?;
    parse(&buf, &path.join(&entry))
        .map_err(|e| NpyError { path: path.into(), reason: format!("{entry}: {}", e.reason) })
}

/// (shape, f32 values) of the array `key` of an `.npz`, or of a `.npy` file (whose one array
/// needs no key).
pub fn read_array(path: &Path, key: &str) -> Result<(Vec<usize>, Vec<f32>), NpyError> {
    let a = read::<f32>(path, Some(key))?;
    Ok((a.shape, a.values))
}

/// The shape of the array `key` of an `.npz` file, from its header alone (the values are not
/// read, so this costs the same for 50,000 images as for one).
pub fn npz_shape(path: &Path, key: &str) -> Result<Vec<usize>, NpyError> {
    Ok(NpzRows::open(path, key)?.shape)
}

/// Rows of a float32 array stored (uncompressed, as `np.savez` and our writer store them) in
/// an `.npz`, read straight from the file a few rows at a time: a rank of a sharded evaluation
/// reads its own batches, and memory does not grow with the array. Partial reads cannot check
/// the entry's CRC-32 (it covers the whole entry); [`read`] does.
#[derive(Debug)]
pub struct NpzRows {
    file: std::fs::File,
    path: PathBuf,
    /// Offset of the first value in the file.
    offset: u64,
    /// The array's shape; rows are along the first dimension.
    pub shape: Vec<usize>,
    /// Values per row.
    pub row_len: usize,
    /// Whether the values are float32 (rows can be read only then).
    pub is_f32: bool,
}

impl NpzRows {
    /// Opens array `key` of the `.npz` at `path`; errors name the file and what was expected.
    pub fn open(path: &Path, key: &str) -> Result<Self, NpyError> {
        let file = std::fs::File::open(path).map_err(|e| err(path, e.to_string()))?;
        let mut zip = zip::ZipArchive::new(file.try_clone().map_err(|e| err(path, e.to_string()))?)
            .map_err(|e| err(path, format!("not an .npz file ({e})")))?;
        let entry = format!("{key}.npy");
        let names: Vec<String> =
            entry_names(&zip).iter().map(|n| n.trim_end_matches(".npy").to_owned()).collect();
        let mut f = zip.by_name(&entry).map_err(|_| {
            err(path, format!("has no array {key:?} (it holds {})", names.join(", ")))
        })?;
        let stored = f.compression() == zip::CompressionMethod::Stored;
        let data_start = f.data_start();
        let mut head = vec![0u8; 12];
        f.read_exact(&mut head)
            .map_err(|_| err(path, format!("{entry}: truncated .npy header")))?;
        let (hlen, start) = match (&head[..6] == MAGIC, head[6]) {
            (true, 1) => (u16::from_le_bytes([head[8], head[9]]) as usize, 10),
            (true, 2 | 3) => (u32::from_le_bytes(head[8..12].try_into().unwrap()) as usize, 12),
            _ => {
                return Err(err(path, format!("{entry}: not a .npy array (bad magic or version)")));
            }
        };
        let mut rest = vec![0u8; (start + hlen).saturating_sub(12).min(1 << 20)];
        f.read_exact(&mut rest)
            .map_err(|_| err(path, format!("{entry}: truncated .npy header")))?;
        head.extend(rest);
        let header = std::str::from_utf8(&head[start..(start + hlen).min(head.len())])
            .map_err(|_| err(path, format!("{entry}: bad .npy header")))?;
        let origin = path.join(&entry);
        let shape = header_shape(header, &origin)?;
        let row_len = shape.iter().skip(1).try_fold(1usize, |a, &d| a.checked_mul(d));
        let row_len = row_len.ok_or_else(|| err(path, format!("shape {shape:?} is too large")))?;
        let is_f32 = header.contains("'<f4'") && stored && data_start.is_some();
        let offset = data_start.unwrap_or(0) + (start + hlen) as u64;
        if is_f32 {
            let need = (shape.first().copied().unwrap_or(0) * row_len * 4) as u64;
            let len = file.metadata().map_err(|e| err(path, e.to_string()))?.len();
            if offset + need > len {
                return Err(err(
                    path,
                    format!(
                        "{entry}: truncated: {need} bytes of values expected at {offset}, the file has {len}"
                    ),
                ));
            }
        }
        Ok(Self { file, path: path.into(), offset, shape, row_len, is_f32 })
    }

    /// Rows `first..first + count` as f32 values (row-major).
    pub fn read_rows(&self, first: usize, count: usize) -> Result<Vec<f32>, NpyError> {
        use std::os::unix::fs::FileExt;
        let n = self.shape.first().copied().unwrap_or(0);
        if !self.is_f32 {
            return Err(err(&self.path, "rows are read from stored float32 arrays only"));
        }
        if first + count > n {
            return Err(err(&self.path, format!("rows {first}..{} of {n}", first + count)));
        }
        let mut bytes = vec![0u8; count * self.row_len * 4];
        let at = self.offset + (first * self.row_len * 4) as u64;
        self.file.read_exact_at(&mut bytes, at).map_err(|e| err(&self.path, e.to_string()))?;
        Ok(bytes.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect())
    }
}

/// The names of the arrays in an `.npz` file (without `.npy`).
pub fn npz_names(path: &Path) -> Result<Vec<String>, NpyError> {
    let file = std::fs::File::open(path).map_err(|e| err(path, e.to_string()))?;
    let zip =
        zip::ZipArchive::new(file).map_err(|e| err(path, format!("not an .npz file ({e})")))?;
    Ok(entry_names(&zip).into_iter().map(|n| n.trim_end_matches(".npy").to_owned()).collect())
}

fn entry_names<R: std::io::Read + std::io::Seek>(zip: &zip::ZipArchive<R>) -> Vec<String> {
    zip.file_names().filter_map(|n| n.ok().map(|n| n.into_owned())).collect()
}

/// Writes one `.npy` file atomically.
pub fn write_npy<T: Element>(path: &Path, shape: &[usize], values: &[T]) -> Result<(), NpyError> {
    check_len(path, shape, values.len())?;
    crate::write_atomic(path, &to_bytes(shape, values)).map_err(|e| err(path, e.to_string()))
}

fn check_len(path: &Path, shape: &[usize], len: usize) -> Result<(), NpyError> {
    let n: usize = shape.iter().product();
    if n != len {
        return Err(err(path, format!("{len} values do not fill shape {shape:?}")));
    }
    Ok(())
}

/// Writes an `.npz` of whole arrays atomically, deflate-compressed or stored.
pub fn write_npz<T: Element>(
    path: &Path,
    arrays: &[(&str, &[usize], &[T])],
    compressed: bool,
) -> Result<(), NpyError> {
    let mut w = NpzWriter::create(path, compressed)?;
    for (name, shape, values) in arrays {
        check_len(path, shape, values.len())?;
        w.start_array::<T>(name, shape)?;
        w.write_values(values)?;
    }
    w.finish()
}

/// Streams arrays into an `.npz` (written to a temporary file, renamed into place by
/// [`NpzWriter::finish`]; dropped unfinished, it leaves the target untouched).
pub struct NpzWriter {
    path: PathBuf,
    tmp: PathBuf,
    zip: Option<zip::ZipWriter<std::io::BufWriter<std::fs::File>>>,
    compressed: bool,
}

impl std::fmt::Debug for NpzWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NpzWriter").field("path", &self.path).finish()
    }
}

impl NpzWriter {
    pub fn create(path: &Path, compressed: bool) -> Result<Self, NpyError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| err(dir, e.to_string()))?;
        }
        let tmp = crate::atomic::temp_path(path);
        let file = std::fs::File::create(&tmp).map_err(|e| err(&tmp, e.to_string()))?;
        Ok(Self {
            path: path.into(),
            zip: Some(zip::ZipWriter::new(std::io::BufWriter::new(file))),
            tmp,
            compressed,
        })
    }

    fn zip(&mut self) -> &mut zip::ZipWriter<std::io::BufWriter<std::fs::File>> {
        self.zip.as_mut().expect("NpzWriter used after finish")
    }

    /// Starts the entry `name.npy` holding an array of `T` with `shape`; its values follow
    /// through [`NpzWriter::write_values`].
    pub fn start_array<T: Element>(&mut self, name: &str, shape: &[usize]) -> Result<(), NpyError> {
        let method = if self.compressed {
            zip::CompressionMethod::Deflated
        } else {
            zip::CompressionMethod::Stored
        };
        let opts =
            zip::write::SimpleFileOptions::default().compression_method(method).large_file(true);
        let tmp = self.tmp.clone();
        self.zip().start_file(format!("{name}.npy"), opts).map_err(|e| err(&tmp, e.to_string()))?;
        self.zip().write_all(&header::<T>(shape)).map_err(|e| err(&tmp, e.to_string()))
    }

    pub fn write_values<T: Element>(&mut self, values: &[T]) -> Result<(), NpyError> {
        let tmp = self.tmp.clone();
        self.zip().write_all(&value_bytes(values)).map_err(|e| err(&tmp, e.to_string()))
    }

    /// Completes the zip and renames it over the target (fsynced).
    pub fn finish(mut self) -> Result<(), NpyError> {
        let zip = self.zip.take().expect("finished once");
        let tmp = self.tmp.clone();
        let mut w = zip.finish().map_err(|e| err(&tmp, e.to_string()))?;
        w.flush().map_err(|e| err(&tmp, e.to_string()))?;
        drop(w);
        crate::write_atomic_with(&self.path, |target_tmp| std::fs::rename(&tmp, target_tmp))
            .map_err(|e| err(&self.path, e.to_string()))
    }
}

impl Drop for NpzWriter {
    fn drop(&mut self) {
        if self.zip.is_some() {
            self.zip = None;
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("ddpm-npy-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// Rows read straight from a stored `.npz` entry are the rows of the array, whatever the
    /// entry's place in the file; a compressed entry or a cut file is refused by name.
    #[test]
    fn npz_rows_read_any_rows_of_a_stored_array_and_refuse_what_they_cannot() {
        let d = dir("rows");
        let p = d.join("s.npz");
        let values: Vec<f32> = (0..5 * 2 * 3).map(|v| v as f32 * 0.5).collect();
        write_npz(
            &p,
            &[("first", &[2][..], &[9.0f32, 8.0][..]), ("samples", &[5, 2, 3][..], &values[..])],
            false,
        )
        .unwrap();
        let rows = NpzRows::open(&p, "samples").unwrap();
        assert_eq!((rows.shape.clone(), rows.row_len), (vec![5, 2, 3], 6));
        assert_eq!(npz_shape(&p, "samples").unwrap(), vec![5, 2, 3]);
        for (first, count) in [(0, 5), (1, 2), (4, 1), (3, 0)] {
            assert_eq!(
                rows.read_rows(first, count).unwrap(),
                values[first * 6..(first + count) * 6]
            );
        }
        assert!(rows.read_rows(4, 2).unwrap_err().to_string().contains("rows 4..6 of 5"));
        let e = NpzRows::open(&p, "nope").unwrap_err().to_string();
        assert!(e.contains("s.npz") && e.contains("first, samples"), "{e}");
        let z = d.join("z.npz");
        write_npz(&z, &[("samples", &[5, 2, 3][..], &values[..])], true).unwrap();
        let rows = NpzRows::open(&z, "samples").unwrap();
        assert!(!rows.is_f32);
        assert!(rows.read_rows(0, 1).is_err());
        // A file cut inside the values.
        let bytes = std::fs::read(&p).unwrap();
        let cut = d.join("cut.npz");
        let mut w = bytes.clone();
        w.truncate(bytes.len() - 40);
        std::fs::write(&cut, &w).unwrap();
        assert!(NpzRows::open(&cut, "samples").is_err());
    }

    #[test]
    fn headers_are_aligned_to_64_bytes() {
        for shape in [&[3][..], &[2, 3], &[50_000, 3, 32, 32]] {
            assert_eq!(header::<f32>(shape).len() % 64, 0);
            assert_eq!(header::<f64>(shape).len() % 64, 0);
        }
        assert!(String::from_utf8_lossy(&header::<f32>(&[7])).contains("'shape': (7,)"));
    }

    #[test]
    fn npy_and_npz_round_trip_and_convert_between_float_types() {
        let d = dir("rt");
        let a = d.join("a.npy");
        write_npy(&a, &[2, 3], &[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.5]).unwrap();
        let r: Array<f64> = read(&a, None).unwrap();
        assert_eq!(r.shape, vec![2, 3]);
        assert_eq!(r.values[5], 6.5);
        let z = d.join("s.npz");
        write_npz(&z, &[("mu", &[2][..], &[0.25f64, -1.0][..]), ("sigma", &[1, 1], &[3.0])], true)
            .unwrap();
        let mu: Array<f64> = read(&z, Some("mu")).unwrap();
        assert_eq!(mu.values, vec![0.25, -1.0]);
        assert_eq!(npz_names(&z).unwrap(), vec!["mu", "sigma"]);
        let e = read::<f32>(&z, None).unwrap_err().to_string();
        assert!(e.contains("s.npz") && e.contains("2 arrays"), "{e}");
        let e = read::<f32>(&z, Some("noise")).unwrap_err().to_string();
        assert!(e.contains("no array \"noise\""), "{e}");
    }

    #[test]
    fn float16_arrays_round_to_nearest_and_read_back() {
        let d = dir("f16");
        let p = d.join("h.npz");
        let v = [0.1f32, -2.5, 65504.0, 1e-8];
        let h: Vec<half::f16> = v.iter().map(|&x| half::f16::from_f32(x)).collect();
        write_npz(&p, &[("pool3", &[2, 2][..], &h[..])], false).unwrap();
        let r: Array<f32> = read(&p, Some("pool3")).unwrap();
        assert_eq!(r.values, h.iter().map(|x| x.to_f32()).collect::<Vec<_>>());
        assert_eq!(r.values[1], -2.5);
        assert!((r.values[0] - 0.1).abs() < 1e-4);
    }

    #[test]
    fn streaming_npz_equals_whole_arrays() {
        let d = dir("stream");
        let p = d.join("x.npz");
        let mut w = NpzWriter::create(&p, false).unwrap();
        w.start_array::<f32>("samples", &[3, 2]).unwrap();
        w.write_values(&[1.0f32, 2.0]).unwrap();
        w.write_values(&[3.0f32, 4.0, 5.0, 6.0]).unwrap();
        w.finish().unwrap();
        let r: Array<f32> = read(&p, Some("samples")).unwrap();
        assert_eq!(r, Array { shape: vec![3, 2], values: vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0] });
        // An unfinished writer leaves nothing behind.
        let q = d.join("y.npz");
        drop(NpzWriter::create(&q, false).unwrap());
        assert!(!q.exists());
        assert_eq!(std::fs::read_dir(&d).unwrap().count(), 1);
    }

    /// Regression: a version 2/3 header cut short used to index past the end and panic.
    #[test]
    fn truncated_headers_of_every_version_are_errors() {
        let origin = Path::new("x.npy");
        let full = to_bytes(&[2, 2], &[1.0f32; 4]);
        for version in [1u8, 2, 3] {
            let mut b = full.clone();
            b[6] = version;
            for cut in 0..b.len() {
                let r = parse::<f32>(&b[..cut], origin);
                assert!(r.is_err(), "version {version}, {cut} bytes parsed");
            }
        }
        let e = parse::<f32>(&full[..full.len() - 1], origin).unwrap_err().to_string();
        assert!(e.starts_with("x.npy: truncated"), "{e}");
    }

    proptest! {
        #[test]
        fn any_prefix_or_byte_flip_is_an_error_or_a_value_never_a_panic(
            cut in 0usize..200, flip in 0usize..200, byte in any::<u8>()
        ) {
            let mut b = to_bytes(&[3, 5], &[0.5f64; 15]);
            let i = flip % b.len();
            b[i] = byte;
            let _ = parse::<f32>(&b[..cut.min(b.len())], Path::new("p.npy"));
        }

        #[test]
        fn round_trip_any_shape(dims in proptest::collection::vec(1usize..5, 1..4)) {
            let n: usize = dims.iter().product();
            let v: Vec<f32> = (0..n).map(|i| i as f32 * 0.5 - 3.0).collect();
            let r: Array<f32> = parse(&to_bytes(&dims, &v), Path::new("r.npy")).unwrap();
            prop_assert_eq!(r.shape, dims);
            prop_assert_eq!(r.values, v);
        }
    }
}
