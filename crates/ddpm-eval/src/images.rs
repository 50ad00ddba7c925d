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
    check_channels(shape[1] as i64, &path.display().to_string())?;
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

/// Inception takes RGB images; grayscale ones are replicated to RGB as pytorch-fid's loader
/// does (`convert("RGB")`). Any other channel count (RGBA, two-channel) is an error naming
/// `origin` rather than a shape panic inside the network.
pub fn check_channels(channels: i64, origin: &str) -> Result<()> {
    match channels {
        1 | 3 => Ok(()),
        c => Err(EvalError::Samples(format!(
            "{origin}: images with {c} channels; Inception takes 3 (RGB) or 1 (grey, replicated \
             to RGB as pytorch-fid does)"
        ))),
    }
}

/// Whether `images` are N x C x H x W with a channel count Inception takes.
pub fn check_images(images: &Tensor, origin: &str) -> Result<()> {
    if images.dim() != 4 {
        return Err(EvalError::Samples(format!(
            "{origin}: images must be N x C x H x W, got shape {:?}",
            images.size()
        )));
    }
    check_channels(images.size()[1], origin)
}

/// Images [N, C, H, W] as Inception's RGB input (see [`check_channels`]).
pub fn to_rgb(images: &Tensor, origin: &str) -> Result<Tensor> {
    check_images(images, origin)?;
    Ok(match images.size()[1] {
        1 => images.expand([-1, 3, -1, -1], false).contiguous(),
        _ => images.shallow_clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    /// Regression: four-channel samples reached Inception's first convolution and panicked.
    #[test]
    fn grey_becomes_rgb_and_other_channel_counts_are_named_errors() {
        let dir = ddpm_testkit::temp_dir("eval-channels");
        let grey = Tensor::rand([2, 1, 5, 5], (Kind::Float, Device::Cpu));
        let rgb = to_rgb(&grey, "g").unwrap();
        assert_eq!(rgb.size(), vec![2, 3, 5, 5]);
        assert!(rgb.narrow(1, 2, 1).equal(&grey) && rgb.narrow(1, 0, 1).equal(&grey));
        for c in [2usize, 4] {
            let p = dir.join(format!("c{c}.npz"));
            let v = vec![0.5f32; 2 * c * 9];
            ddpm_io::npy::write_npz(&p, &[("samples", &[2, c, 3, 3][..], &v[..])], false).unwrap();
            let e = from_npz(&p).unwrap_err().to_string();
            assert!(
                e.contains(&format!("c{c}.npz")) && e.contains(&format!("{c} channels")),
                "{e}"
            );
            assert_eq!(e.lines().count(), 1);
            let t = Tensor::zeros([1, c as i64, 3, 3], (Kind::Float, Device::Cpu));
            assert!(to_rgb(&t, "x").unwrap_err().to_string().contains("x: images with"));
        }
    }
}
