//! Batches prepared off the training thread, exactly reproducible and resumable, sharded by rank.
//!
//! Epoch e visits the permutation of 0..N drawn from (seed, e), the same on every rank, in
//! global batches of G = B * W positions (B per rank, W ranks; the last partial one is
//! dropped). Row j of rank r's batch is row [`global_row`]`(r, W, j)` = r + W j of the global
//! batch, so the ranks' batches together are exactly the global batch one process with batch
//! G would take. Whether the image at permutation position k is mirrored comes from
//! `derive_seed(seed, [e, k])`, so it depends neither on the rank nor on batching.
//!
//! A [`LoaderState`] counts global batches, not a rank's own: it is the same on every rank, and
//! a state saved under one world size restarts the stream exactly there under any other with
//! the same global batch (floor(floor(N / W) / B) = floor(N / G) batches per epoch whatever W).

use crate::dataset::{Dataset, scale};
use crate::error::{DataError, Result};
use ddpm_core::rng::{SplitMix64, derive_seed};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

/// Where the stream stands (serialisable, for checkpoints): the epoch, and how many global
/// batches of it all ranks together have consumed, i.e. permutation positions
/// 0..position * G are used (G = `batch_size * world_size`, the run's `optim.batch_size`).
/// Independent of the world size; single-process checkpoints from before data parallelism
/// wrote the same numbers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoaderState {
    pub epoch: u64,
    /// Global batches of the epoch consumed.
    pub position: u64,
}

/// How batches are drawn. The global batch is `batch_size * world_size`.
#[derive(Debug, Clone, PartialEq)]
pub struct LoaderOptions {
    /// Per-rank batch size.
    pub batch_size: usize,
    /// Seed of the data order and of the flips (the same on every rank).
    pub seed: u64,
    /// This process's rank in 0..world_size.
    pub rank: usize,
    /// Number of data-parallel processes.
    pub world_size: usize,
    /// Mirror images horizontally with probability 1/2 (ignored for points).
    pub random_flip: bool,
    /// Drop each epoch's last partial batch. Must be true, the only mode: every batch then has
    /// one shape, and every rank takes the same number of steps per epoch.
    pub drop_last: bool,
    /// Batches prepared ahead of the consumer (at least 1).
    pub prefetch: usize,
}

impl Default for LoaderOptions {
    /// The paper's CIFAR-10 batch of 128 on one process, no flips, 4 batches prefetched.
    fn default() -> Self {
        Self {
            batch_size: 128,
            seed: 0,
            rank: 0,
            world_size: 1,
            random_flip: false,
            drop_last: true,
            prefetch: 4,
        }
    }
}

/// One batch, flattened: x is [B, C, H, W] (or [B, dim]) in [-1, 1].
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub x: Vec<f32>,
    /// Class labels of labeled image sets.
    pub labels: Option<Vec<i64>>,
    /// [B, C, H, W] or [B, dim].
    pub shape: Vec<usize>,
    /// The state to checkpoint after consuming this batch.
    pub state_after: LoaderState,
}

/// Batches per epoch for each rank: floor(floor(n / world_size) / batch_size).
pub fn batches_per_epoch(n: usize, batch_size: usize, world_size: usize) -> u64 {
    (n / world_size.max(1) / batch_size.max(1)) as u64
}

/// The row of the global batch (of `world_size` ranks' batches) that row `j` of rank `rank`'s
/// batch holds: `rank + world_size * j`. Whatever is drawn per example for the global batch
/// (noise, timesteps, label dropout) is taken at these rows, so ranks reproduce one process.
pub fn global_row(rank: usize, world_size: usize, j: usize) -> usize {
    rank + world_size * j
}

/// Whether the sample at position `k` of epoch `epoch`'s permutation is mirrored.
pub fn flips(seed: u64, epoch: u64, k: u64) -> bool {
    derive_seed(seed, &[epoch, k]) >> 63 == 1
}

