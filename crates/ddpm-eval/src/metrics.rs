//! The sample-quality measures papers report side by side (guided-diffusion's evaluator: FID,
//! sFID, precision, recall, Inception Score), chosen by a `--metrics fid,is,sfid,pr` selection
//! and computed from one Inception pass over the samples:
//! - `fid`: Frechet distance of pool3 statistics ([`crate::fid`]);
//! - `is`: Inception Score, 10 splits ([`crate::inception_score`]);
//! - `sfid`: Frechet distance of the spatial statistics (Mixed_6d.branch1x1[:7], 2023-d,
//!   [`crate::inception`]); the reference statistics must carry `mu_s`/`sigma_s`;
//! - `pr`: precision and recall, k = 3 ([`crate::precision_recall`]); needs the reference's
//!   pool3 features ([`crate::feature_file`]).

use crate::error::{EvalError, Result};
use crate::fid::{Stats, frechet_distance, spatial_frechet_distance};
use crate::inception::FidInception;

use crate::precision_recall::{ManifoldConfig, precision_recall};
use crate::sharded::ShardedFeatures;
use std::path::Path;
use tch::{Device, Tensor};

/// Which measures to compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Metrics {
    pub fid: bool,
    pub is: bool,
    pub sfid: bool,
    pub pr: bool,
}

impl Default for Metrics {
    /// FID and IS, what the evaluator reported before sFID and precision/recall existed.
    fn default() -> Self {
        Self { fid: true, is: true, sfid: false, pr: false }
    }
}

/// The names `--metrics` takes, in their canonical order.
pub const METRIC_NAMES: [&str; 4] = ["fid", "is", "sfid", "pr"];

impl std::str::FromStr for Metrics {
    type Err = EvalError;

    /// A comma-separated list of `fid`, `is`, `sfid`, `pr` (any order, case-insensitive).
    fn from_str(s: &str) -> Result<Self> {
        let mut m = Metrics { fid: false, is: false, sfid: false, pr: false };
        for name in s.split(',').map(str::trim) {
            match name.to_ascii_lowercase().as_str() {
                "fid" => m.fid = true,
                "is" => m.is = true,
                "sfid" => m.sfid = true,
                "pr" => m.pr = true,
                _ => {
                    return Err(EvalError::Samples(format!(
                        "--metrics: unknown metric {name:?} in {s:?}; expected a comma-separated list of fid, is, sfid, pr"
                    )));
                }
            }
        }
        Ok(m)
    }
}

impl std::fmt::Display for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let on = [self.fid, self.is, self.sfid, self.pr];
        let names: Vec<&str> =
            METRIC_NAMES.iter().zip(on).filter(|(_, b)| *b).map(|(n, _)| *n).collect();
        f.write_str(&names.join(","))
    }
}

impl Metrics {
    /// Whether the Inception pass must keep the spatial features.
    pub fn needs_spatial(&self) -> bool {
        self.sfid
    }
}

/// The reference side: statistics (with spatial statistics for sFID) and pool3 features (for
/// precision/recall), each present when the selected metrics need it.
#[derive(Debug, Default)]
pub struct Reference {
    pub stats: Option<Stats>,
    /// [N, 2048], f32.
    pub features: Option<Tensor>,
}

impl Reference {
    /// Reads a statistics `.npz` (pytorch-fid's, optionally with `mu_s`/`sigma_s`) and, when
    /// given, a features `.npz` ([`crate::feature_file`]).
    pub fn load(stats: Option<&Path>, features: Option<&Path>) -> Result<Self> {
        Ok(Self {
            stats: stats.map(Stats::load).transpose()?,
            features: features.map(crate::feature_file::load_features).transpose()?,
        })
    }

    /// Writes the statistics and, when present and a path is given, the features.
    pub fn save(&self, stats: &Path, features: Option<&Path>) -> Result<()> {
        if let Some(s) = &self.stats {
            s.save(stats)?;
        }
        if let (Some(f), Some(path)) = (&self.features, features) {
            crate::feature_file::save_features(path, f)?;
        }
        Ok(())
    }

    /// Checks that this reference has what `metrics` need; the error says what is missing.
    pub fn check(&self, metrics: Metrics) -> Result<()> {
        let missing = |what: &str| Err(EvalError::Samples(what.into()));
        if (metrics.fid || metrics.sfid) && self.stats.is_none() {
            return missing("FID/sFID need reference statistics (an .npz with mu and sigma)");
        }
        if metrics.sfid && self.stats.as_ref().is_some_and(|s| s.spatial.is_none()) {
            return missing(
                "sFID needs spatial reference statistics (mu_s, sigma_s in the statistics .npz): recompute the reference statistics with sfid among the metrics",
            );
        }
        if metrics.pr && self.features.is_none() {
            return missing(
                "precision/recall need the reference's pool3 features (a features .npz): recompute the reference statistics with pr among the metrics",
            );
        }
        Ok(())
    }
}

