//! The evaluation protocol of `ddpm-eval fid`: which distance a set of samples gets, computed
//! the way it is reported, and recorded in a [`FidReport`] (written as `fid.json`) with
//! everything needed to compare two numbers.
//!
//! | data | [`Measure`] | what |
//! |---|---|---|
//! | 2-D points | `Points` | sliced 2-Wasserstein distance to the data (200 directions, seed 0), beside the distance between two independent data draws |
//! | the embedded digits | `Digits` | Frechet distance in the features of a small digit classifier, samples vs a seeded half of the data, beside the other half vs it; FID/IS too when Inception weights exist |
//! | Fashion-MNIST | `Fashion` | FD and KID in the features of a Fashion-MNIST classifier, samples vs the test split, beside 10,000 training images vs it (see [`crate::fashion`], docs/metrics.md) |
//! | images | `Inception` | FID and IS through pytorch-fid's Inception (see [`crate::inception`]) against reference statistics |
//!
//! The measure follows from the run's data set (or, for `--samples`, from `--ref`), never from
//! the shape of the samples.
//!
//! Across ranks (`torchrun ... ddpm-eval fid`, [`evaluate_sharded`]): the Inception passes over
//! the samples and over an uncached reference are shared by the ranks ([`crate::sharded`]:
//! f64 feature sums reduced over ranks); rank 0 computes the distances and writes the report.
//! One process takes the same path with one share, so the two differ only in the order of the
//! f64 sums.

use crate::digits_classifier::DigitsClassifier;
use crate::error::{EvalError, Result};
use crate::metrics::{MetricValues, Metrics, metrics_from_pass};
use crate::samples::Samples;
use crate::sharded::{Needs, inception_pass};
use crate::{FidInception, Stats, distance2d, frechet_distance, images, sha256_file};
use ddpm_data::{DataConfig, Dataset};
use ddpm_dist::Dist;
use serde::Serialize;
use std::path::{Path, PathBuf};
use tch::{Device, Tensor};

/// Seed of the random split of the digits into two halves (the file is grouped by writer, so
/// its own halves differ in style).
pub const DIGITS_SPLIT_SEED: u64 = 17;
/// Directions and seed of the sliced Wasserstein distance.
const SLICES: usize = 200;
const SLICE_SEED: u64 = 0;
/// Seed of the data draws that 2-D samples are compared with.
const POINTS_SEED: u64 = 12345;

/// Which distance samples get.
#[derive(Debug, Clone, PartialEq)]
pub enum Measure {
    /// 2-D points: sliced W2 to this data set.
    Points(DataConfig),
    /// The embedded digits: the classifier Frechet distance (and FID/IS if weights exist).
    Digits,
    /// Fashion-MNIST (its files in this directory, or Debian's package): FD and KID in
    /// classifier features against the test split, with the floor.
    Fashion(Option<PathBuf>),
    /// Images: FID and IS through Inception.
    Inception,
}

impl Measure {
    /// The measure for a model trained on `data`.
    pub fn for_data(data: &DataConfig) -> Self {
        if ddpm_data::EMBEDDED_POINTS.contains(&data.dataset.as_str()) {
            Self::Points(data.clone())
        } else if data.dataset == "digits" {
            Self::Digits
        } else if data.dataset == "fashion-mnist" {
            Self::Fashion(data.path.clone())
        } else {
            Self::Inception
        }
    }

    /// Checks what this measure will need before any sample is drawn, so that a missing or
    /// damaged input stops the command in a second rather than after hours of sampling: for
    /// Inception, the weights at `inception` load, and a `reference` statistics file (`.npz`)
    /// opens and holds pytorch-fid's `mu` and `sigma`. (The digits measure uses Inception only
    /// when its weights exist.)
    pub fn check_inputs(&self, inception: &Path, reference: Option<&str>) -> Result<()> {
        if *self != Measure::Inception {
            return Ok(());
        }
        FidInception::load(inception, Device::Cpu)?;
        if let Some(r) = reference.filter(|r| r.ends_with(".npz")) {
            let names = ddpm_io::npy::npz_names(Path::new(r))?;
            if let Some(missing) =
                ["mu", "sigma"].into_iter().find(|k| !names.iter().any(|n| n == k))
            {
                return Err(EvalError::Samples(format!(
                    "--ref {r}: no array {missing:?} (it holds {}): not pytorch-fid statistics",
                    names.join(", ")
                )));
            }
        }
        Ok(())
    }

