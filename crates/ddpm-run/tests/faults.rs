//! Fault injection into checkpoints: one byte changed, and the file cut, at 20 offsets each
//! (the safetensors header's length and JSON, the metadata, the tensor data, the last byte).
//! Opening and loading (weights, EMA, Adam moments, metadata) is always either an error of one
//! line naming the file, or, where the damage changed nothing that is read, exactly the
//! original contents: never a panic, and never damaged values taken for good ones (the
//! checksum of format v2 covers the metadata and every tensor's name, shape and bytes).

use ddpm_data::LoaderState;
use ddpm_run::{AdamMoments, Checkpoint, CheckpointMeta};
use ddpm_testkit::{assert_one_line_naming, fault_offsets, flipped, no_panic, temp_dir};
use std::path::Path;
use tch::nn::{self, VarStore};
use tch::{Device, Kind, Tensor};

/// A small network's variables: conv, norm and a non-trainable buffer.
fn store(seed: i64) -> VarStore {
    tch::manual_seed(seed);
    let vs = VarStore::new(Device::Cpu);
    let root = vs.root();
    let _ =
        root.sub("conv").var("weight", &[8, 1, 3, 3], nn::Init::Randn { mean: 0.0, stdev: 1.0 });
    let _ = root.sub("conv").var("bias", &[8], nn::Init::Randn { mean: 0.0, stdev: 1.0 });
    let _ = root.sub("norm").var("weight", &[8], nn::Init::Randn { mean: 1.0, stdev: 0.1 });
    let _ = root.zeros_no_train("steps", &[3]);
    vs
}

/// Everything a checkpoint gives back: metadata, model and EMA weights, Adam's moments.
#[derive(Debug, PartialEq)]
struct Contents {
    meta: CheckpointMeta,
    tensors: Vec<(String, Vec<f32>)>,
}

fn names() -> Vec<String> {
    vec!["conv.bias".into(), "conv.weight".into(), "norm.weight".into()]
}

fn read(path: &Path) -> Result<Contents, String> {
    let f = Checkpoint::open(path).map_err(|e| e.to_string())?;
    let mut tensors = Vec::new();
    for ema in [false, true] {
        let into = store(99);
        f.load_weights(&into, ema).map_err(|e| e.to_string())?;
        let mut vars: Vec<_> = into.variables().into_iter().collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        for (k, t) in vars {
            let v = Vec::<f32>::try_from(t.to_kind(Kind::Float).flatten(0, -1)).unwrap();
            tensors.push((format!("{ema}/{k}"), v));
        }
    }
    let shapes: Vec<Tensor> = [vec![8i64], vec![8, 1, 3, 3], vec![8]]
        .iter()
        .map(|s| Tensor::zeros(s.as_slice(), (Kind::Float, Device::Cpu)))
        .collect();
    let (m, v): (Vec<Tensor>, Vec<Tensor>) =
        shapes.iter().map(|t| (t.zeros_like(), t.zeros_like())).unzip();
    f.load_moments(&names(), &m, &v).map_err(|e| e.to_string())?;
    for (i, n) in names().iter().enumerate() {
        for (which, t) in [("m", &m[i]), ("v", &v[i])] {
            tensors.push((
                format!("adam.{which}/{n}"),
                Vec::<f32>::try_from(t.flatten(0, -1)).unwrap(),
            ));
        }
    }
    Ok(Contents { meta: f.meta.clone(), tensors })
}

#[test]
fn damaged_checkpoints_are_refused_by_name_and_never_read_as_good() {
    let dir = temp_dir("faults-ckpt");
    let path = dir.join("ckpt-000000012.safetensors");
    let (model, ema) = (store(1), store(2));
    let moments: Vec<Tensor> = [vec![8i64], vec![8, 1, 3, 3], vec![8]]
        .iter()
        .map(|s| Tensor::rand(s.as_slice(), (Kind::Float, Device::Cpu)))
        .collect();
    let sq: Vec<Tensor> = moments.iter().map(|t| t * t).collect();
    let names = names();
    let meta = CheckpointMeta {
        step: 12,
        loader: LoaderState { epoch: 3, position: 7 },
        timestep_sampler: None,
        config: Some("name = \"x\"\n[optim]\nlr = 0.0002\n".into()),
        source: None,
    };
    let adam = AdamMoments { names: &names, exp_avg: &moments, exp_avg_sq: &sq };
    Checkpoint::write(&path, &model, &ema, Some(adam), &meta).unwrap();
    let good = std::fs::read(&path).unwrap();
    let original = read(&path).unwrap();
    assert_eq!(original.meta, meta);
    let header = 8 + u64::from_le_bytes(good[..8].try_into().unwrap()) as usize;

    let damaged = dir.join("damaged.safetensors");
    let (mut refused, mut harmless) = (0, 0);
    for at in fault_offsets(good.len(), header, 12) {
        for (what, bytes) in [
            (format!("byte {at} changed"), flipped(&good, at)),
            (format!("cut at {at}"), good[..at].to_vec()),
        ] {
            std::fs::write(&damaged, &bytes).unwrap();
            match no_panic(&what, || read(&damaged)) {
                Err(e) => {
                    assert_one_line_naming(&what, &e, "damaged.safetensors");
                    refused += 1;
                }
                // Only a change that nothing reads may pass: header padding, say.
                Ok(c) => {
                    assert_eq!(c, original, "{what}: damaged contents read as good");
                    harmless += 1;
                }
            }
        }
    }
    // Every cut and every change in the data is caught; at most a few header bytes are inert.
    assert!(refused >= 36, "{refused} refused, {harmless} harmless");
}