/// The metrics of one evaluation; a field is `None` when its metric was not selected.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MetricValues {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fid: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_mean: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_std: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sfid: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub precision: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recall: Option<f64>,
}

/// The selected metrics from the samples' Inception pass (its sums, shared by ranks, and its
/// gathered features) and a reference, with the evaluator's precision/recall settings;
/// precision and recall run on `device` (the features are moved there).
pub fn metrics_from_pass(
    pass: &ShardedFeatures,
    reference: &Reference,
    metrics: Metrics,
    device: Device,
) -> Result<MetricValues> {
    reference.check(metrics)?;
    if metrics.sfid && pass.spatial.is_none() {
        return Err(no_spatial());
    }
    let stats = (metrics.fid || metrics.sfid).then(|| pass.stats()).transpose()?;
    let is = match (metrics.is, &pass.is) {
        (true, Some(sums)) => Some(sums.score()),
        (true, None) => {
            return Err(EvalError::Samples("IS needs the Inception pass's IS sums".into()));
        }
        (false, _) => None,
    };
    let side = SampleSide { stats, is, pool3: pass.pool3_rows.as_ref() };
    values(side, reference, metrics, &ManifoldConfig::default(), device)
}

fn no_spatial() -> EvalError {
    EvalError::Samples(
        "sFID needs the samples' spatial features (run the Inception pass with them)".into(),
    )
}

/// What the samples contribute to the metrics, however it was gathered.
struct SampleSide<'a> {
    stats: Option<Stats>,
    is: Option<(f64, f64)>,
    pool3: Option<&'a Tensor>,
}

fn values(
    side: SampleSide,
    reference: &Reference,
    metrics: Metrics,
    manifold: &ManifoldConfig,
    device: Device,
) -> Result<MetricValues> {
    let mut out = MetricValues::default();
    if let (Some(s), Some(r)) = (&side.stats, &reference.stats) {
        if metrics.fid {
            out.fid = Some(frechet_distance(s, r)?);
        }
        if metrics.sfid {
            out.sfid = Some(spatial_frechet_distance(s, r)?);
        }
    }
    if let Some((m, s)) = side.is {
        (out.is_mean, out.is_std) = (Some(m), Some(s));
    }
    if metrics.pr {
        let reference_features = reference.features.as_ref().expect("checked by the caller");
        let samples = side.pool3.ok_or_else(|| {
            EvalError::Samples("precision/recall need the samples' pool3 features".into())
        })?;
        let pr = precision_recall(
            &reference_features.to_device(device),
            &samples.to_device(device),
            manifold,
        )?;
        (out.precision, out.recall) = (Some(pr.precision), Some(pr.recall));
    }
    Ok(out)
}