    /// The measure for existing samples compared with `reference` (`--ref`): points for 2-D
    /// samples (`reference` names their data set), digits for `--ref digits`, Fashion-MNIST
    /// for `--ref fashion-mnist`, else Inception.
    pub fn for_samples(samples: &Samples, reference: Option<&str>) -> Result<Self> {
        if samples.are_points() {
            let r = reference.ok_or_else(|| {
                EvalError::Samples("--ref: name the 2-D data set to compare with".into())
            })?;
            return Ok(Self::Points(ddpm_data::config_from_arg(r)));
        }
        Ok(match reference {
            Some("digits") => Self::Digits,
            Some("fashion-mnist") => Self::Fashion(None),
            _ => Self::Inception,
        })
    }

    /// How many samples the distance compares by default: the 898-image half of the digits,
    /// 2,000 points, the 10,000 of Fashion-MNIST's test split, or the standard 50,000 for FID.
    pub fn default_num(&self) -> Result<usize> {
        Ok(match self {
            Self::Digits => ddpm_data::load(&DataConfig::default())?.0.len() / 2,
            Self::Points(_) => 2000,
            Self::Fashion(_) => crate::fashion::MAX_N,
            Self::Inception => 50_000,
        })
    }
}

/// How the samples were made and measured (`fid.json`'s `protocol`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Protocol {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint_step: Option<u64>,
    /// "ema" or "raw".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weights: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sampler: Option<ddpm_sample::SamplerOptions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    pub n: usize,
    /// The samples' file or folder.
    pub samples: String,
    #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ref_sha256: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inception: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inception_sha256: Option<String>,
    /// The Inception metrics asked for (`--metrics`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub features: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_splits: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inception_images_per_s: Option<f64>,
    /// Processes that shared the Inception work (absent for one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ranks: Option<usize>,
}

/// The classifier Frechet distance of digit samples.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct DigitsDistance {
    /// Samples vs one half of the data.
    #[serde(rename = "digits_fd")]
    pub fd: f64,
    /// The other half of the data vs the same half, at the same size: what "as good as the
    /// data" scores.
    #[serde(rename = "digits_fd_data_halves")]
    pub data_halves: f64,
    /// Images compared on each side.
    #[serde(rename = "digits_fd_images")]
    pub images: usize,
    /// The classifier's accuracy on its held-out fifth.
    #[serde(rename = "digits_classifier_accuracy")]
    pub classifier_accuracy: f64,
}

/// The sliced Wasserstein distance of 2-D samples.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct PointsDistance {
    pub sliced_wasserstein: f64,
    pub sliced_wasserstein_data_vs_data: f64,
}

/// Everything `ddpm-eval fid` measured (`fid.json`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct FidReport {
    pub protocol: Protocol,
    #[serde(flatten)]
    pub digits: Option<DigitsDistance>,
    #[serde(flatten)]
    pub points: Option<PointsDistance>,
    #[serde(flatten)]
    pub fashion: Option<crate::fashion::FashionDistance>,
    /// FID, IS, sFID, precision and recall, as selected (`--metrics`).
    #[serde(flatten)]
    pub inception: Option<MetricValues>,
    /// Why Inception metrics are absent, when they are.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inception_skipped: Option<String>,
}

/// One number of a [`FidReport`] under the name `eval.jsonl` and the sampler sweep give it,
/// with what the data itself scores where the measure has that.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Headline {
    pub metric: &'static str,
    pub value: f64,
    /// The data's own score at the same n: the floor (Fashion-MNIST), the other data half
    /// (digits), two independent data draws (2-D points).
    pub floor: Option<f64>,
    pub higher_is_better: bool,
}

