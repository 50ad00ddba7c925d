//! The checkpoint format (`format` = [`FORMAT`]): one safetensors file holding
//!
//! | keys | what |
//! |---|---|
//! | `model/<param>` | the network's variables |
//! | `ema/<param>` | the EMA shadows (the weights samples and metrics use) |
//! | `adam.m/<param>`, `adam.v/<param>` | Adam's first and second moments, per trainable parameter |
//!
//! and string metadata: `format`, `step` (updates taken), `loader` (the data stream's state,
//! JSON), `timestep_sampler` (its state, JSON; empty when it has none), `config` (the run
//! config, TOML), `source` for imported weights, and `checksum`. Everything needed to resume
//! exactly. Files are written atomically; [`Checkpoint::open`] validates the file, its checksum
//! and its metadata before anything is read from it.
//!
//! # Checksum (format v2)
//! `checksum` is `crc32c:<8 hex digits>`, the CRC32C (Castagnoli) of everything else the file
//! holds, in an order that does not depend on safetensors' layout: each metadata entry but
//! `checksum` itself, by key, then each tensor by name with its dtype, its shape and its bytes,
//! every string and byte run preceded by its length as a little-endian u64. A flipped byte
//! anywhere in the data, in a tensor's name, shape or offsets, or in a metadata value is
//! detected (the safetensors header itself is checked against the file's length on opening).
//! Version 1 files (`ddpm-rs-checkpoint-v1`, written before the checksum existed) are still read,
//! unverified; a version 2 file without a checksum is refused as damaged.

use crate::error::{Result, RunError};
use ddpm_core::TimestepSampler;
use ddpm_data::LoaderState;
use ddpm_nets::tensorfile::{
    TensorBytes, TensorFile, load_varstore, named_variables, tensor_bytes, write_tensor_bytes,
};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tch::Tensor;
use tch::nn::VarStore;

/// The `format` metadata of the checkpoints we write (with a checksum).
pub const FORMAT: &str = "ddpm-rs-checkpoint-v2";

/// The format before checksums, still read.
pub const FORMAT_V1: &str = "ddpm-rs-checkpoint-v1";

/// Key prefixes of the tensors.
pub mod keys {
    pub const MODEL: &str = "model/";
    pub const EMA: &str = "ema/";
    pub const ADAM_M: &str = "adam.m/";
    pub const ADAM_V: &str = "adam.v/";
}

/// Metadata keys.
mod meta {
    pub const FORMAT: &str = "format";
    pub const STEP: &str = "step";
    pub const LOADER: &str = "loader";
    pub const TIMESTEP_SAMPLER: &str = "timestep_sampler";
    pub const CONFIG: &str = "config";
    pub const SOURCE: &str = "source";
    pub const CHECKSUM: &str = "checksum";
}

/// CRC32C of a checkpoint's metadata (but `checksum`) and tensors: see the module doc.
fn checksum<'a>(
    metadata: &HashMap<String, String>,
    tensors: impl Iterator<Item = (&'a str, String, &'a [usize], &'a [u8])>,
) -> String {
    fn put(crc: u32, bytes: &[u8]) -> u32 {
        let crc = crc32c::crc32c_append(crc, &(bytes.len() as u64).to_le_bytes());
        crc32c::crc32c_append(crc, bytes)
    }
    let mut keys: Vec<&String> = metadata.keys().filter(|k| *k != meta::CHECKSUM).collect();
    keys.sort();
    let mut crc = 0;
    for k in keys {
        crc = put(put(crc, k.as_bytes()), metadata[k].as_bytes());
    }
    let mut tensors: Vec<_> = tensors.collect();
    tensors.sort_by(|a, b| a.0.cmp(b.0));
    for (name, dtype, shape, data) in tensors {
        crc = put(put(crc, name.as_bytes()), dtype.as_bytes());
        let dims: Vec<u8> = shape.iter().flat_map(|&d| (d as u64).to_le_bytes()).collect();
        crc = put(put(crc, &dims), data);
    }
    format!("crc32c:{crc:08x}")
}

