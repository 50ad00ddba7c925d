//! A folder of images (png/jpg/jpeg, searched recursively, sorted for determinism): each image
//! is resized so that its shorter side is `size` (Catmull-Rom filter) and centre-cropped to
//! size x size, in RGB or grayscale. If every image sits in an immediate subfolder, the sorted
//! subfolder names are the classes (torchvision's ImageFolder convention).

use crate::dataset::ImageSet;
use crate::error::{DataError, Result, io};
use image::imageops::FilterType;
use std::path::{Path, PathBuf};

/// What loading passed over (with `skip_bad`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadReport {
    pub skipped: usize,
    pub skipped_examples: Vec<PathBuf>,
}

fn is_image(p: &Path) -> bool {
    p.extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .is_some_and(|e| matches!(e.as_str(), "png" | "jpg" | "jpeg"))
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let p = entry.map_err(io(dir))?.path();
        if p.is_dir() {
            walk(&p, out)?;
        } else if is_image(&p) {
            out.push(p);
        }
    }
    Ok(())
}

/// Decodes one file into `channels` x size x size bytes.
pub fn load_image(path: &Path, size: usize, channels: usize) -> Result<Vec<u8>> {
    let img = image::ImageReader::open(path)
        .map_err(io(path))?
        .with_guessed_format()
        .map_err(io(path))?
        .decode()
        .map_err(|e| DataError::Corrupt {
            path: path.into(),
            reason: format!("cannot decode: {e}"),
        })?;
    let (w, h) = (img.width() as f64, img.height() as f64);
    let s = size as f64 / w.min(h);
    let (nw, nh) =
        (((w * s).round() as u32).max(size as u32), ((h * s).round() as u32).max(size as u32));
    let resized = if (nw, nh) == (img.width(), img.height()) {
        img
    } else {
        img.resize_exact(nw, nh, FilterType::CatmullRom)
    };
    let (x0, y0) = ((nw - size as u32) / 2, (nh - size as u32) / 2);
    let crop = resized.crop_imm(x0, y0, size as u32, size as u32);
    let hw = size * size;
    Ok(match channels {
        1 => crop.to_luma8().into_raw(),
        _ => {
            let rgb = crop.to_rgb8().into_raw();
            // HWC -> CHW
            let mut chw = vec![0u8; 3 * hw];
            for (i, px) in rgb.chunks_exact(3).enumerate() {
                for c in 0..3 {
                    chw[c * hw + i] = px[c];
                }
            }
            chw
        }
    })
}

pub fn load(
    dir: &Path,
    size: usize,
    channels: usize,
    skip_bad: bool,
) -> Result<(ImageSet, LoadReport)> {
    if !dir.is_dir() {
        return Err(DataError::NotFound {
            path: dir.into(),
            hint: Some("expected a directory of images".into()),
        });
    }
    if channels != 1 && channels != 3 {
        return Err(DataError::Config {
            field: "channels",
            reason: format!("must be 1 or 3, got {channels}"),
        });
    }
    if size == 0 {
        return Err(DataError::Config { field: "image_size", reason: "must be positive".into() });
    }
    let mut files = Vec::new();
    walk(dir, &mut files)?;
    files.sort();
    if files.is_empty() {
        return Err(DataError::Empty { path: dir.into() });
    }
    // Decode in parallel over the available cores, keeping the sorted order.
    let workers =
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(files.len());
    let chunk = files.len().div_ceil(workers);
    let decoded: Vec<Result<Vec<u8>>> = std::thread::scope(|s| {
        let handles: Vec<_> = files
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    part.iter().map(|p| load_image(p, size, channels)).collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("decoder thread")).collect()
    });
    let classes: Option<Vec<String>> = {
        let parents: Vec<Option<&Path>> = files.iter().map(|f| f.parent()).collect();
        if parents.iter().all(|p| p.and_then(Path::parent) == Some(dir)) {
            let mut names: Vec<String> = parents
                .iter()
                .map(|p| p.unwrap().file_name().unwrap().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names.dedup();
            Some(names)
        } else {
            None
        }
    };
    let mut report = LoadReport::default();
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for (path, img) in files.iter().zip(decoded) {
        match img {
            Ok(bytes) => {
                pixels.extend(bytes);
                if let Some(cs) = &classes {
                    let name = path.parent().unwrap().file_name().unwrap().to_string_lossy();
                    labels.push(cs.iter().position(|c| *c == name).unwrap() as u32);
                }
            }
            Err(e) if skip_bad => {
                report.skipped += 1;
                if report.skipped_examples.len() < 5 {
                    report.skipped_examples.push(path.clone());
                }
                let _ = e;
            }
            Err(e) => return Err(e),
        }
    }
    let n = pixels.len() / (channels * size * size);
    if n == 0 {
        return Err(DataError::Empty { path: dir.into() });
    }
    let num_classes = classes.as_ref().map_or(0, Vec::len);
    let set = ImageSet {
        n,
        channels,
        height: size,
        width: size,
        pixels,
        max_value: 255,
        labels: classes.map(|_| labels),
        num_classes,
        name: dir.display().to_string(),
    };
    Ok((set, report))
}