impl FidReport {
    /// The report's numbers, the run's own measure first (the one a run keeps its best
    /// checkpoint by): sliced_w2, digits_fd, fashion_fd and fashion_kid, fid and
    /// inception_score, whichever were measured.
    pub fn headlines(&self) -> Vec<Headline> {
        let line =
            |metric, value, floor| Headline { metric, value, floor, higher_is_better: false };
        let mut v = Vec::new();
        if let Some(p) = &self.points {
            v.push(line(
                "sliced_w2",
                p.sliced_wasserstein,
                Some(p.sliced_wasserstein_data_vs_data),
            ));
        }
        if let Some(d) = &self.digits {
            v.push(line("digits_fd", d.fd, Some(d.data_halves)));
        }
        if let Some(f) = &self.fashion {
            v.push(line("fashion_fd", f.fd, Some(f.floor_fd)));
            v.push(line("fashion_kid", f.kid_mean, Some(f.floor_kid)));
        }
        if let Some(m) = &self.inception {
            if let Some(fid) = m.fid {
                v.push(line("fid", fid, None));
            }
            if let Some(is) = m.is_mean {
                v.push(Headline { higher_is_better: true, ..line("inception_score", is, None) });
            }
        }
        v
    }

    /// The lines a person reads.
    pub fn summary(&self) -> Vec<String> {
        let mut v = Vec::new();
        if let Some(p) = &self.points {
            v.push(format!(
                "sliced W2 to the data: {:.4} (two independent data draws: {:.4})",
                p.sliced_wasserstein, p.sliced_wasserstein_data_vs_data
            ));
        }
        if let Some(d) = &self.digits {
            v.push(format!(
                "digits FD (classifier features), {} samples vs half the data: {:.3} (the other half of the data: {:.3}; classifier held-out accuracy {:.1} %)",
                d.images,
                d.fd,
                d.data_halves,
                100.0 * d.classifier_accuracy
            ));
        }
        if let Some(f) = &self.fashion {
            v.push(f.summary());
        }
        if let Some(s) = &self.inception_skipped {
            v.push(format!("FID/IS skipped: {s}"));
        }
        if let Some(m) = &self.inception {
            let n = self.protocol.n;
            let r = self.protocol.reference.as_deref().unwrap_or("?");
            let mut parts = Vec::new();
            if let Some(f) = m.fid {
                parts.push(format!("FID {f:.4}"));
            }
            if let (Some(mean), Some(std)) = (m.is_mean, m.is_std) {
                parts.push(format!("IS {mean:.3} +- {std:.3}"));
            }
            if let Some(f) = m.sfid {
                parts.push(format!("sFID {f:.4}"));
            }
            if let (Some(p), Some(rc)) = (m.precision, m.recall) {
                parts.push(format!("precision {p:.4}  recall {rc:.4}"));
            }
            v.push(format!("{}  ({n} samples vs {r})", parts.join("  ")));
            if n < 50_000 {
                v.push(format!(
                    "note: {n} samples; published FIDs use 50,000 (FID is biased upwards at smaller n)"
                ));
            }
        }
        v
    }

    /// Writes `fid.json` into `dir` (atomically) and returns its path.
    pub fn write(&self, dir: &Path) -> Result<PathBuf> {
        let path = dir.join("fid.json");
        let text = serde_json::to_string_pretty(self).expect("serialises");
        ddpm_io::write_atomic(&path, text.as_bytes()).map_err(crate::error::io(&path))?;
        Ok(path)
    }
}

