//! safetensors files: never pickle, so loading weights can never execute code.
//!
//! Reading maps the file and validates its header against its length first, so a truncated
//! or foreign file is reported by name before any tensor is touched. Writing is atomic
//! ([`ddpm_io::write_atomic_with`]), so a crash mid-write leaves the previous file intact.

use crate::error::{NetError, Result};
use safetensors::Dtype;
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

/// One tensor's entry in the header.
#[derive(Debug, Clone)]
pub struct TensorInfo {
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub start: usize,
    pub end: usize,
}

/// An open, validated safetensors file.
#[derive(Debug)]
pub struct TensorFile {
    pub path: PathBuf,
    mmap: memmap2::Mmap,
    data_start: usize,
    pub tensors: BTreeMap<String, TensorInfo>,
    pub metadata: HashMap<String, String>,
}

fn file_err(path: &Path, reason: impl Into<String>) -> NetError {
    NetError::File { path: path.to_path_buf(), reason: reason.into() }
}

fn kind_of(dtype: Dtype, path: &Path, name: &str) -> Result<Kind> {
    Ok(match dtype {
        Dtype::F32 => Kind::Float,
        Dtype::F64 => Kind::Double,
        Dtype::F16 => Kind::Half,
        Dtype::BF16 => Kind::BFloat16,
        Dtype::I64 => Kind::Int64,
        Dtype::I32 => Kind::Int,
        Dtype::U8 => Kind::Uint8,
        Dtype::I8 => Kind::Int8,
        Dtype::BOOL => Kind::Bool,
        other => {
            return Err(file_err(path, format!("tensor {name} has unsupported dtype {other:?}")));
        }
    })
}

fn dtype_of(kind: Kind) -> Option<Dtype> {
    Some(match kind {
        Kind::Float => Dtype::F32,
        Kind::Double => Dtype::F64,
        Kind::Half => Dtype::F16,
        Kind::BFloat16 => Dtype::BF16,
        Kind::Int64 => Dtype::I64,
        Kind::Int => Dtype::I32,
        Kind::Uint8 => Dtype::U8,
        Kind::Int8 => Dtype::I8,
        Kind::Bool => Dtype::BOOL,
        _ => return None,
    })
}

impl TensorFile {
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|source| NetError::Io { path: path.into(), source })?;
        // Safety: the map is read-only and private to this process; a concurrent truncation
        // by another process is the one risk, and we never write files in place.
        let mmap = unsafe { memmap2::Mmap::map(&file) }
            .map_err(|source| NetError::Io { path: path.into(), source })?;
        let len = mmap.len();
        if len < 8 {
            return Err(file_err(path, format!("not a safetensors file ({len} bytes)")));
        }
        let n = u64::from_le_bytes(mmap[..8].try_into().unwrap()) as usize;
        if n > 100_000_000 || 8 + n > len {
            return Err(file_err(path, "not a safetensors file (bad header length)"));
        }
        let header: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&mmap[8..8 + n])
                .map_err(|e| file_err(path, format!("not a safetensors file (header: {e})")))?;
        let mut tensors = BTreeMap::new();
        let mut metadata = HashMap::new();
        let mut data_end = 0usize;
        for (name, v) in header {
            if name == "__metadata__" {
                if let Some(m) = v.as_object() {
                    for (k, v) in m {
                        metadata.insert(k.clone(), v.as_str().unwrap_or_default().to_owned());
                    }
                }
                continue;
            }
            let info: serde_json::Value = v;
            let dtype: Dtype = serde_json::from_value(info["dtype"].clone())
                .map_err(|e| file_err(path, format!("tensor {name}: bad dtype ({e})")))?;
            let shape: Vec<usize> = serde_json::from_value(info["shape"].clone())
                .map_err(|e| file_err(path, format!("tensor {name}: bad shape ({e})")))?;
            let offsets: [usize; 2] = serde_json::from_value(info["data_offsets"].clone())
                .map_err(|e| file_err(path, format!("tensor {name}: bad offsets ({e})")))?;
            let numel: usize = shape.iter().product();
            if offsets[1] < offsets[0] || offsets[1] - offsets[0] != numel * dtype.bitsize() / 8 {
                return Err(file_err(
                    path,
                    format!("tensor {name}: offsets disagree with its shape"),
                ));
            }
            data_end = data_end.max(offsets[1]);
            tensors.insert(name, TensorInfo { dtype, shape, start: offsets[0], end: offsets[1] });
        }
        let actual = (len - 8 - n) as u64;
        if (data_end as u64) > actual {
            return Err(NetError::Truncated {
                path: path.into(),
                expected: data_end as u64,
                actual,
            });
        }
        Ok(Self { path: path.into(), mmap, data_start: 8 + n, tensors, metadata })
    }

    /// A copy of tensor `name` on the CPU, in its stored dtype.
    pub fn tensor(&self, name: &str) -> Result<Tensor> {
        let info = self.tensors.get(name).ok_or_else(|| NetError::MissingKeys {
            path: self.path.clone(),
            keys: vec![name.into()],
        })?;
        let kind = kind_of(info.dtype, &self.path, name)?;
        let bytes = &self.mmap[self.data_start + info.start..self.data_start + info.end];
        let shape: Vec<i64> = info.shape.iter().map(|&d| d as i64).collect();
        Ok(Tensor::f_from_data_size(bytes, &shape, kind)?)
    }

    /// The stored bytes of tensor `name` (little-endian, C order), as the file holds them.
    pub fn raw(&self, name: &str) -> Option<&[u8]> {
        let info = self.tensors.get(name)?;
        Some(&self.mmap[self.data_start + info.start..self.data_start + info.end])
    }

    /// Names under `prefix` with the prefix removed.
    pub fn names_under<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.tensors.keys().filter_map(move |k| k.strip_prefix(prefix))
    }
}

