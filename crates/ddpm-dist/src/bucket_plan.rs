//! Which tensors travel together in one flat buffer: DDP's bucketing (`bucket_cap_mb` = 25 MiB
//! per device and dtype, in the caller's order), shared by the gradient mean
//! ([`crate::GradReducer`]) and the parameter broadcast ([`crate::Dist::broadcast_parameters`]).

use tch::{Device, Kind, Tensor};

/// DDP's default bucket size: `bucket_cap_mb = 25`, i.e. 25 MiB.
pub const DEFAULT_BUCKET_CAP_BYTES: usize = 25 * 1024 * 1024;

/// Tensors that travel together: same device and dtype, indices in the caller's order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct BucketPlan {
    pub members: Vec<usize>,
    pub numel: i64,
    pub kind: Kind,
    pub device: Device,
}

/// Packs tensors, in order, into buckets of at most `cap_bytes` per (device, dtype); a tensor
/// larger than the cap gets a bucket of its own (as in DDP).
pub(crate) fn plan(tensors: &[Tensor], cap_bytes: usize) -> Vec<BucketPlan> {
    let mut done: Vec<BucketPlan> = Vec::new();
    let mut open: Vec<BucketPlan> = Vec::new();
    for (i, t) in tensors.iter().enumerate() {
        let (kind, device, numel) = (t.kind(), t.device(), t.numel() as i64);
        let elt = kind.elt_size_in_bytes() as i64;
        let slot = open.iter().position(|b| b.kind == kind && b.device == device);
        if let Some(s) = slot
            && (open[s].numel + numel) * elt > cap_bytes as i64
        {
            done.push(open.remove(s));
        }
        match open.iter_mut().find(|b| b.kind == kind && b.device == device) {
            Some(b) => {
                b.members.push(i);
                b.numel += numel;
            }
            None => open.push(BucketPlan { members: vec![i], numel, kind, device }),
        }
    }
    done.extend(open);
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(n: i64, kind: Kind) -> Tensor {
        Tensor::zeros([n], (kind, Device::Cpu))
    }

    #[test]
    fn buckets_fill_in_order_up_to_the_cap_per_dtype() {
        // 4-byte floats, 40-byte cap: 10 elements per bucket.
        let ts = [t(4, Kind::Float), t(4, Kind::Float), t(3, Kind::Double), t(4, Kind::Float)];
        let got: Vec<(Vec<usize>, i64)> =
            plan(&ts, 40).into_iter().map(|b| (b.members, b.numel)).collect();
        // f32: [0, 1] = 8 elements, then 3 would make 12 > 10; f64: [2] = 24 bytes.
        assert_eq!(got, vec![(vec![0, 1], 8), (vec![2], 3), (vec![3], 4)]);
        // A tensor larger than the cap gets its own bucket; an exact fit stays.
        let ts = [t(2, Kind::Float), t(30, Kind::Float), t(10, Kind::Float)];
        let got: Vec<Vec<usize>> = plan(&ts, 40).into_iter().map(|b| b.members).collect();
        assert_eq!(got, vec![vec![0], vec![1], vec![2]]);
        assert_eq!(plan(&[t(10, Kind::Float)], 40).len(), 1);
    }

    #[test]
    fn default_cap_splits_the_cifar10_gradient_volume_into_six_buckets() {
        // 35,746,307 f32 = 143 MB: ceil(143e6 / 26.2e6) buckets when tensors are small.
        let ts: Vec<Tensor> = (0..35).map(|_| t(1_021_323, Kind::Float)).collect();
        let n: i64 = plan(&ts, DEFAULT_BUCKET_CAP_BYTES).iter().map(|b| b.numel).sum();
        assert_eq!(n, 35 * 1_021_323);
        assert_eq!(plan(&ts, DEFAULT_BUCKET_CAP_BYTES).len(), 6);
    }
}
