//! The Frechet distance between Gaussians fitted to features (Heusel et al. 2017, arXiv:1706.08500):
//! d^2 = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^{1/2}), in f64.
//!
//! tr((S1 S2)^{1/2}) is the sum of square roots of the eigenvalues of S1 S2, which equal those of
//! the symmetric S1^{1/2} S2 S1^{1/2}: two symmetric eigendecompositions (LAPACK through
//! libtorch) instead of scipy's general `sqrtm`, several times faster and exact for singular
//! covariances (negative round-off eigenvalues are clamped to 0).
//!
//! Statistics files are pytorch-fid's `.npz` (arrays `mu` and `sigma`), read and written; with
//! sFID's spatial statistics they also hold `mu_s` and `sigma_s` (guided-diffusion's reference
//! batches use the same four names), which pytorch-fid's loader ignores.

use crate::error::{EvalError, Result};
use ddpm_io::npy;
use std::path::Path;
use tch::{Device, Kind, Tensor};

/// Mean and covariance of a feature set, f64.
#[derive(Debug)]
pub struct Stats {
    /// [d]
    pub mu: Tensor,
    /// [d, d]
    pub sigma: Tensor,
    /// Statistics of the same images' spatial features (sFID's, 2023-d), when computed; stored
    /// as `mu_s`/`sigma_s`.
    pub spatial: Option<Box<Stats>>,
}

impl Stats {
    /// mu and the unbiased covariance (np.cov(rowvar=False), divisor N - 1) of features [N, d].
    pub fn from_features(features: &Tensor) -> Result<Self> {
        let x = features.to_kind(Kind::Double).to_device(Device::Cpu);
        let n = x.size()[0];
        if n < 2 {
            return Err(EvalError::Samples(format!("statistics need at least 2 samples, got {n}")));
        }
        let mu = x.mean_dim([0i64].as_slice(), false, None::<Kind>);
        let c = &x - &mu;
        let sigma = c.tr().matmul(&c) / (n - 1) as f64;
        Ok(Self { mu, sigma, spatial: None })
    }

    /// Statistics of pool3 features [N, 2048] with those of the same images' spatial features [N, 2023].
    pub fn from_features_with_spatial(pool3: &Tensor, spatial: &Tensor) -> Result<Self> {
        if pool3.size()[0] != spatial.size()[0] {
            return Err(EvalError::Samples(format!(
                "{} pool3 and {} spatial feature vectors: they must come from the same images",
                pool3.size()[0],
                spatial.size()[0]
            )));
        }
        Ok(Self::from_features(pool3)?.with_spatial(Self::from_features(spatial)?))
    }

    /// These statistics with `spatial` as their spatial statistics.
    pub fn with_spatial(mut self, spatial: Stats) -> Self {
        self.spatial = Some(Box::new(Stats { spatial: None, ..spatial }));
        self
    }

    pub fn dim(&self) -> i64 {
        self.mu.size()[0]
    }

    /// Writes `mu` and `sigma` (and `mu_s`, `sigma_s` with spatial statistics) as a pytorch-fid
    /// compatible `.npz` (atomically).
    pub fn save(&self, path: &Path) -> Result<()> {
        let flat =
            |t: &Tensor| Vec::<f64>::try_from(t.to_kind(Kind::Double).flatten(0, -1)).expect("f64");
        let shape = |t: &Tensor| t.size().iter().map(|&d| d as usize).collect::<Vec<_>>();
        let mut tensors = vec![("mu", &self.mu), ("sigma", &self.sigma)];
        if let Some(sp) = &self.spatial {
            tensors.extend([("mu_s", &sp.mu), ("sigma_s", &sp.sigma)]);
        }
        let data: Vec<(&str, Vec<usize>, Vec<f64>)> =
            tensors.into_iter().map(|(n, t)| (n, shape(t), flat(t))).collect();
        let arrays: Vec<(&str, &[usize], &[f64])> =
            data.iter().map(|(n, sh, v)| (*n, &sh[..], &v[..])).collect();
        npy::write_npz(path, &arrays, true)
            .map_err(|e| EvalError::Stats { path: path.into(), reason: e.reason })
    }

