//! Gradient averaging over ranks in flat buckets, as PyTorch's DistributedDataParallel does it
//! (torch/csrc/distributed/c10d/reducer.cpp): gradients are packed into contiguous buckets of
//! about `bucket_cap_mb` = 25 MiB, each bucket is all-reduced by one collective, and the sums,
//! divided by the world size, are copied back into the `.grad` tensors.
//!
//! Differences from DDP, on purpose: DDP fills buckets in reverse parameter order and launches
//! each all-reduce from an autograd hook as soon as its bucket is ready, overlapping
//! communication with the rest of the backward pass; we all-reduce after `backward()` returns
//! (no overlap), so parameter order is as good as any. DDP multiplies by 1 / world size while
//! copying into the bucket; we divide the sum while copying it back (the same number of passes
//! over memory; bit-identical for 2 ranks).

use crate::bucket_plan::{DEFAULT_BUCKET_CAP_BYTES, plan};
use crate::error::{DistError, Result};
use crate::group::Dist;
use tch::Tensor;

/// Averages gradients over ranks (DDP's reducer without the overlap): built once from the
/// parameters, it owns one flat buffer per bucket on the parameters' device and dtype, and each
/// [`GradReducer::all_reduce_mean`] does, per bucket, one pack kernel, one all-reduce, and one
/// pass that divides by the world size while copying back, with no host read; the packing and
/// unpacking of one bucket overlap the all-reduces of the others.
#[derive(Debug)]
pub struct GradReducer {
    buckets: Vec<Bucket>,
    shapes: Vec<Vec<i64>>,
}

#[derive(Debug)]
struct Bucket {
    flat: Tensor,
    members: Vec<usize>,
}

impl GradReducer {
    /// Buckets of DDP's default 25 MiB for `params` (their gradients have their device and
    /// dtype).
    pub fn new(params: &[Tensor]) -> Result<Self> {
        Self::with_bucket_cap(params, DEFAULT_BUCKET_CAP_BYTES)
    }

    /// Buckets of at most `cap_bytes` (DDP's `bucket_cap_mb * 2^20`).
    pub fn with_bucket_cap(params: &[Tensor], cap_bytes: usize) -> Result<Self> {
        let buckets = plan(params, cap_bytes)
            .into_iter()
            .map(|b| {
                let flat = Tensor::f_zeros([b.numel], (b.kind, b.device))?;
                Ok(Bucket { flat, members: b.members })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { buckets, shapes: params.iter().map(|p| p.size()).collect() })
    }

    /// Number of buckets, i.e. of collectives per [`GradReducer::all_reduce_mean`].
    pub fn num_buckets(&self) -> usize {
        self.buckets.len()
    }

    /// Elements in each bucket.
    pub fn bucket_numels(&self) -> Vec<i64> {
        self.buckets.iter().map(|b| b.flat.numel() as i64).collect()
    }

    /// `p.grad <- (sum over ranks of p.grad) / world_size` for every parameter, after
    /// `backward()` on every rank. The identity without a group ([`Dist::single`]). Every parameter must
    /// have a gradient (checked before any communication).
    pub fn all_reduce_mean(&self, dist: &Dist, params: &[Tensor]) -> Result<()> {
        if params.len() != self.shapes.len() {
            return Err(DistError::Mismatch {
                what: "parameters given to the gradient reducer",
                expected: format!("{} tensors", self.shapes.len()),
                got: format!("{}", params.len()),
            });
        }
        if dist.backend().is_none() {
            return Ok(());
        }
        let mut grads = Vec::with_capacity(params.len());
        for (index, (p, shape)) in params.iter().zip(&self.shapes).enumerate() {
            if &p.size() != shape {
                return Err(DistError::Mismatch {
                    what: "parameter shape",
                    expected: format!("{shape:?} for parameter {index}"),
                    got: format!("{:?}", p.size()),
                });
            }
            let g = p.grad();
            if !g.defined() {
                return Err(DistError::MissingGrad { index, shape: shape.clone() });
            }
            grads.push(g);
        }
        let world = dist.world_size() as f64;
        let members = |b: &Bucket| -> Vec<Tensor> {
            b.members.iter().map(|&i| grads[i].shallow_clone()).collect()
        };
        tch::no_grad(|| {
            // Pack and start every bucket, then finish them in order: packing bucket k + 1 and
            // unpacking bucket k overlap the all-reduces still running on the backend's threads.
            let mut started = Vec::with_capacity(self.buckets.len());
            for bucket in &self.buckets {
                ddpm_shim::dist::flat_pack(&bucket.flat, &members(bucket))?;
                started.push(dist.start_all_reduce(&bucket.flat)?);
            }
            for (bucket, s) in self.buckets.iter().zip(started) {
                dist.finish(s)?;
                ddpm_shim::dist::flat_unpack_div(&bucket.flat, &members(bucket), world)?;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn single_process_reducer_leaves_gradients_alone_and_checks_its_inputs() {
        let p = Tensor::ones([3], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        (&p * 2.0).sum(Kind::Float).backward();
        let r = GradReducer::new(std::slice::from_ref(&p)).unwrap();
        assert_eq!(r.num_buckets(), 1);
        let dist = Dist::single(Device::Cpu);
        r.all_reduce_mean(&dist, std::slice::from_ref(&p)).unwrap();
        assert_eq!(Vec::<f32>::try_from(p.grad()).unwrap(), vec![2.0; 3]);
        let e = r.all_reduce_mean(&dist, &[]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "parameters given to the gradient reducer: expected 1 tensors, got 0"
        );
    }
}