fn checksum_of_bytes(metadata: &HashMap<String, String>, tensors: &[TensorBytes]) -> String {
    checksum(
        metadata,
        tensors
            .iter()
            .map(|t| (t.name.as_str(), format!("{:?}", t.dtype), &t.shape[..], &t.data[..])),
    )
}

fn checksum_of_file(file: &TensorFile) -> String {
    checksum(
        &file.metadata,
        file.tensors.iter().map(|(name, info)| {
            let data = file.raw(name).expect("a listed tensor");
            (name.as_str(), format!("{:?}", info.dtype), &info.shape[..], data)
        }),
    )
}

/// What a checkpoint records besides tensors.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointMeta {
    /// Optimiser updates taken.
    pub step: u64,
    /// Where the data stream stands after the last batch consumed.
    pub loader: LoaderState,
    /// The timestep sampler's state (importance sampling keeps a loss history).
    pub timestep_sampler: Option<TimestepSampler>,
    /// The resolved run config, TOML.
    pub config: Option<String>,
    /// Where imported weights came from.
    pub source: Option<String>,
}

impl CheckpointMeta {
    /// A step-0 checkpoint of weights that were not trained here.
    pub fn imported(source: String) -> Self {
        Self {
            step: 0,
            loader: LoaderState::default(),
            timestep_sampler: None,
            config: None,
            source: Some(source),
        }
    }
}

/// Adam's moments by parameter name, in one order.
#[derive(Debug, Clone, Copy)]
pub struct AdamMoments<'a> {
    pub names: &'a [String],
    pub exp_avg: &'a [Tensor],
    pub exp_avg_sq: &'a [Tensor],
}

/// Writing and opening checkpoints.
#[derive(Debug)]
pub struct Checkpoint;

impl Checkpoint {
    /// Writes `path` atomically: the model's and the EMA's variables, Adam's moments (zeros for
    /// every trainable parameter when `moments` is None, so that imported weights can be
    /// fine-tuned), and `meta`.
    pub fn write(
        path: &Path,
        model: &VarStore,
        ema: &VarStore,
        moments: Option<AdamMoments>,
        meta: &CheckpointMeta,
    ) -> Result<()> {
        let mut tensors = named_variables(model, keys::MODEL);
        tensors.extend(named_variables(ema, keys::EMA));
        match moments {
            Some(m) => {
                for (i, n) in m.names.iter().enumerate() {
                    tensors.push((format!("{}{n}", keys::ADAM_M), m.exp_avg[i].shallow_clone()));
                    tensors.push((format!("{}{n}", keys::ADAM_V), m.exp_avg_sq[i].shallow_clone()));
                }
            }
            None => {
                let mut trainable: Vec<(String, Tensor)> =
                    model.variables().into_iter().filter(|(_, t)| t.requires_grad()).collect();
                trainable.sort_by(|a, b| a.0.cmp(&b.0));
                for (n, t) in trainable {
                    let z = t.zeros_like();
                    tensors.push((format!("{}{n}", keys::ADAM_M), z.shallow_clone()));
                    tensors.push((format!("{}{n}", keys::ADAM_V), z));
                }
            }
        }
        let mut m = HashMap::from([
            (meta::FORMAT.to_string(), FORMAT.to_string()),
            (meta::STEP.to_string(), meta.step.to_string()),
            (meta::LOADER.to_string(), serde_json::to_string(&meta.loader).expect("serialises")),
            (
                meta::TIMESTEP_SAMPLER.to_string(),
                meta.timestep_sampler
                    .as_ref()
                    .map(|s| serde_json::to_string(s).expect("serialises"))
                    .unwrap_or_default(),
            ),
        ]);
        if let Some(c) = &meta.config {
            m.insert(meta::CONFIG.to_string(), c.clone());
        }
        if let Some(s) = &meta.source {
            m.insert(meta::SOURCE.to_string(), s.clone());
        }
        let bytes = tensor_bytes(&tensors)?;
        m.insert(meta::CHECKSUM.to_string(), checksum_of_bytes(&m, &bytes));
        Ok(write_tensor_bytes(path, &bytes, &m)?)
    }

