//! Batches prepared off the training thread, exactly reproducible and resumable, sharded by rank.
//!
//! Epoch e visits the permutation of 0..N drawn from (seed, e), the same on every rank; rank r
//! takes permutation positions r, r + W, r + 2W, ... and cuts them into batches (the last
//! partial batch is dropped). Whether the image at permutation position k is mirrored comes
//! from (seed, e, k), so it depends neither on the rank nor on batching. A [`LoaderState`]
//! saved after a batch restarts the stream exactly there.

use crate::dataset::{Dataset, scale};
use crate::error::{DataError, Result};
use ddpm_core::rng::{SplitMix64, derive_seed};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

/// Where the stream stands: the epoch, and the batches of it this rank has consumed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoaderState {
    pub epoch: u64,
    pub position: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LoaderOptions {
    /// Per-rank batch size.
    pub batch_size: usize,
    pub seed: u64,
    pub rank: usize,
    pub world_size: usize,
    pub random_flip: bool,
    /// Drop each epoch's last partial batch (the only mode: batches keep one shape).
    pub drop_last: bool,
    /// Batches prepared ahead.
    pub prefetch: usize,
}

/// One batch, flattened: x is [B, C, H, W] (or [B, dim]) in [-1, 1].
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub x: Vec<f32>,
    pub labels: Option<Vec<i64>>,
    pub shape: Vec<usize>,
    /// The state to checkpoint after consuming this batch.
    pub state_after: LoaderState,
}

/// The pure batch function: batch `state.position` of epoch `state.epoch` for the options'
/// rank, with the epoch's permutation given.
fn make_batch(data: &Dataset, o: &LoaderOptions, perm: &[u32], state: LoaderState) -> Batch {
    let b = o.batch_size;
    let per_rank = perm.len() / o.world_size;
    let batches = (per_rank / b) as u64;
    let mut shape = vec![b];
    shape.extend(data.sample_shape());
    let per: usize = data.sample_shape().iter().product();
    let mut x = Vec::with_capacity(b * per);
    let mut labels = Vec::with_capacity(b);
    for j in 0..b {
        let k = o.rank + o.world_size * (state.position as usize * b + j);
        let idx = perm[k] as usize;
        match data {
            Dataset::Images(s) => {
                let flip =
                    o.random_flip && derive_seed(o.seed, &[state.epoch, k as u64, 0xf11b]) & 1 == 1;
                let half = s.max_value as f32 / 2.0;
                let img = s.image(idx);
                if flip {
                    for row in img.chunks_exact(s.width) {
                        x.extend(row.iter().rev().map(|&p| scale(p, half)));
                    }
                } else {
                    x.extend(img.iter().map(|&p| scale(p, half)));
                }
                if let Some(l) = &s.labels {
                    labels.push(l[idx] as i64);
                }
            }
            Dataset::Points(s) => x.extend_from_slice(&s.points[idx * s.dim..(idx + 1) * s.dim]),
        }
    }
    let next = if state.position + 1 >= batches {
        LoaderState { epoch: state.epoch + 1, position: 0 }
    } else {
        LoaderState { epoch: state.epoch, position: state.position + 1 }
    };
    Batch { x, labels: (!labels.is_empty()).then_some(labels), shape, state_after: next }
}

/// The permutation of epoch `epoch`.
pub fn epoch_permutation(n: usize, seed: u64, epoch: u64) -> Vec<u32> {
    let mut perm: Vec<u32> = (0..n as u32).collect();
    SplitMix64::derived(seed, &[epoch]).shuffle(&mut perm);
    perm
}

/// A background thread producing batches in order.
#[derive(Debug)]
pub struct Loader {
    rx: Receiver<Batch>,
    handle: Option<JoinHandle<()>>,
}

impl Loader {
    /// Starts producing from `state`. The per-rank batch size must fit the rank's shard.
    pub fn new(data: Arc<Dataset>, opts: LoaderOptions, state: LoaderState) -> Result<Self> {
        let per_rank = data.len() / opts.world_size.max(1);
        if opts.batch_size == 0 || opts.batch_size > per_rank {
            return Err(DataError::Mismatch(format!(
                "batch size {} does not fit {} samples per rank of data {:?}",
                opts.batch_size,
                per_rank,
                data.name()
            )));
        }
        if opts.rank >= opts.world_size {
            return Err(DataError::Mismatch(format!(
                "rank {} >= world size {}",
                opts.rank, opts.world_size
            )));
        }
        let (tx, rx): (SyncSender<Batch>, Receiver<Batch>) = sync_channel(opts.prefetch.max(1));
        let handle = std::thread::Builder::new()
            .name("ddpm-loader".into())
            .spawn(move || {
                let mut state = state;
                let mut perm_epoch = u64::MAX;
                let mut perm = Vec::new();
                loop {
                    if perm_epoch != state.epoch {
                        perm = epoch_permutation(data.len(), opts.seed, state.epoch);
                        perm_epoch = state.epoch;
                    }
                    let batch = make_batch(&data, &opts, &perm, state);
                    state = batch.state_after;
                    if tx.send(batch).is_err() {
                        return; // the Loader was dropped
                    }
                }
            })
            .expect("spawn loader thread");
        Ok(Self { rx, handle: Some(handle) })
    }

    /// The next batch (waits only if the producer is behind).
    pub fn next_batch(&mut self) -> Batch {
        self.rx.recv().expect("the loader thread stopped")
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        // Unblock the producer by dropping the receiver, then join it.
        let (_, dead) = sync_channel(1);
        let rx = std::mem::replace(&mut self.rx, dead);
        drop(rx);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