/// Sliced W2 of 2-D `samples` [N, 2] to 2N fresh points of `data`, beside the distance between
/// the two halves of those points.
pub fn points_distance(samples: &Tensor, data: &DataConfig) -> Result<PointsDistance> {
    let n = samples.size()[0] as usize;
    let cfg = DataConfig { num_points: 2 * n, seed: POINTS_SEED, ..data.clone() };
    let pts = ddpm_data::load(&cfg)?.0.points_xy(usize::MAX);
    let values = Vec::<f32>::try_from(samples.to_device(Device::Cpu).flatten(0, -1))
        .map_err(|e| EvalError::Samples(format!("samples: {e}")))?;
    let samples: Vec<[f32; 2]> = values.chunks(2).map(|c| [c[0], c[1]]).collect();
    let half = pts.len() / 2;
    Ok(PointsDistance {
        sliced_wasserstein: distance2d::sliced_wasserstein(
            &samples,
            &pts[..half],
            SLICES,
            SLICE_SEED,
        ),
        sliced_wasserstein_data_vs_data: distance2d::sliced_wasserstein(
            &pts[half..],
            &pts[..half],
            SLICES,
            SLICE_SEED,
        ),
    })
}

/// The classifier Frechet distance of digit `samples` ([N, 1, 8, 8] in [0, 1]): samples and one
/// seeded half of the data are both compared with the other half, at the same size (FD is
/// biased upwards at small n, so like is compared with like).
pub fn digits_distance(samples: &Tensor, device: Device) -> Result<DigitsDistance> {
    let Dataset::Images(digits) = ddpm_data::load(&DataConfig::default())?.0 else {
        return Err(EvalError::Samples("the digits data set holds no images".into()));
    };
    let clf = DigitsClassifier::trained(&digits, device)?;
    let _g = tch::no_grad_guard();
    let data_feats = clf.features(&images::from_dataset(&digits)).to_device(Device::Cpu);
    let mut order: Vec<i64> = (0..data_feats.size()[0]).collect();
    ddpm_core::rng::SplitMix64::new(DIGITS_SPLIT_SEED).shuffle(&mut order);
    let data_feats = data_feats.index_select(0, &Tensor::from_slice(&order));
    let sample_feats = clf.features(samples).to_device(Device::Cpu);
    let half = data_feats.size()[0] / 2;
    let m = half.min(sample_feats.size()[0]);
    let reference = Stats::from_features(&data_feats.narrow(0, half, data_feats.size()[0] - half))?;
    let fd = frechet_distance(&Stats::from_features(&sample_feats.narrow(0, 0, m))?, &reference)?;
    let base = frechet_distance(&Stats::from_features(&data_feats.narrow(0, 0, m))?, &reference)?;
    Ok(DigitsDistance {
        fd,
        data_halves: base,
        images: m as usize,
        classifier_accuracy: clf.held_out_accuracy,
    })
}