    /// Reads a pytorch-fid `.npz` with `mu` [d] and `sigma` [d, d] (f32 or f64), and `mu_s`,
    /// `sigma_s` as the spatial statistics when present (both or neither).
    pub fn load(path: &Path) -> Result<Self> {
        let bad = |reason: String| EvalError::Stats { path: path.into(), reason };
        let names = npy::npz_names(path).map_err(|e| {
            bad(format!("{} (expected pytorch-fid statistics with mu and sigma)", e.reason))
        })?;
        let read = |name: &str| {
            npy::read::<f64>(path, Some(name)).map_err(|e| {
                bad(format!("{} (expected pytorch-fid statistics with mu and sigma)", e.reason))
            })
        };
        let pair = |m: &str, s: &str| -> Result<Self> {
            let (mu, sigma) = (read(m)?, read(s)?);
            let (ms, ss) = (&mu.shape, &sigma.shape);
            if ms.len() != 1 || ss.len() != 2 || ss[0] != ms[0] || ss[1] != ms[0] {
                return Err(bad(format!(
                    "{m} has shape {ms:?} and {s} {ss:?}; expected [d] and [d, d]"
                )));
            }
            let d = ms[0] as i64;
            Ok(Self {
                mu: Tensor::from_slice(&mu.values),
                sigma: Tensor::from_slice(&sigma.values).view([d, d]),
                spatial: None,
            })
        };
        let stats = pair("mu", "sigma")?;
        let has = |name: &str| names.iter().any(|n| n == name);
        match (has("mu_s"), has("sigma_s")) {
            (true, true) => Ok(stats.with_spatial(pair("mu_s", "sigma_s")?)),
            (false, false) => Ok(stats),
            _ => Err(bad(
                "has only one of mu_s and sigma_s (the spatial statistics need both)".into()
            )),
        }
    }
}

/// tr((S1 S2)^{1/2}) from the eigenvalues of S1^{1/2} S2 S1^{1/2}.
pub fn trace_sqrt_product(s1: &Tensor, s2: &Tensor) -> f64 {
    let _g = tch::no_grad_guard();
    let (w, v) = s1.linalg_eigh("L");
    let root = &v * sqrt_eigenvalues(&w).unsqueeze(0);
    let sqrt_s1 = root.matmul(&v.tr());
    let m = sqrt_s1.matmul(s2).matmul(&sqrt_s1);
    let m = (&m + m.tr()) * 0.5;
    let lambda = m.linalg_eigvalsh("L");
    sqrt_eigenvalues(&lambda).sum(Kind::Double).double_value(&[])
}

/// Square roots of a symmetric matrix's eigenvalues `w`, those within round-off of zero (below
/// d eps_f64 times the largest, or negative) taken as zero. A covariance of fewer samples than
/// dimensions has such eigenvalues; their square roots would turn round-off (1e-16 relative)
/// into 1e-8, so the distance would depend on the order in which the statistics were summed
/// (one process or several ranks).
fn sqrt_eigenvalues(w: &Tensor) -> Tensor {
    let tol = w.abs().max() * (w.size()[0] as f64 * f64::EPSILON);
    w.where_self(&w.gt_tensor(&tol), &w.zeros_like()).sqrt()
}

/// sFID (Nash et al. 2021, arXiv:2103.03841, as guided-diffusion's evaluator computes it): the
/// Frechet distance between the spatial statistics of `a` and `b`.
pub fn spatial_frechet_distance(a: &Stats, b: &Stats) -> Result<f64> {
    match (&a.spatial, &b.spatial) {
        (Some(sa), Some(sb)) => frechet_distance(sa, sb),
        (None, _) => Err(EvalError::Samples(
            "sFID: the sample statistics have no spatial statistics (compute them with the spatial features)".into(),
        )),
        (_, None) => Err(EvalError::Samples(
            "sFID: the reference statistics have no spatial statistics (mu_s, sigma_s): recompute the reference statistics with sFID enabled".into(),
        )),
    }
}