    /// Opens and validates a checkpoint: a whole safetensors file of our format whose checksum
    /// matches its contents (format v2; v1 files have none), with readable metadata. Errors
    /// name the file.
    pub fn open(path: &Path) -> Result<CheckpointFile> {
        let file = TensorFile::open(path)?;
        let bad = |reason: String| RunError::Invalid { path: path.into(), reason };
        let get = |k: &str| file.metadata.get(k).map(String::as_str);
        match (get(meta::FORMAT), get(meta::CHECKSUM)) {
            (Some(FORMAT), None) => {
                return Err(bad(format!("damaged: a {FORMAT} checkpoint without its checksum")));
            }
            // A file that carries a checksum is verified whatever its format says, so a v2 file
            // whose `format` was changed to v1 cannot skip the check.
            (Some(FORMAT | FORMAT_V1), Some(stored)) => {
                let computed = checksum_of_file(&file);
                if stored != computed {
                    return Err(bad(format!(
                        "damaged: checksum {stored} recorded, {computed} computed from the contents"
                    )));
                }
            }
            (Some(FORMAT_V1), None) => {}
            _ => return Err(bad(format!("not a {FORMAT} checkpoint"))),
        }
        let step = get(meta::STEP)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("bad step metadata".into()))?;
        let loader = serde_json::from_str(get(meta::LOADER).unwrap_or_default())
            .map_err(|_| bad("bad loader metadata".into()))?;
        let timestep_sampler = match get(meta::TIMESTEP_SAMPLER).unwrap_or_default() {
            "" => None,
            s => Some(
                serde_json::from_str(s).map_err(|_| bad("bad timestep_sampler metadata".into()))?,
            ),
        };
        let meta = CheckpointMeta {
            step,
            loader,
            timestep_sampler,
            config: get(meta::CONFIG).map(str::to_owned),
            source: get(meta::SOURCE).map(str::to_owned),
        };
        Ok(CheckpointFile { file, meta })
    }
}

/// An open, validated checkpoint.
#[derive(Debug)]
pub struct CheckpointFile {
    file: TensorFile,
    pub meta: CheckpointMeta,
}

impl CheckpointFile {
    pub fn path(&self) -> &PathBuf {
        &self.file.path
    }

    pub fn step(&self) -> u64 {
        self.meta.step
    }

    /// Loads the model's (or, with `ema`, the EMA's) weights into `vs`; every variable must be
    /// present with its shape.
    pub fn load_weights(&self, vs: &VarStore, ema: bool) -> Result<()> {
        Ok(load_varstore(vs, &self.file, if ema { keys::EMA } else { keys::MODEL })?)
    }

