//! A sampling job: n images from a checkpoint into `--out DIR`, streamed and resumable.
//!
//! Each batch is written as `parts/part-<first index>.npy` (atomically) and as individual PNGs;
//! a restarted job with the same settings skips the batches already written. When every part
//! exists, `samples.npz` (array `samples`, float32, n x C x H x W in [-1, 1]) is assembled by
//! streaming the parts, `grid.png` (or `samples.svg` for 2-D data) is drawn, and the parts go.
//! `manifest.json` records the job so that a different job never mixes into the same folder.
//!
//! Across ranks ([`run_sharded`], under torchrun): the batches still missing are split into
//! contiguous shares, one per rank; each rank writes its parts (and PNGs) into the same folder,
//! and rank 0 assembles `samples.npz` after a barrier. A batch holds the same images whichever
//! rank samples it, and image i's noise depends on (seed, i) alone, so the union equals the
//! single-process output bit for bit on the CPU. `--out` must be on a filesystem every rank
//! sees (one node, or a shared filesystem).

use crate::batch::BatchSampler;
use crate::error::{Result, SampleError, io};
use crate::graph::GraphMode;
use crate::guidance::GuidedModel;
pub use crate::request::Labels;
use crate::request::SampleRequest;
use crate::samplers::SamplerOptions;
use ddpm_core::tensor::TensorDiffusion;
use ddpm_dist::Dist;
use ddpm_io::npy;
use ddpm_run::LoadedModel;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// What defines a job's output: two runs with the same manifest produce the same files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub checkpoint: String,
    pub checkpoint_step: u64,
    pub ema: bool,
    pub sampler: SamplerOptions,
    pub seed: u64,
    pub start: u64,
    pub n: usize,
    pub batch_size: usize,
    pub labels: Labels,
    pub noise_file: Option<String>,
    pub sample_shape: Vec<i64>,
    /// bf16 autocast of the network (CUDA): it changes the images, so a resumed job never
    /// mixes precisions. Absent in manifests written before it was recorded: f32.
    #[serde(default)]
    pub bf16: bool,
}

impl Manifest {
    /// What defines `req`'s output, for `model` in batches of `batch_size`.
    pub fn new(req: &SampleRequest, model: &LoadedModel, batch_size: usize) -> Self {
        Manifest {
            checkpoint: model.checkpoint.display().to_string(),
            checkpoint_step: model.step,
            ema: model.ema,
            sampler: req.sampler.clone(),
            seed: req.seed,
            start: req.start,
            n: req.n,
            batch_size,
            labels: req.labels.clone(),
            noise_file: req.noise_file.as_ref().map(|p| p.display().to_string()),
            sample_shape: model.net.sample_shape(),
            bf16: req.bf16,
        }
    }

    /// The manifest of the job already in `out`, if any (a damaged one is an error naming it).
    pub fn read(out: &Path) -> Result<Option<Self>> {
        let path = out.join("manifest.json");
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).map(Some).map_err(|_| {
                SampleError::Arg(format!(
                    "{}: unreadable; remove it or choose another --out",
                    path.display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&path)(e)),
        }
    }
}

/// Where and how to write.
#[derive(Debug, Clone)]
pub struct JobOptions {
    pub out: PathBuf,
    pub pngs: bool,
    /// Replay the network call from captured graphs (`--cuda-graph`: [`GraphMode::Cuda`]).
    pub graph: Option<GraphMode>,
}

fn part_path(out: &Path, first: u64) -> PathBuf {
    out.join("parts").join(format!("part-{first:09}.npy"))
}

