//! A folder of images (.png/.jpg/.jpeg in any letter case, searched recursively, sorted for
//! determinism): each image is converted to RGB or grayscale (alpha is dropped), resized so
//! that its shorter side is `size` with `image::imageops::resize` and the Catmull-Rom (bicubic)
//! filter, the usual choice for downscaling photographs that is sharper than bilinear and
//! cheaper than Lanczos3, and centre-cropped to size x size. If every image sits in an
//! immediate subfolder, the sorted subfolder names are the classes (torchvision's ImageFolder
//! convention); otherwise the set is unlabeled. Decoding runs on all available cores.

use crate::dataset::ImageSet;
use crate::error::{DataError, Result, io};
use image::imageops::FilterType;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// How many skipped paths a [`LoadReport`] keeps as examples.
pub const MAX_EXAMPLES: usize = 5;

/// What loading passed over (image folders with `skip_bad_images`), for the caller to log.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadReport {
    /// Files that could not be read or decoded.
    pub skipped: usize,
    /// The first few of them (at most [`MAX_EXAMPLES`]), in sorted order.
    pub skipped_examples: Vec<PathBuf>,
}

fn is_image(p: &Path) -> bool {
    p.extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .is_some_and(|e| matches!(e.as_str(), "png" | "jpg" | "jpeg"))
}

/// Collects image files under `dir`, following links but visiting each real directory once
/// (a link back up the tree would otherwise recurse forever).
fn walk(dir: &Path, out: &mut Vec<PathBuf>, seen: &mut HashSet<PathBuf>) -> Result<()> {
    if !seen.insert(std::fs::canonicalize(dir).map_err(io(dir))?) {
        return Ok(());
    }
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let p = entry.map_err(io(dir))?.path();
        if p.is_dir() {
            walk(&p, out, seen)?;
        } else if is_image(&p) {
            out.push(p);
        }
    }
    Ok(())
}

/// The image files under `dir`, recursively, in sorted order.
pub fn image_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    walk(dir, &mut files, &mut HashSet::new())?;
    files.sort();
    Ok(files)
}

/// Decodes one file into `channels` x size x size bytes (CHW).
pub fn load_image(path: &Path, size: usize, channels: usize) -> Result<Vec<u8>> {
    let mut out = vec![0u8; channels * size * size];
    load_image_into(path, size, channels, &mut out)?;
    Ok(out)
}

/// Decodes, converts (alpha is dropped, not composited), resizes the shorter side to `size`
/// (Catmull-Rom), centre-crops, and writes CHW bytes into `out`.
fn load_image_into(path: &Path, size: usize, channels: usize, out: &mut [u8]) -> Result<()> {
    let img = image::ImageReader::open(path)
        .map_err(io(path))?
        .with_guessed_format()
        .map_err(io(path))?
        .decode()
        .map_err(|e| DataError::Corrupt {
            path: path.into(),
            reason: format!("cannot decode: {e}"),
        })?;
    let hw = size * size;
    if channels == 1 {
        out.copy_from_slice(resize_crop(&img.to_luma8(), size).as_raw());
    } else {
        let rgb = resize_crop(&img.to_rgb8(), size);
        // HWC -> CHW
        for (i, px) in rgb.as_raw().chunks_exact(3).enumerate() {
            for c in 0..3 {
                out[c * hw + i] = px[c];
            }
        }
    }
    Ok(())
}

/// Resizes so that the shorter side is `size`, then takes the centred size x size square.
fn resize_crop<P: image::Pixel<Subpixel = u8> + 'static>(
    img: &image::ImageBuffer<P, Vec<u8>>,
    size: usize,
) -> image::ImageBuffer<P, Vec<u8>> {
    let (w, h) = (img.width() as f64, img.height() as f64);
    let s = size as f64 / w.min(h);
    let (nw, nh) =
        (((w * s).round() as u32).max(size as u32), ((h * s).round() as u32).max(size as u32));
    let resized = if (nw, nh) == img.dimensions() {
        img.clone()
    } else {
        image::imageops::resize(img, nw, nh, FilterType::CatmullRom)
    };
    let (x0, y0) = ((nw - size as u32) / 2, (nh - size as u32) / 2);
    image::imageops::crop_imm(&resized, x0, y0, size as u32, size as u32).to_image()
}

/// Decodes `files` into consecutive slots of `pixels` on all cores. Files are handed out in
/// order from a shared queue (images differ in size, so fixed chunks would balance badly).
/// Unless `keep_going`, workers stop taking files after the first failure; every file before
/// a failed one has still been handed out and decoded, so the first failure in sorted order,
/// the one reported, does not depend on timing.
fn decode_all(
    files: &[PathBuf],
    size: usize,
    channels: usize,
    pixels: &mut [u8],
    keep_going: bool,
) -> Vec<Option<Result<()>>> {
    let len = channels * size * size;
    let jobs = Mutex::new(files.iter().zip(pixels.chunks_exact_mut(len)).enumerate());
    let failed = AtomicBool::new(false);
    let workers =
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(files.len());
    let mut results: Vec<Option<Result<()>>> = (0..files.len()).map(|_| None).collect();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                s.spawn(|| {
                    let mut done = Vec::new();
                    while keep_going || !failed.load(Ordering::Relaxed) {
                        let job = jobs.lock().expect("decoder queue").next();
                        let Some((i, (path, out))) = job else { break };
                        let r = load_image_into(path, size, channels, out);
                        if r.is_err() {
                            failed.store(true, Ordering::Relaxed);
                        }
                        done.push((i, r));
                    }
                    done
                })
            })
            .collect();
        for h in handles {
            for (i, r) in h.join().expect("decoder thread panicked") {
                results[i] = Some(r);
            }
        }
    });
    results
}

/// Loads every image under `dir` as a `channels` x size x size [`ImageSet`] (8-bit, labels
/// from immediate subfolders when every image has one). With `skip_bad`, files that cannot
/// be read or decoded are left out and counted in the [`LoadReport`]; otherwise the first
/// one (in sorted order) is the error.
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
    let files = image_files(dir)?;
    if files.is_empty() {
        return Err(DataError::Empty { path: dir.into() });
    }
    let len = channels * size * size;
    let mut pixels = vec![0u8; files.len() * len];
    let decoded = decode_all(&files, size, channels, &mut pixels, skip_bad);
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
    let mut labels = Vec::new();
    let mut n = 0;
    for (i, (path, r)) in files.iter().zip(decoded).enumerate() {
        match r {
            Some(Ok(())) => {
                // Compact in place: slot i moves down over the skipped ones.
                if n != i {
                    pixels.copy_within(i * len..(i + 1) * len, n * len);
                }
                n += 1;
                if let Some(cs) = &classes {
                    let name = path.parent().unwrap().file_name().unwrap().to_string_lossy();
                    labels.push(cs.iter().position(|c| *c == name).unwrap() as u32);
                }
            }
            Some(Err(_)) if skip_bad => {
                report.skipped += 1;
                if report.skipped_examples.len() < MAX_EXAMPLES {
                    report.skipped_examples.push(path.clone());
                }
            }
            Some(Err(e)) => return Err(e),
            None => unreachable!("decoding stopped before {} without a failure", path.display()),
        }
    }
    pixels.truncate(n * len);
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