/// The permutation of epoch `epoch`: Fisher-Yates driven by `SplitMix64::derived(seed, [epoch])`.
pub fn epoch_permutation(n: usize, seed: u64, epoch: u64) -> Vec<u32> {
    let mut perm: Vec<u32> = (0..n as u32).collect();
    SplitMix64::derived(seed, &[epoch]).shuffle(&mut perm);
    perm
}

/// Batch `state.position` of epoch `state.epoch` for the options' rank, given that epoch's
/// permutation. `lut` maps a pixel byte to its value in [-1, 1].
fn make_batch(
    data: &Dataset,
    o: &LoaderOptions,
    perm: &[u32],
    lut: &[f32; 256],
    state: LoaderState,
) -> Batch {
    let b = o.batch_size;
    let mut shape = vec![b];
    shape.extend(data.sample_shape());
    let mut x = Vec::with_capacity(shape.iter().product());
    let mut labels = Vec::with_capacity(b);
    for j in 0..b {
        // Position in the epoch's permutation: the global batch's start, then this rank's row.
        let k = state.position as usize * b * o.world_size + global_row(o.rank, o.world_size, j);
        let idx = perm[k] as usize;
        match data {
            Dataset::Images(s) => {
                let img = s.image(idx);
                if o.random_flip && flips(o.seed, state.epoch, k as u64) {
                    for row in img.chunks_exact(s.width) {
                        x.extend(row.iter().rev().map(|&p| lut[p as usize]));
                    }
                } else {
                    x.extend(img.iter().map(|&p| lut[p as usize]));
                }
                if let Some(l) = &s.labels {
                    labels.push(l[idx] as i64);
                }
            }
            Dataset::Points(s) => x.extend_from_slice(&s.points[idx * s.dim..(idx + 1) * s.dim]),
        }
    }
    let next = if state.position + 1 >= batches_per_epoch(perm.len(), b, o.world_size) {
        LoaderState { epoch: state.epoch + 1, position: 0 }
    } else {
        LoaderState { epoch: state.epoch, position: state.position + 1 }
    };
    Batch { x, labels: (!labels.is_empty()).then_some(labels), shape, state_after: next }
}

/// Why `data` cannot be indexed as its fields say (hand-built sets), if it cannot.
fn inconsistency(data: &Dataset) -> Option<String> {
    match data {
        Dataset::Images(s) => {
            if s.pixels.len() != s.n * s.image_len() || s.width == 0 {
                Some(format!(
                    "{} pixel bytes for {} images of {}x{}x{}",
                    s.pixels.len(),
                    s.n,
                    s.channels,
                    s.height,
                    s.width
                ))
            } else if s.max_value == 0 {
                Some("max_value is 0".into())
            } else {
                let l = s.labels.as_ref().filter(|l| l.len() != s.n)?;
                Some(format!("{} labels for {} images", l.len(), s.n))
            }
        }
        Dataset::Points(s) => (s.points.len() != s.n * s.dim).then(|| {
            format!("{} values for {} points of dimension {}", s.points.len(), s.n, s.dim)
        }),
    }
}

/// A background thread producing batches in order, [`LoaderOptions::prefetch`] ahead.
#[derive(Debug)]
pub struct Loader {
    rx: Receiver<Batch>,
    handle: Option<JoinHandle<()>>,
}