/// The Frechet distance between two Gaussians given as statistics (their pool3 statistics;
/// spatial statistics are not looked at).
pub fn frechet_distance(a: &Stats, b: &Stats) -> Result<f64> {
    if a.dim() != b.dim() {
        return Err(EvalError::Samples(format!(
            "statistics of {} and {} dimensions cannot be compared",
            a.dim(),
            b.dim()
        )));
    }
    let (s1, s2) = (a.sigma.to_kind(Kind::Double), b.sigma.to_kind(Kind::Double));
    let diff = a.mu.to_kind(Kind::Double) - b.mu.to_kind(Kind::Double);
    let mean_term = diff.dot(&diff).double_value(&[]);
    let traces = s1.trace().double_value(&[]) + s2.trace().double_value(&[]);
    Ok(mean_term + traces - 2.0 * trace_sqrt_product(&s1, &s2))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// For commuting (diagonal) covariances tr((S1 S2)^{1/2}) = sum sqrt(s1_i s2_i).
    #[test]
    fn diagonal_closed_form() {
        let a = Stats {
            mu: Tensor::from_slice(&[0.0f64, 1.0, 2.0]),
            sigma: Tensor::from_slice(&[1.0f64, 4.0, 9.0]).diag(0),
            spatial: None,
        };
        let b = Stats {
            mu: Tensor::from_slice(&[1.0f64, 1.0, 0.0]),
            sigma: Tensor::from_slice(&[4.0f64, 1.0, 0.0]).diag(0),
            spatial: None,
        };
        let want = (1.0 + 0.0 + 4.0) + (14.0 + 5.0) - 2.0 * (2.0 + 2.0 + 0.0);
        assert!((frechet_distance(&a, &b).unwrap() - want).abs() < 1e-12);
        assert!(frechet_distance(&a, &a).unwrap().abs() < 1e-12);
    }

    #[test]
    fn npz_round_trip() {
        let dir = std::env::temp_dir().join(format!("ddpm-fid-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("s.npz");
        let x = Tensor::arange(40, (Kind::Double, Device::Cpu)).sin().view([10, 4]);
        let s = Stats::from_features(&x).unwrap();
        s.save(&p).unwrap();
        let r = Stats::load(&p).unwrap();
        assert!(r.mu.equal(&s.mu) && r.sigma.equal(&s.sigma));
        assert!(r.spatial.is_none());
        // With spatial statistics: all four arrays come back.
        let sp = Tensor::arange(30, (Kind::Double, Device::Cpu)).cos().view([10, 3]);
        let s2 = Stats::from_features_with_spatial(&x, &sp).unwrap();
        s2.save(&p).unwrap();
        let r2 = Stats::load(&p).unwrap();
        let (a, b) = (r2.spatial.as_ref().unwrap(), s2.spatial.as_ref().unwrap());
        assert!(r2.mu.equal(&s2.mu) && a.mu.equal(&b.mu) && a.sigma.equal(&b.sigma));
        assert_eq!(a.sigma.size(), [3, 3]);
        let d = spatial_frechet_distance(&r2, &s2).unwrap();
        // The 3-d covariance has rank 2 (cos x + cos(x + 2) = 2 cos 1 cos(x + 1)): its zero
        // eigenvalue stays zero instead of turning round-off into ~1e-8 through the square root.
        assert!(d.abs() < 1e-12, "{d}");
        let e = spatial_frechet_distance(&r2, &r).unwrap_err().to_string();
        assert!(e.contains("reference") && e.contains("mu_s"), "{e}");
        std::fs::write(&p, b"junk").unwrap();
        assert!(Stats::load(&p).unwrap_err().to_string().contains("s.npz"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
