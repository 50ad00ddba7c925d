//! The samples a measure reads, wherever they are, so that no rank holds more of them than the
//! batch it is measuring: a `samples.npz` on disk is read a batch at a time by the rank that
//! measures that batch ([`ddpm_io::npy::NpzRows`]); training's evaluation keeps each rank's
//! own share in memory. The small measures (the digits classifier, 2-D distances) still take
//! the whole set, which is small by nature.

use crate::error::{EvalError, Result};
use crate::images;
use ddpm_dist::Dist;
use ddpm_io::npy::NpzRows;
use std::ops::Range;
use std::path::Path;
use tch::{Device, Tensor};

/// Images ([N, C, H, W] in [0, 1]) or 2-D points ([N, 2]) to measure.
#[derive(Debug)]
pub enum Samples {
    /// All of them in memory, on every rank.
    Memory(Tensor),
    /// This rank's contiguous share `range` of `n` samples ([`Dist::shard`]), in memory: each
    /// rank of training's evaluation sampled its own.
    Shard { local: Tensor, range: Range<usize>, n: usize },
    /// The images of a `samples.npz` (array `samples`, float32 in [-1, 1]), read per batch.
    Npz(NpzRows),
}

impl Samples {
    /// The array `samples` of a `samples.npz`: images stay on disk and are read per batch
    /// (float32 stored entries; others are read whole), 2-D points are read whole.
    pub fn from_npz(path: &Path) -> Result<Self> {
        let rows = NpzRows::open(path, "samples")?;
        match rows.shape.as_slice() {
            [n, 2] => {
                let (_, values) = ddpm_io::npy::read_array(path, "samples")?;
                Ok(Self::Memory(Tensor::from_slice(&values).view([*n as i64, 2])))
            }
            [_, c, _, _] if rows.is_f32 => {
                images::check_channels(*c as i64, &path.display().to_string())?;
                Ok(Self::Npz(rows))
            }
            [_, _, _, _] => Ok(Self::Memory(images::from_npz(path)?)),
            shape => Err(EvalError::Samples(format!(
                "{}: samples must be N x C x H x W images or N x 2 points, got shape {shape:?}",
                path.display()
            ))),
        }
    }

    /// How many samples there are in all.
    pub fn len(&self) -> usize {
        match self {
            Self::Memory(t) => t.size()[0] as usize,
            Self::Shard { n, .. } => *n,
            Self::Npz(r) => r.shape[0],
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// One sample's shape.
    pub fn sample_shape(&self) -> Vec<i64> {
        match self {
            Self::Memory(t) | Self::Shard { local: t, .. } => t.size()[1..].to_vec(),
            Self::Npz(r) => r.shape[1..].iter().map(|&d| d as i64).collect(),
        }
    }

    /// Whether these are 2-D points.
    pub fn are_points(&self) -> bool {
        self.sample_shape().len() == 1
    }

    /// Images N x C x H x W with a channel count Inception takes (see [`images::check_images`]).
    pub fn check_images(&self, origin: &str) -> Result<()> {
        let shape = self.sample_shape();
        if shape.len() != 3 {
            return Err(EvalError::Samples(format!(
                "{origin}: images must be N x C x H x W, got samples of shape {shape:?}"
            )));
        }
        images::check_channels(shape[0], origin)
    }

    /// This rank's batches of `batch` samples as (first, count), first a global index, in
    /// order: of a set every rank can read, the contiguous share of the batches
    /// ([`Dist::shard`] of the batch count: a batch holds the same images whichever rank runs
    /// it); of a [`Samples::Shard`], its own range cut into batches.
    pub fn batches(&self, batch: usize, dist: &Dist) -> Vec<(usize, usize)> {
        let batch = batch.max(1);
        let cut = |range: Range<usize>| -> Vec<(usize, usize)> {
            range.clone().step_by(batch).map(|f| (f, batch.min(range.end - f))).collect()
        };
        match self {
            Self::Shard { range, .. } => cut(range.clone()),
            _ => {
                let n = self.len();
                let mine = dist.shard(n.div_ceil(batch));
                cut((mine.start * batch).min(n)..(mine.end * batch).min(n))
            }
        }
    }

    /// Samples `first..first + count` (one of this rank's batches), images in [0, 1].
    pub fn rows(&self, first: usize, count: usize) -> Result<Tensor> {
        match self {
            Self::Memory(t) => Ok(t.narrow(0, first as i64, count as i64)),
            Self::Shard { local, range, .. } => {
                if first < range.start || first + count > range.end {
                    return Err(EvalError::Samples(format!(
                        "samples {first}..{} are not this rank's ({range:?})",
                        first + count
                    )));
                }
                Ok(local.narrow(0, (first - range.start) as i64, count as i64))
            }
            Self::Npz(r) => {
                let values = r.read_rows(first, count)?;
                let mut shape = vec![count as i64];
                shape.extend(self.sample_shape());
                Ok((Tensor::from_slice(&values).view(shape.as_slice()) + 1.0) / 2.0)
            }
        }
    }

    /// Every sample, on every rank (every rank calls it: for a [`Samples::Shard`] it is a
    /// collective). For the measures whose sets are small: the digits, 2-D points.
    pub fn gather(&self, dist: &Dist) -> Result<Tensor> {
        match self {
            Self::Memory(t) => Ok(t.shallow_clone()),
            Self::Shard { local, .. } => {
                Ok(dist.all_gather_rows(&local.to_device(dist.device()))?.to_device(Device::Cpu))
            }
            Self::Npz(_) => self.rows(0, self.len()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    /// The three kinds of sample set give the same batches' rows: in memory, a rank's shard,
    /// and a samples.npz read per batch.
    #[test]
    fn memory_shard_and_npz_samples_give_the_same_rows() {
        let dir = ddpm_testkit::temp_dir("samples-kinds");
        let x = (Tensor::arange(7 * 3 * 4 * 4, (Kind::Float, Device::Cpu)) * 0.1).sin();
        let x = x.view([7, 3, 4, 4]);
        let p = dir.join("samples.npz");
        let v = Vec::<f32>::try_from(x.flatten(0, -1)).unwrap();
        ddpm_io::npy::write_npz(&p, &[("samples", &[7, 3, 4, 4][..], &v[..])], false).unwrap();
        let in01 = (&x + 1.0) / 2.0;
        let single = Dist::single(Device::Cpu);
        let npz = Samples::from_npz(&p).unwrap();
        assert!(matches!(npz, Samples::Npz(_)));
        let mem = Samples::Memory(in01.shallow_clone());
        let shard = Samples::Shard { local: in01.narrow(0, 2, 4), range: 2..6, n: 7 };
        assert_eq!(npz.batches(3, &single), vec![(0, 3), (3, 3), (6, 1)]);
        assert_eq!(shard.batches(3, &single), vec![(2, 3), (5, 1)]);
        for (f, c) in npz.batches(3, &single) {
            assert!(npz.rows(f, c).unwrap().allclose(&mem.rows(f, c).unwrap(), 1e-7, 1e-7, false));
        }
        assert!(shard.rows(5, 1).unwrap().equal(&in01.narrow(0, 5, 1)));
        assert!(shard.rows(1, 2).is_err(), "rows outside the shard");
        assert!(npz.gather(&single).unwrap().allclose(&in01, 1e-7, 1e-7, false));
        assert_eq!((npz.len(), npz.sample_shape()), (7, vec![3, 4, 4]));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