/// The noise x_T from a `.npy`, an `.npz` (its array `noise`, or its only array) or a
/// safetensors file (tensor `noise`, or its only tensor), shaped n x sample_shape.
pub fn load_noise(path: &Path, n: usize, sample_shape: &[i64]) -> Result<Tensor> {
    let mut want = vec![n as i64];
    want.extend_from_slice(sample_shape);
    let t = if path.extension().is_some_and(|e| e == "safetensors") {
        let f = ddpm_nets::tensorfile::TensorFile::open(path)?;
        let name = if f.tensors.contains_key("noise") {
            "noise".to_string()
        } else if f.tensors.len() == 1 {
            f.tensors.keys().next().unwrap().clone()
        } else {
            return Err(SampleError::Arg(format!("{}: no tensor named \"noise\"", path.display())));
        };
        f.tensor(&name)?.to_kind(Kind::Float)
    } else {
        let names = if path.extension().is_some_and(|e| e == "npz") {
            npy::npz_names(path)?
        } else {
            vec![]
        };
        let key = names.iter().any(|n| n == "noise").then_some("noise");
        let a: npy::Array<f32> = npy::read(path, key)?;
        let shape: Vec<i64> = a.shape.iter().map(|&d| d as i64).collect();
        Tensor::from_slice(&a.values).view(shape.as_slice())
    };
    if t.size() != want {
        return Err(SampleError::Arg(format!(
            "--noise {}: shape {:?}, expected {want:?} (n x sample shape)",
            path.display(),
            t.size()
        )));
    }
    Ok(t)
}

/// Chooses a batch size for `n` images: on the CPU 64, on CUDA the largest power of two
/// up to 1024 (scaled for larger images) for which the network call the sampler really makes
/// fits twice over: with `sampler`'s guidance the call runs both branches (`[x, x]`, twice the
/// batch), with the labels of a conditional model, under bf16 autocast when asked; the factor
/// of two is headroom for the sampler's own state (x, the x0 predictions a multistep solver
/// keeps, the noise) and the allocator's fragmentation.
pub fn auto_batch(n: usize, model: &LoadedModel, sampler: &SamplerOptions, bf16: bool) -> usize {
    let device = model.vs.device();
    if !device.is_cuda() {
        return 64.min(n.max(1));
    }
    let shape = model.net.sample_shape();
    let pixels: i64 = shape.iter().skip(1).product::<i64>().max(1);
    let max = ((1024 * 1024) / pixels).clamp(1, 1024) as usize;
    let guided = GuidedModel::new(&model.net, sampler.guidance_scale, bf16);
    let fits = |b: usize| {
        let rows = PROBE_HEADROOM * b;
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _g = tch::no_grad_guard();
            let mut full = vec![rows as i64];
            full.extend(&shape);
            let x = Tensor::zeros(full.as_slice(), (Kind::Float, device));
            let t = Tensor::zeros([rows as i64], (Kind::Float, device));
            let y = model
                .net
                .num_classes()
                .map(|_| Tensor::zeros([rows as i64], (Kind::Int64, device)));
            let _ = guided.output(&x, &t, y.as_ref());
        }))
        .is_ok()
    };
    largest_batch(max, fits).min(n.max(1))
}

/// How many times the batch a probe runs through the network call (see [`auto_batch`]).
const PROBE_HEADROOM: usize = 2;

/// The largest of max, max/2, ..., 1 for which `fits` holds (1 if none does).
fn largest_batch(max: usize, mut fits: impl FnMut(usize) -> bool) -> usize {
    let mut b = max.max(1);
    while b > 1 && !fits(b) {
        b /= 2;
    }
    b
}

