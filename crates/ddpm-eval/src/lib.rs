//! # ddpm-eval
//!
//! Measuring samples the way papers do: FID (Heusel et al. 2017) and Inception Score through a
//! port of pytorch-fid's Inception-v3 that agrees with it feature for feature; the Frechet
//! distance in f64 through symmetric eigendecompositions; pytorch-fid compatible statistics
//! files; NLL in bits/dim from the full variational bound; and, for the embedded data sets
//! where Inception makes no sense, a digit-classifier Frechet distance and a sliced
//! Wasserstein distance for 2-D points; for Fashion-MNIST, FD and KID in the features of a
//! classifier trained on it, beside the data's own floor ([`fashion`]). sFID and precision/recall follow guided-diffusion's
//! evaluator ([`metrics`] computes a selection of them from one Inception pass).

pub mod args;
pub mod digits_classifier;
pub mod distance2d;
pub mod error;
pub mod fashion;
pub mod fashion_classifier;
pub mod feature_file;
pub mod fid;
pub mod fid_request;
pub mod images;
pub mod inception;
pub mod inception_score;
pub mod kid;
pub mod metrics;
pub mod nll;
pub mod precision_recall;
pub mod protocol;
pub mod reference;
pub mod samples;
pub mod sharded;
pub mod sweep;
pub mod sweep_report;

pub use error::{EvalError, Result};
pub use fid::{Stats, frechet_distance, spatial_frechet_distance};
pub use fid_request::FidRequest;
pub use inception::FidInception;
pub use metrics::{MetricValues, Metrics, Reference, reference_from_images};
pub use samples::Samples;

/// Hex SHA-256 of a file (recorded in results so that protocols can be compared).
pub fn sha256_file(path: &std::path::Path) -> Result<String> {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(error::io(path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(error::io(path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}