/// The selected Inception metrics of `samples` ([N, C, H, W] in [0, 1]) against the reference,
/// the Inception work shared by the ranks of `dist`; fills the Inception part of `protocol`.
/// Rank 0 gets the metrics, the other ranks `None`.
pub fn inception_metrics(
    samples: &Samples,
    net: &FidInception,
    opts: &EvalOptions,
    reference_spec: &str,
    protocol: &mut Protocol,
    dist: &Dist,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Option<MetricValues>> {
    samples.check_images("samples")?;
    let weights_sha = sha256_file(&opts.inception)?;
    let metrics = opts.metrics;
    let batch = opts.batch_size;
    let r = crate::reference::reference(
        reference_spec,
        opts.ref_features.as_deref(),
        metrics,
        net,
        &weights_sha,
        batch,
        dist,
        progress,
    )?;
    let n = samples.len();
    if dist.is_main() {
        tracing::info!("Inception features of {n} samples ({metrics})");
    }
    let started = std::time::Instant::now();
    let needs = Needs { spatial: metrics.sfid, is: metrics.is, pool3_rows: metrics.pr };
    let f = inception_pass(net, samples, batch, dist, needs, progress)?;
    let rate = n as f64 / started.elapsed().as_secs_f64();
    let Some((r, ref_desc, ref_sha)) = r else { return Ok(None) };
    let values = metrics_from_pass(&f, &r, metrics, net.vs.device())?;
    protocol.reference = Some(ref_desc);
    protocol.ref_sha256 = Some(ref_sha);
    protocol.inception = Some(opts.inception.display().to_string());
    protocol.inception_sha256 = Some(weights_sha);
    protocol.metrics = Some(opts.metrics.to_string());
    protocol.features = Some(
        "pool3, 2048-d (FID, IS, precision/recall k=3); Mixed_6d.branch1x1[:7] 17x17, 2023-d (sFID); bilinear resize to 299 (align_corners=false); float samples, not re-quantised"
            .into(),
    );
    protocol.is_splits = opts.metrics.is.then_some(10);
    protocol.inception_images_per_s = Some(rate);
    protocol.ranks = dist.backend().is_some().then(|| dist.world_size());
    Ok(Some(values))
}

/// Where and how to measure.
#[derive(Debug, Clone)]
pub struct EvalOptions {
    pub device: Device,
    /// Converted Inception weights.
    pub inception: PathBuf,
    /// Reference for FID: a statistics `.npz`, an image folder or a data set.
    pub reference: Option<String>,
    /// Images per Inception batch.
    pub batch_size: usize,
    /// The Inception metrics to compute.
    pub metrics: Metrics,
    /// The reference's pool3 features (precision/recall with a statistics `.npz` reference).
    pub ref_features: Option<PathBuf>,
    /// The Fashion-MNIST measure's reference side, built at its first use and kept.
    pub fashion: crate::fashion::FashionCache,
}

/// Measures `samples` as `measure` says, into a report carrying `protocol` (one process).
pub fn evaluate(
    samples: &Samples,
    measure: &Measure,
    opts: &EvalOptions,
    protocol: Protocol,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<FidReport> {
    let single = Dist::single(opts.device);
    let report = evaluate_sharded(samples, measure, opts, protocol, &single, progress)?;
    Ok(report.expect("one process is rank 0"))
}

/// As [`evaluate`], as one rank of `dist` (every rank calls it, with the same samples or, for
/// [`Samples::Shard`], each with its share): the Inception work is shared (see
/// [`inception_pass`]; each rank reads only its batches); rank 0 alone computes the distances
/// and gets the report, the other ranks `None`.
pub fn evaluate_sharded(
    samples: &Samples,
    measure: &Measure,
    opts: &EvalOptions,
    mut protocol: Protocol,
    dist: &Dist,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Option<FidReport>> {
    protocol.n = samples.len();
    let main = dist.is_main();
    let mut report = FidReport::default();
    match measure {
        Measure::Points(data) => {
            let all = samples.gather(dist)?;
            if !main {
                return Ok(None);
            }
            protocol.reference = Some(data.dataset.clone());
            report.points = Some(points_distance(&all, data)?);
            report.protocol = protocol;
            return Ok(Some(report));
        }
        Measure::Digits => {
            let all = samples.gather(dist)?;
            if main {
                report.digits = Some(digits_distance(&all, opts.device)?);
            }
        }
        Measure::Fashion(dir) => {
            // Its own feature network only: Inception on 28x28 garments is not this measure.
            let all = samples.gather(dist)?;
            if !main {
                return Ok(None);
            }
            protocol.reference = Some("fashion-mnist test split (10,000 images)".into());
            let reference = opts.fashion.get(dir.as_deref(), opts.device)?;
            report.fashion = Some(reference.distance(&all)?);
            report.protocol = protocol;
            return Ok(Some(report));
        }
        Measure::Inception => {}
    }
    let net = match FidInception::load(&opts.inception, opts.device) {
        Ok(n) => n,
        Err(e @ EvalError::MissingWeights(_)) if *measure == Measure::Digits => {
            report.inception_skipped = Some(e.to_string());
            report.protocol = protocol;
            return Ok(main.then_some(report));
        }
        Err(e) => return Err(e),
    };
    let reference = opts.reference.as_deref().ok_or_else(|| {
        EvalError::Samples(
            "--ref: give reference statistics (.npz), an image folder or a data set".into(),
        )
    })?;
    report.inception =
        inception_metrics(samples, &net, opts, reference, &mut protocol, dist, progress)?;
    report.protocol = protocol;
    Ok(main.then_some(report))
}