/// Samples `req` from `model` into `job.out` as one rank of `dist` (every rank calls it with
/// the same arguments): the one way a checkpoint is sampled into a folder, by `ddpm-sample` and
/// `ddpm-eval fid --checkpoint` (training's previews and evaluations sample in memory through
/// the same [`BatchSampler`]). The batch size is `batch_size`,
/// or for a job already begun in `job.out` the one it was begun with (its parts are cut by
/// it), or else rank 0's [`auto_batch`], broadcast so that every rank cuts the same batches.
/// Returns `samples.npz` and the manifest.
pub fn sample_checkpoint(
    model: &LoadedModel,
    req: &SampleRequest,
    batch_size: Option<usize>,
    job: &JobOptions,
    noise_x_t: Option<&Tensor>,
    dist: &Dist,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(PathBuf, Manifest)> {
    let batch = match batch_size {
        Some(b) => b.max(1).min(req.n.max(1)),
        None if dist.is_main() => match Manifest::read(&job.out)? {
            Some(old) if old == Manifest::new(req, model, old.batch_size) => old.batch_size,
            _ => auto_batch(req.n, model, &req.sampler, req.bf16),
        },
        None => 0,
    };
    let batch = dist.broadcast_i64s(&[batch as i64])?[0] as usize;
    let manifest = Manifest::new(req, model, batch);
    let npz = run_sharded(model, &manifest, job, noise_x_t, dist, progress)?;
    Ok((npz, manifest))
}

/// Runs (or resumes) the job in this process; `progress(images_done)` after each batch.
/// Returns the path of `samples.npz`.
pub fn run(
    model: &LoadedModel,
    manifest: &Manifest,
    job: &JobOptions,
    noise_x_t: Option<&Tensor>,
    progress: &mut dyn FnMut(usize),
) -> Result<PathBuf> {
    let single = Dist::single(model.vs.device());
    run_sharded(model, manifest, job, noise_x_t, &single, &mut |done, _| progress(done))
}

/// Runs (or resumes) the job as one rank of `dist` (every rank calls it with the same
/// arguments): this rank samples its share of the missing batches, rank 0 assembles
/// `samples.npz` once every rank is done. `progress(done, of)` counts this rank's images (rank
/// 0's with the images of parts found on disk from an earlier run).
/// Returns the path of `samples.npz`, which exists on return on every rank.
pub fn run_sharded(
    model: &LoadedModel,
    manifest: &Manifest,
    job: &JobOptions,
    noise_x_t: Option<&Tensor>,
    dist: &Dist,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<PathBuf> {
    let device = model.vs.device();
    let out = &job.out;
    let manifest_path = out.join("manifest.json");
    let npz = out.join("samples.npz");
    let begun = match Manifest::read(out)? {
        Some(old) if &old != manifest => {
            return Err(SampleError::Arg(format!(
                "{} holds samples of a different job; choose another --out (or delete it)",
                out.display()
            )));
        }
        // A finished job: samples.npz is written last (atomically, after every part), so
        // its presence beside the same manifest means every image is in it.
        Some(_) if npz_holds(&npz, manifest)? => {
            progress(manifest.n, manifest.n);
            return Ok(npz);
        }
        Some(_) => true,
        None => false,
    };
    std::fs::create_dir_all(out.join("parts")).map_err(io(out))?;
    if !begun && dist.is_main() {
        let text = serde_json::to_string_pretty(manifest).expect("serialises");
        ddpm_io::write_atomic(&manifest_path, text.as_bytes()).map_err(io(&manifest_path))?;
    }
    let shape = manifest.sample_shape.clone();
    let b = manifest.batch_size.max(1);
    // Every rank lists the missing batches before any rank writes one (the barrier), so all
    // see the same list and share it out alike.
    let firsts: Vec<usize> = (0..manifest.n).step_by(b).collect();
    let parts: Vec<PathBuf> =
        firsts.iter().map(|&f| part_path(out, manifest.start + f as u64)).collect();
    let missing: Vec<usize> = (0..firsts.len()).filter(|&k| !parts[k].exists()).collect();
    dist.barrier()?;
    let mine: Vec<usize> = missing[dist.shard(missing.len())].to_vec();
    let count_of = |k: usize| b.min(manifest.n - firsts[k]);
    // Rank 0 counts the parts found on disk as done (reported once, not sampled).
    let found = match dist.is_main() {
        true => manifest.n - missing.iter().map(|&k| count_of(k)).sum::<usize>(),
        false => 0,
    };
    let of: usize = found + mine.iter().map(|&k| count_of(k)).sum::<usize>();
    if found > 0 {
        progress(found, of);
    }
    if !mine.is_empty() {
        let diffusion = TensorDiffusion::from_config(&model.diffusion, device)?;
        let mut sampler = BatchSampler::new(
            &model.net,
            &diffusion,
            manifest.sampler.clone(),
            manifest.seed,
            manifest.labels.clone(),
            manifest.bf16,
            job.graph,
        )?;
        let mut done = found;
        for &k in &mine {
            let (first, count) = (firsts[k], count_of(k));
            let global_first = manifest.start + first as u64;
            let indices: Vec<u64> = (0..count as u64).map(|i| global_first + i).collect();
            let x_t = noise_x_t.map(|all| all.narrow(0, first as i64, count as i64));
            let x0 = sampler.sample(&indices, x_t)?;
            let x0 = x0.to_device(Device::Cpu).to_kind(Kind::Float).contiguous();
            let values = Vec::<f32>::try_from(x0.flatten(0, -1)).unwrap();
            if job.pngs && shape.len() == 3 {
                let (c, h, w) = (shape[0] as usize, shape[1] as usize, shape[2] as usize);
                let per = c * h * w;
                for (i, img) in values.chunks(per).enumerate() {
                    let p = out.join("images").join(format!("{:06}.png", global_first + i as u64));
                    ddpm_viz::save_image(&p, img, c, h, w).map_err(io(&p))?;
                }
            }
            let mut part_shape = vec![count];
            part_shape.extend(shape.iter().map(|&d| d as usize));
            npy::write_npy(&parts[k], &part_shape, &values)?;
            done += count;
            progress(done, of);
        }
    }
    dist.barrier()?;
    if dist.is_main() {
        if let Some(gone) = parts.iter().find(|p| !p.exists()) {
            return Err(SampleError::Arg(format!(
                "{} is missing after every rank finished: --out must be on a filesystem every \
                 rank sees",
                gone.display()
            )));
        }
        let mut full = vec![manifest.n];
        full.extend(shape.iter().map(|&d| d as usize));
        assemble_npz(&npz, &full, &parts)?;
        draw_overview(out, &parts, &shape)?;
        let _ = std::fs::remove_dir_all(out.join("parts"));
    }
    // samples.npz exists for every rank from here on.
    dist.barrier()?;
    Ok(npz)
}

/// Whether `npz` is a finished job's `samples.npz`: n images of the manifest's shape (a file of
/// another shape is refused by name rather than taken or overwritten).
fn npz_holds(npz: &Path, manifest: &Manifest) -> Result<bool> {
    if !npz.exists() {
        return Ok(false);
    }
    let shape = npy::npz_shape(npz, "samples")?;
    let mut want = vec![manifest.n];
    want.extend(manifest.sample_shape.iter().map(|&d| d as usize));
    if shape != want {
        return Err(SampleError::Arg(format!(
            "{}: array samples has shape {shape:?}, the job's manifest says {want:?}; remove it \
             or choose another --out",
            npz.display()
        )));
    }
    Ok(true)
}

/// Streams `parts` (npy files whose first dimensions add up to `shape[0]`) into `out` as its
/// one array `samples`, atomically.
fn assemble_npz(out: &Path, shape: &[usize], parts: &[PathBuf]) -> Result<()> {
    let mut w = npy::NpzWriter::create(out, false)?;
    w.start_array::<f32>("samples", shape)?;
    for p in parts {
        w.write_values(&npy::read::<f32>(p, None)?.values)?;
    }
    Ok(w.finish()?)
}

/// `grid.png` of the first 64 images, or `samples.svg` for 2-D points.
fn draw_overview(out: &Path, parts: &[PathBuf], shape: &[i64]) -> Result<()> {
    let mut values = Vec::new();
    let per: usize = shape.iter().product::<i64>() as usize;
    let limit = if shape.len() == 3 { 64 } else { 5000 };
    for p in parts {
        if values.len() >= limit * per {
            break;
        }
        values.extend(npy::read::<f32>(p, None)?.values);
    }
    values.truncate(limit * per);
    let n = values.len() / per;
    if shape.len() == 3 {
        let (c, h, w) = (shape[0] as usize, shape[1] as usize, shape[2] as usize);
        let p = out.join("grid.png");
        let nrow = (n as f64).sqrt().ceil() as usize;
        ddpm_viz::save_image_grid(&p, &values, [n, c, h, w], nrow, (64 / h).max(1), 2)
            .map_err(io(&p))
    } else {
        let p = out.join("samples.svg");
        let pts: Vec<[f32; 2]> = values.chunks(per).map(|c| [c[0], c[1]]).collect();
        ddpm_viz::scatter_panels_svg(
            &p,
            "samples",
            &[("samples".into(), vec![("samples".into(), pts, "#d62728".into())])],
            1.0,
        )
        .map_err(io(&p))
    }
}