/// A tensor as a safetensors file stores it: dtype, shape and little-endian bytes in C order.
#[derive(Debug, Clone)]
pub struct TensorBytes {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

fn to_bytes(name: &str, t: &Tensor) -> Result<TensorBytes> {
    let t = t.to_device(Device::Cpu).contiguous();
    let dtype = dtype_of(t.kind()).ok_or_else(|| {
        file_err(Path::new("<tensor>"), format!("cannot store kind {:?}", t.kind()))
    })?;
    let numel = t.numel();
    let mut data = vec![0u8; numel * t.kind().elt_size_in_bytes()];
    t.f_copy_data_u8(&mut data, numel)?;
    Ok(TensorBytes {
        name: name.to_owned(),
        dtype,
        shape: t.size().iter().map(|&d| d as usize).collect(),
        data,
    })
}

/// The tensors as the bytes [`write_tensor_bytes`] stores (copied to the CPU).
pub fn tensor_bytes(tensors: &[(String, Tensor)]) -> Result<Vec<TensorBytes>> {
    tensors.iter().map(|(n, t)| to_bytes(n, t)).collect()
}

/// Writes `tensors` with `metadata` to `path` atomically (see [`ddpm_io::write_atomic_with`]:
/// a crash or a full disk leaves the previous file intact).
pub fn write_tensors(
    path: impl AsRef<Path>,
    tensors: &[(String, Tensor)],
    metadata: &HashMap<String, String>,
) -> Result<()> {
    write_tensor_bytes(path, &tensor_bytes(tensors)?, metadata)
}

/// Writes tensors already turned into bytes ([`tensor_bytes`]) with `metadata` to `path`
/// atomically, streamed into [`ddpm_io::write_atomic_with`]'s temporary file.
///
/// The safetensors layout is written here rather than by `safetensors::serialize_to_file`,
/// which (0.8) writes a temporary file of its own, with a random name and mode 0600, and
/// renames it over the path it is given: a kill mid-write then left debris that no listing
/// recognised, and a fault injected at our temporary path was renamed away. Tensors go in
/// safetensors' own order (larger dtypes first, then by name, so each stays aligned) after a
/// JSON header padded with spaces to a multiple of 8 bytes.
pub fn write_tensor_bytes(
    path: impl AsRef<Path>,
    tensors: &[TensorBytes],
    metadata: &HashMap<String, String>,
) -> Result<()> {
    use std::io::Write;
    let path = path.as_ref();
    let mut order: Vec<&TensorBytes> = tensors.iter().collect();
    order.sort_by(|a, b| b.dtype.bitsize().cmp(&a.dtype.bitsize()).then(a.name.cmp(&b.name)));
    let mut header = serde_json::Map::new();
    if !metadata.is_empty() {
        let m: BTreeMap<&String, &String> = metadata.iter().collect();
        header.insert("__metadata__".into(), serde_json::json!(m));
    }
    let mut offset = 0usize;
    for t in &order {
        let numel: usize = t.shape.iter().product();
        if t.data.len() != numel * t.dtype.bitsize() / 8 {
            return Err(file_err(
                path,
                format!("tensor {}: bytes disagree with its shape", t.name),
            ));
        }
        let entry = serde_json::json!({
            "dtype": t.dtype,
            "shape": t.shape,
            "data_offsets": [offset, offset + t.data.len()],
        });
        if t.name == "__metadata__" || header.insert(t.name.clone(), entry).is_some() {
            return Err(file_err(
                path,
                format!("tensor name {:?} given twice or reserved", t.name),
            ));
        }
        offset += t.data.len();
    }
    let mut text = serde_json::to_vec(&header).expect("a JSON map serialises");
    text.resize(text.len().div_ceil(8) * 8, b' ');
    ddpm_io::write_atomic_with(path, |tmp| {
        let mut f = std::io::BufWriter::with_capacity(1 << 20, File::create(tmp)?);
        f.write_all(&(text.len() as u64).to_le_bytes())?;
        f.write_all(&text)?;
        for t in &order {
            f.write_all(&t.data)?;
        }
        f.flush()
    })
    .map_err(|source| NetError::Io { path: path.into(), source })
}

/// `vs`'s variables named as the file names them under `prefix`.
pub fn named_variables(vs: &VarStore, prefix: &str) -> Vec<(String, Tensor)> {
    let mut v: Vec<(String, Tensor)> =
        vs.variables().into_iter().map(|(k, t)| (format!("{prefix}{k}"), t)).collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// Copies the tensors stored under `prefix` into `vs`: every variable must be present with its
/// shape, and the file must hold no other tensor under `prefix`.
pub fn load_varstore(vs: &VarStore, file: &TensorFile, prefix: &str) -> Result<()> {
    let vars = vs.variables();
    let mut missing: Vec<String> = vars
        .keys()
        .filter(|k| !file.tensors.contains_key(&format!("{prefix}{k}")))
        .cloned()
        .collect();
    missing.sort();
    if !missing.is_empty() {
        return Err(NetError::MissingKeys { path: file.path.clone(), keys: missing });
    }
    let mut unexpected: Vec<String> =
        file.names_under(prefix).filter(|k| !vars.contains_key(*k)).map(str::to_owned).collect();
    unexpected.sort();
    if !unexpected.is_empty() {
        return Err(NetError::UnexpectedKeys { path: file.path.clone(), keys: unexpected });
    }
    tch::no_grad(|| -> Result<()> {
        for (name, var) in &vars {
            let src = file.tensor(&format!("{prefix}{name}"))?;
            if src.size() != var.size() {
                return Err(NetError::Shape {
                    path: file.path.clone(),
                    key: name.clone(),
                    expected: var.size(),
                    found: src.size(),
                });
            }
            var.shallow_clone().f_copy_(&src)?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::nn;

    #[test]
    fn round_trip_with_metadata_and_truncation_is_named() {
        let dir = ddpm_testkit::temp_dir("tensorfile");
        let path = dir.join("w.safetensors");
        let a = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0]).view([2, 2]);
        let b = Tensor::from_slice(&[7i64]);
        let meta = HashMap::from([("step".to_string(), "12".to_string())]);
        write_tensors(&path, &[("a".into(), a.shallow_clone()), ("b".into(), b)], &meta).unwrap();
        let f = TensorFile::open(&path).unwrap();
        assert_eq!(f.metadata["step"], "12");
        assert!(f.tensor("a").unwrap().equal(&a));
        assert_eq!(f.tensor("b").unwrap().int64_value(&[0]), 7);
        // Truncate by 3 bytes: the error names the file and the sizes.
        let bytes = std::fs::read(&path).unwrap();
        let cut = dir.join("cut.safetensors");
        std::fs::write(&cut, &bytes[..bytes.len() - 3]).unwrap();
        let e = TensorFile::open(&cut).unwrap_err().to_string();
        assert!(e.contains("cut.safetensors") && e.contains("truncated"), "{e}");
        std::fs::write(&cut, b"garbage").unwrap();
        assert!(TensorFile::open(&cut).unwrap_err().to_string().contains("not a safetensors file"));
        // No temporary files are left behind.
        let leftovers: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().contains(".tmp-"))
            .collect();
        assert!(leftovers.is_empty());
    }

    /// Our writer's files are what the safetensors crate itself reads (its deserialize checks
    /// the header, the offsets' contiguity and the buffer length), and it leaves nothing else
    /// in the folder: no temporary file of another name, no 0600 mode.
    #[test]
    fn files_are_valid_safetensors_with_no_stray_temporaries() {
        use std::os::unix::fs::PermissionsExt;
        let dir = ddpm_testkit::temp_dir("tensorfile-format");
        let path = dir.join("m.safetensors");
        let a = Tensor::from_slice(&[1.5f32, -2.0, 3.25]).view([3, 1]);
        let b = Tensor::from_slice(&[7.0f64, 8.0]);
        let c = Tensor::from_slice(&[1u8, 2, 3, 4, 5]);
        let meta = HashMap::from([("k".to_string(), "v \"quoted\"".to_string())]);
        let tensors = [("b".into(), b), ("a".into(), a.shallow_clone()), ("c".into(), c)];
        write_tensors(&path, &tensors, &meta).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let (n, m) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        assert_eq!(n % 8, 0);
        assert_eq!(m.metadata().as_ref().unwrap()["k"], "v \"quoted\"");
        let view = st.tensor("a").unwrap();
        assert_eq!((view.dtype(), view.shape()), (Dtype::F32, &[3usize, 1][..]));
        let back: Vec<f32> =
            view.data().chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
        assert_eq!(back, vec![1.5, -2.0, 3.25]);
        // f64 first (alignment), then f32, then u8.
        let starts: Vec<usize> =
            ["b", "a", "c"].iter().map(|k| m.info(k).unwrap().data_offsets.0).collect();
        assert_eq!(starts, vec![0, 16, 28]);
        assert!(TensorFile::open(&path).unwrap().tensor("a").unwrap().equal(&a));
        let names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["m.safetensors".to_string()]);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_ne!(mode, 0o600, "written with tempfile's private mode");
    }

    #[test]
    fn loading_checks_keys_and_shapes() {
        let dir = ddpm_testkit::temp_dir("tensorfile-keys");
        let src = VarStore::new(Device::Cpu);
        let _ = src.root().sub("x").var("weight", &[2, 3], nn::Init::Const(0.5));
        let path = dir.join("m.safetensors");
        write_tensors(&path, &named_variables(&src, "model/"), &HashMap::new()).unwrap();
        let f = TensorFile::open(&path).unwrap();

        let dst = VarStore::new(Device::Cpu);
        let w = dst.root().sub("x").var("weight", &[2, 3], nn::Init::Const(0.0));
        load_varstore(&dst, &f, "model/").unwrap();
        assert_eq!(w.double_value(&[1, 2]), 0.5);

        let other = VarStore::new(Device::Cpu);
        let _ = other.root().sub("y").var("weight", &[2, 3], nn::Init::Const(0.0));
        let e = load_varstore(&other, &f, "model/").unwrap_err().to_string();
        assert!(e.contains("missing") && e.contains("y.weight"), "{e}");

        let wrong = VarStore::new(Device::Cpu);
        let _ = wrong.root().sub("x").var("weight", &[3, 2], nn::Init::Const(0.0));
        let e = load_varstore(&wrong, &f, "model/").unwrap_err().to_string();
        assert!(e.contains("[3, 2]") && e.contains("x.weight"), "{e}");
    }
}