    /// Copies Adam's stored moments into `exp_avg`/`exp_avg_sq` (in `names` order).
    pub fn load_moments(
        &self,
        names: &[String],
        exp_avg: &[Tensor],
        exp_avg_sq: &[Tensor],
    ) -> Result<()> {
        tch::no_grad(|| -> Result<()> {
            for (i, n) in names.iter().enumerate() {
                let m = self.file.tensor(&format!("{}{n}", keys::ADAM_M))?;
                let v = self.file.tensor(&format!("{}{n}", keys::ADAM_V))?;
                exp_avg[i].shallow_clone().f_copy_(&m).map_err(ddpm_nets::NetError::from)?;
                exp_avg_sq[i].shallow_clone().f_copy_(&v).map_err(ddpm_nets::NetError::from)?;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind, nn};

    fn store(v: f64) -> VarStore {
        let vs = VarStore::new(Device::Cpu);
        let _ = vs.root().var("w", &[2, 2], nn::Init::Const(v));
        let _ = vs.root().zeros_no_train("buf", &[3]);
        vs
    }

    #[test]
    fn round_trip_of_weights_moments_and_metadata() {
        let dir = ddpm_testkit::temp_dir("ckpt-format");
        let path = dir.join("c.safetensors");
        let (model, ema) = (store(1.0), store(2.0));
        let names = vec!["w".to_string()];
        let m = vec![Tensor::full([2, 2], 0.5, (Kind::Float, Device::Cpu))];
        let v = vec![Tensor::full([2, 2], 0.25, (Kind::Float, Device::Cpu))];
        let meta = CheckpointMeta {
            step: 7,
            loader: LoaderState { epoch: 2, position: 3 },
            timestep_sampler: None,
            config: Some("name = \"x\"".into()),
            source: None,
        };
        let moments = AdamMoments { names: &names, exp_avg: &m, exp_avg_sq: &v };
        Checkpoint::write(&path, &model, &ema, Some(moments), &meta).unwrap();
        let f = Checkpoint::open(&path).unwrap();
        assert_eq!(f.meta, meta);
        let into = store(0.0);
        f.load_weights(&into, true).unwrap();
        assert_eq!(into.variables()["w"].double_value(&[1, 1]), 2.0);
        let (m2, v2) = (vec![m[0].zeros_like()], vec![v[0].zeros_like()]);
        f.load_moments(&names, &m2, &v2).unwrap();
        assert!(m2[0].equal(&m[0]) && v2[0].equal(&v[0]));
    }

    #[test]
    fn imported_weights_get_zero_moments_and_foreign_files_are_refused() {
        let dir = ddpm_testkit::temp_dir("ckpt-import");
        let path = dir.join("c.safetensors");
        let model = store(1.0);
        Checkpoint::write(&path, &model, &model, None, &CheckpointMeta::imported("x".into()))
            .unwrap();
        let f = Checkpoint::open(&path).unwrap();
        assert_eq!((f.step(), f.meta.source.as_deref()), (0, Some("x")));
        let names = vec!["w".to_string()];
        let (m, v) = (
            vec![Tensor::ones([2, 2], (Kind::Float, Device::Cpu))],
            vec![Tensor::ones([2, 2], (Kind::Float, Device::Cpu))],
        );
        f.load_moments(&names, &m, &v).unwrap();
        assert_eq!(m[0].abs().sum(Kind::Float).double_value(&[]), 0.0);
        // Only trainable variables have moments.
        let e = f.load_moments(&["buf".to_string()], &m, &v).unwrap_err().to_string();
        assert!(e.contains("adam.m/buf"), "{e}");
        let foreign = dir.join("f.safetensors");
        ddpm_nets::tensorfile::write_tensors(
            &foreign,
            &named_variables(&model, ""),
            &HashMap::new(),
        )
        .unwrap();
        let e = Checkpoint::open(&foreign).unwrap_err().to_string();
        assert!(e.contains("f.safetensors") && e.contains("not a ddpm-rs-checkpoint-v2"), "{e}");
    }

    /// A checkpoint with one data byte flipped used to load as if whole: the format had no
    /// checksum, and safetensors' header cannot tell. Every flipped byte of a tensor's data is
    /// now refused by `open`, naming the file; so is a changed metadata value.
    #[test]
    fn a_flipped_data_or_metadata_byte_is_refused() {
        let dir = ddpm_testkit::temp_dir("ckpt-checksum");
        let path = dir.join("c.safetensors");
        let meta = CheckpointMeta {
            step: 12,
            loader: LoaderState { epoch: 1, position: 4 },
            timestep_sampler: None,
            config: Some("name = \"x\"".into()),
            source: None,
        };
        Checkpoint::write(&path, &store(1.0), &store(2.0), None, &meta).unwrap();
        let good = std::fs::read(&path).unwrap();
        let f = Checkpoint::open(&path).unwrap();
        assert!(f.file.metadata[meta::CHECKSUM].starts_with("crc32c:"));
        let data_start = 8 + u64::from_le_bytes(good[..8].try_into().unwrap()) as usize;
        assert!(data_start < good.len());
        let damaged = dir.join("d.safetensors");
        for i in data_start..good.len() {
            let mut b = good.clone();
            b[i] ^= 0x10;
            std::fs::write(&damaged, &b).unwrap();
            let e = Checkpoint::open(&damaged).unwrap_err().to_string();
            assert!(e.contains("d.safetensors") && e.contains("damaged: checksum"), "{i}: {e}");
        }
        // The step in the metadata: "12" -> "13".
        let header = String::from_utf8_lossy(&good[8..data_start]).into_owned();
        let at = 8 + header.find("\"step\":\"12\"").expect("step in the header") + 9;
        let mut b = good.clone();
        b[at] = b'3';
        std::fs::write(&damaged, &b).unwrap();
        let e = Checkpoint::open(&damaged).unwrap_err().to_string();
        assert!(e.contains("damaged: checksum"), "{e}");
    }

    /// Regression: a v2 file whose `format` was edited to say v1 was read unverified, so a
    /// damaged tensor behind that edit loaded as if whole. A file with a `checksum` key is
    /// always verified.
    #[test]
    fn a_v2_file_relabelled_v1_is_still_verified() {
        let dir = ddpm_testkit::temp_dir("ckpt-relabel");
        let path = dir.join("c.safetensors");
        let meta = CheckpointMeta {
            step: 3,
            loader: LoaderState { epoch: 0, position: 0 },
            timestep_sampler: None,
            config: None,
            source: None,
        };
        Checkpoint::write(&path, &store(1.0), &store(2.0), None, &meta).unwrap();
        let mut b = std::fs::read(&path).unwrap();
        let data_start = 8 + u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
        let header = String::from_utf8_lossy(&b[8..data_start]).into_owned();
        let at = 8 + header.find(FORMAT).expect("format in the header");
        b[at..at + FORMAT_V1.len()].copy_from_slice(FORMAT_V1.as_bytes());
        let last = b.len() - 1;
        b[last] ^= 0x10;
        std::fs::write(&path, &b).unwrap();
        let e = Checkpoint::open(&path).unwrap_err().to_string();
        assert!(e.contains("c.safetensors") && e.contains("damaged: checksum"), "{e}");
    }

    /// Files written before checksums (format v1) are still read.
    #[test]
    fn version_1_files_without_a_checksum_are_still_read() {
        let dir = ddpm_testkit::temp_dir("ckpt-v1");
        let path = dir.join("old.safetensors");
        let model = store(3.0);
        let mut tensors = named_variables(&model, keys::MODEL);
        tensors.extend(named_variables(&model, keys::EMA));
        let m = HashMap::from([
            (meta::FORMAT.to_string(), FORMAT_V1.to_string()),
            (meta::STEP.to_string(), "5".to_string()),
            (meta::LOADER.to_string(), "{\"epoch\":0,\"position\":0}".to_string()),
        ]);
        ddpm_nets::tensorfile::write_tensors(&path, &tensors, &m).unwrap();
        let f = Checkpoint::open(&path).unwrap();
        assert_eq!(f.step(), 5);
        let into = store(0.0);
        f.load_weights(&into, true).unwrap();
        assert_eq!(into.variables()["w"].double_value(&[0, 0]), 3.0);
        // A v2 file stripped of its checksum is not taken for a v1 file.
        let mut m2 = m.clone();
        m2.insert(meta::FORMAT.to_string(), FORMAT.to_string());
        ddpm_nets::tensorfile::write_tensors(&path, &tensors, &m2).unwrap();
        let e = Checkpoint::open(&path).unwrap_err().to_string();
        assert!(e.contains("without its checksum"), "{e}");
    }
}