impl Loader {
    /// Starts producing from `state` (`LoaderState::default()` for a fresh run, else the
    /// `state_after` of the last batch consumed before a checkpoint). The per-rank batch size
    /// must fit the rank's shard, and `state` must lie within an epoch.
    pub fn new(data: Arc<Dataset>, opts: LoaderOptions, state: LoaderState) -> Result<Self> {
        let bad = |field, reason| Err(DataError::Loader { field, reason });
        if opts.world_size == 0 {
            return bad("world_size", "must be at least 1, got 0".into());
        }
        if opts.rank >= opts.world_size {
            return bad(
                "rank",
                format!("must be below the world size {}, got {}", opts.world_size, opts.rank),
            );
        }
        if !opts.drop_last {
            return bad("drop_last", "only true is supported (batches keep one shape)".into());
        }
        if let Some(reason) = inconsistency(&data) {
            return bad("dataset", format!("{:?} is inconsistent: {reason}", data.name()));
        }
        let per_rank = data.len() / opts.world_size;
        if opts.batch_size == 0 || opts.batch_size > per_rank {
            return bad(
                "batch_size",
                format!(
                    "batch size {} does not fit {per_rank} samples per rank of data {:?} \
                     ({} samples, {} rank(s))",
                    opts.batch_size,
                    data.name(),
                    data.len(),
                    opts.world_size
                ),
            );
        }
        let batches = batches_per_epoch(data.len(), opts.batch_size, opts.world_size);
        if state.position >= batches {
            return bad(
                "state",
                format!(
                    "position {} is past the {batches} batches of an epoch (was the batch size \
                     or the data changed since the checkpoint?)",
                    state.position
                ),
            );
        }
        let lut: [f32; 256] = match &*data {
            Dataset::Images(s) => std::array::from_fn(|p| scale(p as u8, s.max_value as f32 / 2.0)),
            Dataset::Points(_) => [0.0; 256],
        };
        let (tx, rx): (SyncSender<Batch>, Receiver<Batch>) = sync_channel(opts.prefetch.max(1));
        let handle = std::thread::Builder::new()
            .name(format!("ddpm-loader-{}", opts.rank))
            .spawn(move || {
                let mut state = state;
                let mut perm_epoch = None;
                let mut perm = Vec::new();
                loop {
                    if perm_epoch != Some(state.epoch) {
                        perm = epoch_permutation(data.len(), opts.seed, state.epoch);
                        perm_epoch = Some(state.epoch);
                    }
                    let batch = make_batch(&data, &opts, &perm, &lut, state);
                    state = batch.state_after;
                    if tx.send(batch).is_err() {
                        return; // the Loader was dropped
                    }
                }
            })
            .map_err(|source| DataError::Io { path: "<loader thread>".into(), source })?;
        Ok(Self { rx, handle: Some(handle) })
    }