/// The reference for `metrics` from reference images [N, C, H, W] in [0, 1]: the one Inception
/// pass ([`crate::sharded::inception_pass`], one process), its statistics (with the spatial ones
/// when sFID is selected) and, for precision/recall, its pool3 features (what `fid-stats`
/// computes; save it with [`Reference::save`]).
pub fn reference_from_images(
    net: &FidInception,
    images: &Tensor,
    batch: usize,
    metrics: Metrics,
    progress: &mut dyn FnMut(usize),
) -> Result<Reference> {
    crate::images::check_images(images, "images")?;
    let needs = crate::sharded::Needs {
        spatial: metrics.needs_spatial(),
        is: false,
        pool3_rows: metrics.pr,
    };
    let single = ddpm_dist::Dist::single(net.vs.device());
    let set = crate::samples::Samples::Memory(images.shallow_clone());
    let pass =
        crate::sharded::inception_pass(net, &set, batch, &single, needs, &mut |d, _| progress(d))?;
    Ok(Reference { stats: Some(pass.stats()?), features: pass.pool3_rows })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inception_score::inception_score;
    use tch::Kind;

    #[test]
    fn metric_lists_parse_and_print_canonically() {
        let m: Metrics = "pr, SFID,fid".parse().unwrap();
        assert_eq!(m, Metrics { fid: true, is: false, sfid: true, pr: true });
        assert_eq!(m.to_string(), "fid,sfid,pr");
        assert_eq!("fid,is,sfid,pr".parse::<Metrics>().unwrap().to_string(), "fid,is,sfid,pr");
        assert_eq!(Metrics::default().to_string(), "fid,is");
        let e = "fid,kid".parse::<Metrics>().unwrap_err().to_string();
        assert!(e.contains("\"kid\"") && e.contains("fid, is, sfid, pr"), "{e}");
        assert_eq!(e.lines().count(), 1);
        assert!("".parse::<Metrics>().is_err());
    }

    /// Random pool3 [n, 16], logits [n, 1008] and spatial [n, 6] features.
    fn feats(n: i64, seed: i64) -> (Tensor, Tensor, Tensor) {
        let _g = ddpm_nets::torch_rng_lock();
        tch::manual_seed(seed);
        let opts = (Kind::Float, Device::Cpu);
        let pool3 = Tensor::randn([n, 16], opts).relu();
        (pool3, Tensor::randn([n, 1008], opts), Tensor::randn([n, 6], opts).relu())
    }

    /// What one Inception pass keeps of these features (all of it).
    fn pass(f: &(Tensor, Tensor, Tensor)) -> ShardedFeatures {
        let (pool3, logits, spatial) = f;
        let n = pool3.size()[0];
        let moments = |t: &Tensor| {
            let mut m = ddpm_dist::FeatureMoments::new(t.size()[1], Device::Cpu);
            m.add(t).unwrap();
            m
        };
        let mut is = crate::inception_score::IsSums::new(n as usize, 10, 1008, Device::Cpu);
        is.add(0, logits);
        ShardedFeatures {
            pool3: moments(pool3),
            spatial: Some(moments(spatial)),
            is: Some(is),
            pool3_rows: Some(pool3.shallow_clone()),
        }
    }

    fn reference(f: &(Tensor, Tensor, Tensor), pr: bool) -> Reference {
        Reference {
            stats: Some(pass(f).stats().unwrap()),
            features: pr.then(|| f.0.shallow_clone()),
        }
    }

    #[test]
    fn every_selected_metric_is_computed_from_one_pass() {
        let reference = reference(&feats(60, 1), true);
        let s = feats(50, 2);
        let all: Metrics = "fid,is,sfid,pr".parse().unwrap();
        let v = metrics_from_pass(&pass(&s), &reference, all, Device::Cpu).unwrap();
        let stats = Stats::from_features_with_spatial(&s.0, &s.2).unwrap();
        let r = reference.stats.as_ref().unwrap();
        let close = |a: Option<f64>, b: f64| (a.unwrap() - b).abs() <= 1e-9 * b.abs().max(1.0);
        assert!(close(v.fid, frechet_distance(&stats, r).unwrap()), "{v:?}");
        assert!(close(v.sfid, spatial_frechet_distance(&stats, r).unwrap()), "{v:?}");
        assert!(v.sfid != v.fid && v.sfid.unwrap() > 0.1);
        let (is, _) = inception_score(&s.1, 10);
        assert!(close(v.is_mean, is), "{v:?} vs {is}");
        let pr = precision_recall(reference.features.as_ref().unwrap(), &s.0, &Default::default())
            .unwrap();
        assert_eq!((v.precision, v.recall), (Some(pr.precision), Some(pr.recall)));
        // Only what was asked for.
        let v =
            metrics_from_pass(&pass(&s), &reference, "is".parse().unwrap(), Device::Cpu).unwrap();
        assert!(
            v.fid.is_none() && v.sfid.is_none() && v.precision.is_none() && v.is_mean.is_some()
        );
    }

    #[test]
    fn a_reference_without_what_a_metric_needs_is_refused_by_name() {
        let f = feats(30, 3);
        let plain = Reference { stats: Some(Stats::from_features(&f.0).unwrap()), features: None };
        let e = plain.check("sfid".parse().unwrap()).unwrap_err().to_string();
        assert!(e.contains("mu_s"), "{e}");
        let e = plain.check("pr".parse().unwrap()).unwrap_err().to_string();
        assert!(e.contains("features"), "{e}");
        assert!(Reference::default().check(Metrics::default()).is_err());
        // A pass without the spatial sums cannot give sFID.
        let mut p = pass(&f);
        p.spatial = None;
        let e = metrics_from_pass(&p, &reference(&f, false), "sfid".parse().unwrap(), Device::Cpu)
            .unwrap_err()
            .to_string();
        assert!(e.contains("spatial"), "{e}");
    }
}
