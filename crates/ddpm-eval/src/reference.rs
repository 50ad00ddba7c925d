//! The reference side of FID and its cache: a statistics `.npz` as given (pytorch-fid's `mu`
//! and `sigma`, with a features file for precision/recall), or the statistics of a data set or
//! an image folder, computed once through the one Inception pass and cached under
//! `$DDPM_HOME/fid-stats/`.
//!
//! The cache key is a SHA-256 of what the statistics were computed from, not of its name: the
//! bytes of every file under the reference's path (relative names, sizes and contents, in
//! name order), the data configuration it was read with (data set, split, size), and the
//! Inception weights' SHA-256. An edited folder, a replaced file or other weights get new
//! statistics; renaming or moving the same files does not recompute them. Embedded data sets
//! (no path) are keyed by their configuration and this crate's version.

use crate::error::{EvalError, Result, io};
use crate::metrics::{Metrics, Reference};
use crate::samples::Samples;
use crate::sharded::{Needs, inception_pass};
use crate::{FidInception, images, sha256_file};
use ddpm_data::Dataset;
use ddpm_dist::Dist;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use tch::Tensor;

/// The reference for `metrics`, with (description, SHA-256 of the statistics file), as one
/// rank of `dist` (every rank calls it): rank 0 reads what exists and decides; an uncached
/// reference is computed by the ranks together ([`inception_pass`]) and cached by rank 0.
/// Rank 0 gets the reference, the other ranks `None`: only rank 0 measures.
#[allow(clippy::too_many_arguments)]
pub fn reference(
    spec: &str,
    features: Option<&Path>,
    metrics: Metrics,
    net: &FidInception,
    weights_sha: &str,
    batch: usize,
    dist: &Dist,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Option<(Reference, String, String)>> {
    let stored = match dist.is_main() {
        true => match stored(spec, features, metrics, weights_sha) {
            Ok(s) => Some(s),
            Err(e) => {
                dist.broadcast_i64s(&[0])?;
                return Err(e);
            }
        },
        false => None,
    };
    let code = match &stored {
        Some(Stored::Found(..)) => 1,
        Some(Stored::Compute { .. }) => 2,
        None => 0,
    };
    match dist.broadcast_i64s(&[code])?[0] {
        0 => {
            return Err(EvalError::Samples(format!(
                "rank 0 could not read the reference {spec} (its log says why)"
            )));
        }
        1 => {
            return Ok(match stored {
                Some(Stored::Found(r, desc, sha)) => Some((r, desc, sha)),
                _ => None,
            });
        }
        _ => {}
    }
    let imgs = load_images(spec)?;
    images::check_images(&imgs, spec)?;
    let n = imgs.size()[0] as usize;
    if dist.is_main() {
        tracing::info!("reference statistics of {spec}: {n} images through Inception");
    }
    // Everything the cache may be asked for later in the same pass: spatial statistics too.
    let needs = Needs { spatial: true, is: false, pool3_rows: metrics.pr };
    let f = inception_pass(net, &Samples::Memory(imgs), batch, dist, needs, progress)?;
    let Some(Stored::Compute { stats, features }) = stored else { return Ok(None) };
    let r = Reference { stats: Some(f.stats()?), features: f.pool3_rows };
    r.save(&stats, metrics.pr.then_some(features.as_path()))?;
    let desc = format!("{spec} (cached {})", stats.display());
    Ok(Some((r, desc, sha256_file(&stats)?)))
}

/// What rank 0 finds for a reference: a usable one, or where to cache the one to compute.
enum Stored {
    Found(Reference, String, String),
    Compute { stats: PathBuf, features: PathBuf },
}

fn stored(
    spec: &str,
    features: Option<&Path>,
    metrics: Metrics,
    weights_sha: &str,
) -> Result<Stored> {
    let path = Path::new(spec);
    if path.extension().is_some_and(|e| e == "npz") {
        let r = Reference::load(Some(path), features)?;
        if let Some(s) = &r.stats
            && s.dim() != 2048
        {
            return Err(EvalError::Stats {
                path: path.into(),
                reason: format!(
                    "statistics of {} features; FID uses the 2048-d pool features",
                    s.dim()
                ),
            });
        }
        r.check(metrics)?;
        return Ok(Stored::Found(r, spec.to_string(), sha256_file(path)?));
    }
    let (stats_path, features_path) = cache_paths(spec, weights_sha)?;
    if stats_path.exists() {
        let cached_features = features_path.exists().then_some(features_path.as_path());
        let r = Reference::load(Some(&stats_path), cached_features)?;
        if r.check(metrics).is_ok() {
            let desc = format!("{spec} (cached {})", stats_path.display());
            let sha = sha256_file(&stats_path)?;
            return Ok(Stored::Found(r, desc, sha));
        }
    }
    Ok(Stored::Compute { stats: stats_path, features: features_path })
}

/// Where the statistics (and features) of the reference `spec` computed with the weights
/// `weights_sha` are cached: `$DDPM_HOME/fid-stats/<key>.npz` and `<key>-features.npz`.
pub fn cache_paths(spec: &str, weights_sha: &str) -> Result<(PathBuf, PathBuf)> {
    let key = content_key(spec, weights_sha)?;
    let dir = ddpm_io::ddpm_home().join("fid-stats");
    Ok((dir.join(format!("{key}.npz")), dir.join(format!("{key}-features.npz"))))
}

/// The cache key of a reference (see the module's doc): 16 hex digits of a SHA-256.
pub fn content_key(spec: &str, weights_sha: &str) -> Result<String> {
    let cfg = ddpm_data::config_from_arg(spec);
    let mut h = Sha256::new();
    h.update(b"ddpm-rs fid-stats v2\0");
    // How the files are read (data set kind, split, size), not where they are.
    let how = ddpm_data::DataConfig { path: None, ..cfg.clone() };
    h.update(serde_json::to_vec(&how).expect("serialises"));
    h.update(weights_sha.as_bytes());
    match &cfg.path {
        Some(p) => hash_tree(&mut h, p, p)?,
        None => h.update(env!("CARGO_PKG_VERSION").as_bytes()),
    }
    Ok(h.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect())
}

/// Adds every file under `path` (or the file itself) to `h`: name relative to `root`, size and
/// bytes, in name order.
fn hash_tree(h: &mut Sha256, root: &Path, path: &Path) -> Result<()> {
    let meta = std::fs::metadata(path).map_err(io(path))?;
    if meta.is_file() {
        let rel = path.strip_prefix(root).unwrap_or(path);
        h.update(rel.to_string_lossy().as_bytes());
        h.update([0]);
        h.update(meta.len().to_le_bytes());
        let mut f = std::fs::File::open(path).map_err(io(path))?;
        std::io::copy(&mut f, h).map_err(io(path))?;
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(io(path))?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()
        .map_err(io(path))?;
    entries.sort();
    for e in entries {
        hash_tree(h, root, &e)?;
    }
    Ok(())
}

/// Images in [0, 1] from an `.npz`/`.npy` of samples, an image folder, or a data set.
pub fn load_images(spec: &str) -> Result<Tensor> {
    let p = Path::new(spec);
    if p.extension().is_some_and(|e| e == "npz" || e == "npy") {
        return images::from_npz(p);
    }
    let cfg = ddpm_data::config_from_arg(spec);
    if cfg.dataset == "folder" {
        return images::from_folder(p);
    }
    match ddpm_data::load(&cfg)?.0 {
        Dataset::Images(set) => Ok(images::from_dataset(&set)),
        Dataset::Points(_) => {
            Err(EvalError::Samples(format!("{spec} holds 2-D points, not images")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(p: &Path, bytes: &[u8]) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }

    /// The key follows the contents: an edited, added or removed file changes it, and so do
    /// other weights; the same files elsewhere keep it (the old key was the path's).
    #[test]
    fn the_cache_key_follows_the_folders_contents_not_its_path() {
        let dir = ddpm_testkit::temp_dir("ref-key");
        let (a, b) = (dir.join("a"), dir.join("b"));
        for root in [&a, &b] {
            write(&root.join("0.png"), b"first");
            write(&root.join("sub/1.png"), b"second");
        }
        let s = |p: &Path| p.display().to_string();
        let key = content_key(&s(&a), "w1").unwrap();
        assert_eq!(key.len(), 16);
        assert_eq!(content_key(&s(&b), "w1").unwrap(), key, "the same files elsewhere");
        assert_ne!(content_key(&s(&a), "w2").unwrap(), key, "other weights");
        write(&b.join("sub/1.png"), b"secont");
        let edited = content_key(&s(&b), "w1").unwrap();
        assert_ne!(edited, key, "an edited file");
        write(&b.join("2.png"), b"third");
        let added = content_key(&s(&b), "w1").unwrap();
        assert!(added != key && added != edited, "an added file");
        std::fs::remove_file(b.join("2.png")).unwrap();
        assert_eq!(content_key(&s(&b), "w1").unwrap(), edited, "the file removed again");
        // Embedded data sets: by their configuration.
        assert_ne!(content_key("digits", "w1").unwrap(), content_key("moons", "w1").unwrap());
        let e = content_key(&s(&dir.join("missing")), "w1").unwrap_err().to_string();
        assert!(e.contains("missing"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