    /// The next batch (waits only if the producer is behind).
    pub fn next_batch(&mut self) -> Batch {
        match self.rx.recv() {
            Ok(b) => b,
            // The producer only stops on its own by panicking: re-raise its panic here.
            Err(_) => match self.handle.take().map(JoinHandle::join) {
                Some(Err(panic)) => std::panic::resume_unwind(panic),
                _ => panic!("the loader thread stopped"),
            },
        }
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        // Dropping the receiver makes the producer's next send fail, so it returns; join it.
        let (_, dead) = sync_channel(1);
        drop(std::mem::replace(&mut self.rx, dead));
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::{ImageSet, PointSet};

    fn points(n: usize) -> Arc<Dataset> {
        let points = (0..n).flat_map(|i| [i as f32, -(i as f32)]).collect();
        Arc::new(Dataset::Points(PointSet { n, dim: 2, points, name: "pts".into() }))
    }

    #[test]
    fn epochs_are_permutations_that_differ() {
        let a = epoch_permutation(50, 1, 0);
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
        assert_ne!(a, epoch_permutation(50, 1, 1));
        assert_ne!(a, epoch_permutation(50, 2, 0));
        assert_eq!(a, epoch_permutation(50, 1, 0));
    }

    #[test]
    fn points_come_unflipped_in_permutation_order() {
        let o = LoaderOptions { batch_size: 4, random_flip: true, seed: 9, ..Default::default() };
        let mut l = Loader::new(points(10), o, LoaderState::default()).unwrap();
        let perm = epoch_permutation(10, 9, 0);
        let b = l.next_batch();
        assert_eq!((b.shape.clone(), b.labels.clone()), (vec![4, 2], None));
        let want: Vec<f32> = perm[..4].iter().flat_map(|&i| [i as f32, -(i as f32)]).collect();
        assert_eq!(b.x, want);
        assert_eq!(b.state_after, LoaderState { epoch: 0, position: 1 });
        // 10 / 4 = 2 batches per epoch: the second ends the epoch.
        assert_eq!(l.next_batch().state_after, LoaderState { epoch: 1, position: 0 });
    }

    #[test]
    fn unusable_options_and_states_are_named() {
        let err = |o: LoaderOptions, s: LoaderState| {
            Loader::new(points(10), o, s).unwrap_err().to_string()
        };
        let o = LoaderOptions { batch_size: 2, ..Default::default() };
        let s = LoaderState::default();
        let e = err(LoaderOptions { world_size: 0, ..o.clone() }, s);
        assert!(e.starts_with("loader world_size"), "{e}");
        let e = err(LoaderOptions { rank: 2, world_size: 2, ..o.clone() }, s);
        assert!(e.starts_with("loader rank") && e.contains("got 2"), "{e}");
        let e = err(LoaderOptions { drop_last: false, ..o.clone() }, s);
        assert!(e.starts_with("loader drop_last"), "{e}");
        let e = err(LoaderOptions { batch_size: 6, world_size: 2, ..o.clone() }, s);
        assert!(e.contains("batch size 6 does not fit 5 samples per rank"), "{e}");
        let e = err(o.clone(), LoaderState { epoch: 3, position: 5 });
        assert!(e.starts_with("loader state") && e.contains("position 5"), "{e}");
        let broken = Dataset::Images(ImageSet {
            n: 2,
            channels: 1,
            height: 1,
            width: 2,
            pixels: vec![0; 3],
            max_value: 255,
            labels: None,
            num_classes: 0,
            name: "broken".into(),
        });
        let e = Loader::new(Arc::new(broken), o, s).unwrap_err().to_string();
        assert!(e.contains("3 pixel bytes for 2 images"), "{e}");
    }

    /// One process with batch 8 and two ranks with batch 4 take the same global batches (rank
    /// r's row j is global row r + 2j), and a state saved by either resumes the other there.
    #[test]
    fn world_sizes_share_the_global_order_and_resume_each_other() {
        let data = points(50);
        let take = |rank, world_size, batch_size, from, k| {
            let o = LoaderOptions { batch_size, rank, world_size, seed: 3, ..Default::default() };
            let mut l = Loader::new(data.clone(), o, from).unwrap();
            (0..k).map(|_| l.next_batch()).collect::<Vec<_>>()
        };
        // 50 / 8 = 6 global batches per epoch: 9 batches cross into epoch 1.
        let one = take(0, 1, 8, LoaderState::default(), 9);
        let ranks = [0, 1].map(|r| take(r, 2, 4, LoaderState::default(), 9));
        for (s, b) in one.iter().enumerate() {
            for j in 0..4 {
                for (r, rank) in ranks.iter().enumerate() {
                    let g = global_row(r, 2, j);
                    assert_eq!(rank[s].x[2 * j..2 * j + 2], b.x[2 * g..2 * g + 2], "step {s}");
                    assert_eq!(rank[s].state_after, b.state_after);
                }
            }
        }
        assert_eq!(one[5].state_after, LoaderState { epoch: 1, position: 0 });
        // Two ranks resume a one-process state, and one process a two-rank state.
        let from_one = [0, 1].map(|r| take(r, 2, 4, one[3].state_after, 4));
        let from_two = take(0, 1, 8, ranks[0][3].state_after, 4);
        for s in 0..4 {
            assert_eq!(from_two[s], one[s + 4]);
            for r in 0..2 {
                assert_eq!(from_one[r][s], ranks[r][s + 4]);
            }
        }
    }

    #[test]
    fn flips_are_fair_coins() {
        let heads = (0..10_000).filter(|&k| flips(3, 1, k)).count();
        assert!((4_800..=5_200).contains(&heads), "{heads}");
        assert_ne!(
            (0..64).map(|k| flips(3, 1, k)).collect::<Vec<_>>(),
            (0..64).map(|k| flips(3, 2, k)).collect::<Vec<_>>()
        );
    }
}
