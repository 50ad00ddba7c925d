//! Image sets to evaluate, as [N, C, H, W] floats in [0, 1] (pytorch-fid's input): a
//! `samples.npz` (array `samples` in [-1, 1], used unquantised), a folder of PNG/JPG files at
//! their own size (all must share it), or a data set.

use crate::error::{EvalError, Result};
use std::path::Path;
use tch::{Kind, Tensor};

/// Samples in [-1, 1] from an `.npz`/`.npy` -> [0, 1].
pub fn from_npz(path: &Path) -> Result<Tensor> {
    let (shape, values) = ddpm_io::npy::read_array(path, "samples")?;
    if shape.len() != 4 {
        return Err(EvalError::Samples(format!(
            "{}: samples must be N x C x H x W, got shape {shape:?}",
            path.display()
        )));
    }
    let shape: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
    Ok((Tensor::from_slice(&values).view(shape.as_slice()) + 1.0) / 2.0)
}

/// Every PNG/JPG under `dir` (sorted), decoded to RGB at its own size; sizes must agree.
pub fn from_folder(dir: &Path) -> Result<Tensor> {
    let mut files = Vec::new();
    collect(dir, &mut files)?;
    files.sort();
    if files.is_empty() {
        return Err(EvalError::Data(ddpm_data::DataError::Empty { path: dir.into() }));
    }
    let mut first: Option<(u32, u32)> = None;
    let mut data = Vec::new();
    for f in &files {
        let img = image::ImageReader::open(f)
            .and_then(|r| r.with_guessed_format())
            .map_err(|e| EvalError::Samples(format!("{}: {e}", f.display())))?
            .decode()
            .map_err(|e| EvalError::Samples(format!("{}: cannot decode: {e}", f.display())))?
            .to_rgb8();
        let dims = img.dimensions();
        match first {
            None => first = Some(dims),
            Some(d) if d != dims => {
                return Err(EvalError::Samples(format!(
                    "{}: {}x{} pixels, but {} is {}x{}: images evaluated together must share a size",
                    f.display(),
                    dims.0,
                    dims.1,
                    files[0].display(),
                    d.0,
                    d.1
                )));
            }
            _ => {}
        }
        data.extend_from_slice(img.as_raw());
    }
    let (w, h) = first.unwrap();
    let t = Tensor::from_slice(&data)
        .view([files.len() as i64, h as i64, w as i64, 3])
        .permute([0, 3, 1, 2]);
    Ok(t.to_kind(Kind::Float) / 255.0)
}

fn collect(dir: &Path, out: &mut Vec<std::path::PathBuf>) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            EvalError::Data(ddpm_data::DataError::NotFound { path: dir.into(), hint: None })
        }
        _ => EvalError::Io { path: dir.into(), source: e },
    })?;
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect(&p, out)?;
        } else if p
            .extension()
            .map(|x| x.to_string_lossy().to_ascii_lowercase())
            .is_some_and(|x| x == "png" || x == "jpg" || x == "jpeg")
        {
            out.push(p);
        }
    }
    Ok(())
}

/// A data set's images in [0, 1] (uint8 levels / max).
pub fn from_dataset(set: &ddpm_data::ImageSet) -> Tensor {
    let t = Tensor::from_slice(&set.pixels).view([
        set.n as i64,
        set.channels as i64,
        set.height as i64,
        set.width as i64,
    ]);
    t.to_kind(Kind::Float) / set.max_value as f64
}

/// Grayscale images replicated to RGB, as pytorch-fid's loader does (`convert("RGB")`).
pub fn to_rgb(images: &Tensor) -> Tensor {
    match images.size()[1] {
        1 => images.expand([-1, 3, -1, -1], false).contiguous(),
        _ => images.shallow_clone(),
    }
}
