//! The initialised process group: what `torch.distributed.init_process_group` sets up, and the
//! few collectives data-parallel training and sharded evaluation need.
//!
//! Init follows `init_process_group(backend, init_method="env://")`: a TCPStore at
//! MASTER_ADDR:MASTER_PORT (served by torchrun's agent when TORCHELASTIC_USE_AGENT_STORE=True,
//! else by rank 0), a PrefixStore over it, then `ProcessGroupGloo` for CPU tensors or
//! `ProcessGroupNCCL` for CUDA tensors, as torch picks the backend per device type.
//!
//! Failures: c10d reports a collective whose peer exited ("Connection closed by peer") or that
//! outlived the timeout, but not which rank is at fault. After a failure every surviving rank
//! writes one key to the store and looks, for a short grace period, for the others' keys: the
//! ranks that never write are named in the error (exited, hung or blocked elsewhere). This is
//! the message torchrun's own failure summary gives; a c10d group does not recover, so every
//! later collective is refused and the job should exit (torchrun `--max-restarts` restarts it).

use crate::env::DistEnv;
use crate::error::{DistError, Result};
use ddpm_shim::ShimError;
use ddpm_shim::dist::{Backend, PendingWork, ProcessGroup, Store};
use std::cell::{Cell, RefCell};
use std::ops::Range;
use std::time::{Duration, Instant};
use tch::{Device, Kind, Tensor};

/// What a process group waits for before it gives up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DistOptions {
    /// Bound on the rendezvous and on every collective. torch's default for Gloo and NCCL
    /// process groups is 30 minutes (`default_pg_timeout`); a peer that exits is reported at
    /// once, the timeout only bounds a peer that hangs.
    pub timeout: Duration,
    /// After a failed collective, how long the surviving ranks wait for each other in the store
    /// to tell which ranks are gone.
    pub failure_grace: Duration,
}

impl Default for DistOptions {
    fn default() -> Self {
        Self { timeout: Duration::from_secs(30 * 60), failure_grace: Duration::from_secs(5) }
    }
}

/// The process group of one run: this rank, the world size, the device its tensors live on,
/// and the collectives over them. With one process it exists too, and every collective is the
/// identity, so callers need no second code path.
#[derive(Debug)]
pub struct Dist {
    env: DistEnv,
    device: Device,
    options: DistOptions,
    group: Option<Group>,
    /// Collectives issued so far; all ranks count alike, so it names a collective across ranks.
    seq: Cell<u64>,
    /// The first failure: c10d groups do not recover from one.
    failed: RefCell<Option<String>>,
}

#[derive(Debug)]
struct Group {
    pg: ProcessGroup,
    store: Store,
    /// Who serves the store, for the message when it is gone.
    store_host: String,
}

impl Dist {
    /// One process, no group: every collective is the identity.
    pub fn single(device: Device) -> Self {
        Self {
            env: DistEnv::single(),
            device,
            options: DistOptions::default(),
            group: None,
            seq: Cell::new(0),
            failed: RefCell::new(None),
        }
    }

    /// Joins the group `env` describes, with Gloo for `Device::Cpu` and NCCL for
    /// `Device::Cuda(i)` (use [`DistEnv::cuda_device`]). Blocks until every rank has joined or
    /// `options.timeout` has passed. An `env` without a rendezvous (no launcher) gives
    /// [`Dist::single`]; with one, even a single rank forms a group (as torchrun
    /// `--nproc-per-node 1` and `init_process_group` do), so that its collectives really run.
    pub fn init(env: &DistEnv, device: Device, options: DistOptions) -> Result<Self> {
        let backend = backend_for(device)?;
        let Some(rdzv) = env.rendezvous.as_ref() else {
            return Ok(Self { env: env.clone(), options, ..Self::single(device) });
        };
        let (rank, world_size, timeout) = (env.rank, env.world_size, options.timeout);
        let serve = rank == 0 && !rdzv.agent_store;
        let root =
            Store::tcp(&rdzv.addr, rdzv.port, world_size, serve, timeout).map_err(|source| {
                DistError::Rendezvous {
                    rank,
                    role: if serve { "serve" } else { "reach" },
                    addr: rdzv.addr.clone(),
                    port: rdzv.port,
                    timeout,
                    source,
                }
            })?;
        let store = root.prefixed(&env.store_prefix())?;
        let init = |source| DistError::Init { backend, rank, world_size, source };
        let pg = match device {
            Device::Cuda(index) => {
                if let Some((name, value)) = nccl_error_mode(|v| std::env::var(v).ok()) {
                    // SAFETY: set once, before the NCCL group (whose constructor reads it) and
                    // its watchdog threads exist; no other thread of ours reads the environment.
                    unsafe { std::env::set_var(name, value) };
                }
                ProcessGroup::nccl(&store, rank, world_size, timeout, index)
            }
            _ => ProcessGroup::gloo(&store, rank, world_size, timeout, &env.gloo_device),
        }
        .map_err(init)?;
        let store_host = if rdzv.agent_store {
            format!("torchrun's agent at {}:{}", rdzv.addr, rdzv.port)
        } else {
            format!("rank 0 at {}:{}", rdzv.addr, rdzv.port)
        };
        Ok(Self {
            env: env.clone(),
            device,
            options,
            group: Some(Group { pg, store, store_host }),
            seq: Cell::new(0),
            failed: RefCell::new(None),
        })
    }

    pub fn rank(&self) -> usize {
        self.env.rank
    }

    pub fn world_size(&self) -> usize {
        self.env.world_size
    }

    pub fn local_rank(&self) -> usize {
        self.env.local_rank
    }

    /// Rank 0, the one that writes checkpoints, samples and metrics.
    pub fn is_main(&self) -> bool {
        self.env.rank == 0
    }

    /// Where this rank's tensors live (the NCCL group's GPU, or the CPU for Gloo).
    pub fn device(&self) -> Device {
        self.device
    }

    /// The collective backend, `None` for a process without a group.
    pub fn backend(&self) -> Option<Backend> {
        self.group.as_ref().map(|g| g.pg.backend())
    }

    /// The launcher's description this group was built from.
    pub fn env(&self) -> &DistEnv {
        &self.env
    }

    /// Collectives issued so far by this rank (the same on every rank).
    pub fn collectives(&self) -> u64 {
        self.seq.get()
    }

    /// This rank's contiguous share of `n` items: shares differ by at most one item, lower ranks
    /// take the larger ones, and together they cover 0..n in rank order.
    pub fn shard(&self, n: usize) -> Range<usize> {
        shard(n, self.rank(), self.world_size())
    }

    /// Sums each tensor over ranks, in place: one collective per (device, dtype) group of
    /// tensors (`allreduce_coalesced`). For small metric tensors at logging intervals; they must
    /// be on [`Dist::device`] and contiguous.
    pub fn all_reduce_sum(&self, tensors: &[Tensor]) -> Result<()> {
        if self.group.is_none() || tensors.is_empty() {
            return Ok(());
        }
        let mut groups: Vec<((Device, Kind), Vec<Tensor>)> = Vec::new();
        for t in tensors {
            let key = (t.device(), t.kind());
            match groups.iter_mut().find(|(k, _)| *k == key) {
                Some((_, ts)) => ts.push(t.shallow_clone()),
                None => groups.push((key, vec![t.shallow_clone()])),
            }
        }
        for (_, ts) in &groups {
            self.collective("all_reduce", |pg| pg.all_reduce_sum(ts))?;
        }
        Ok(())
    }

    /// Copies rank 0's values into `tensors` on every rank (DDP's `_sync_module_states` at
    /// construction), through flat buffers of [`crate::DEFAULT_BUCKET_CAP_BYTES`]: one
    /// broadcast per bucket. Parameters that require grad are written without recording
    /// autograd history.
    pub fn broadcast_parameters(&self, tensors: &[Tensor]) -> Result<()> {
        if self.group.is_none() {
            return Ok(());
        }
        for bucket in crate::bucket_plan::plan(tensors, crate::DEFAULT_BUCKET_CAP_BYTES) {
            let members: Vec<Tensor> =
                bucket.members.iter().map(|&i| tensors[i].detach()).collect();
            let flat = Tensor::f_empty([bucket.numel], (bucket.kind, bucket.device))?;
            tch::no_grad(|| -> Result<()> {
                ddpm_shim::dist::flat_pack(&flat, &members)?;
                self.collective("broadcast", |pg| pg.broadcast(&flat, 0))?;
                ddpm_shim::dist::flat_unpack(&flat, &members)?;
                Ok(())
            })?;
        }
        Ok(())
    }

    /// Rank 0's `values` on every rank (small host values: a step, a batch size chosen by
    /// probing the device); the others' `values` only give the length, which must agree.
    /// Returns `values` without a group.
    pub fn broadcast_i64s(&self, values: &[i64]) -> Result<Vec<i64>> {
        if self.group.is_none() || values.is_empty() {
            return Ok(values.to_vec());
        }
        let t = Tensor::from_slice(values).f_to_device(self.device)?;
        self.collective("broadcast", |pg| pg.broadcast(&t, 0))?;
        Ok(Vec::<i64>::try_from(t.f_to_device(Device::Cpu)?)?)
    }

    /// Rank 0's `bytes` on every rank (e.g. a serialised state); the others' are ignored.
    pub fn broadcast_bytes(&self, bytes: &[u8]) -> Result<Vec<u8>> {
        if self.group.is_none() {
            return Ok(bytes.to_vec());
        }
        let len = self.broadcast_i64s(&[bytes.len() as i64])?[0];
        if len == 0 {
            return Ok(Vec::new());
        }
        let t = if self.is_main() {
            Tensor::from_slice(bytes)
        } else {
            Tensor::f_zeros([len], (Kind::Uint8, Device::Cpu))?
        }
        .f_to_device(self.device)?;
        self.collective("broadcast", |pg| pg.broadcast(&t, 0))?;
        Ok(Vec::<u8>::try_from(t.f_to_device(Device::Cpu)?)?)
    }

    /// Every rank's rows, in rank order, on every rank: `rows` is this rank's [n_r, ...] (the
    /// trailing shape and dtype the same on every rank, n_r free, e.g. the features of a
    /// [`Dist::shard`]); returns [n_0 + n_1 + ..., ...] on [`Dist::device`]. Two collectives: the
    /// row counts, then the rows padded to the largest count. `rows` without a group.
    pub fn all_gather_rows(&self, rows: &Tensor) -> Result<Tensor> {
        if self.group.is_none() {
            return Ok(rows.shallow_clone());
        }
        let p = self.padded_rows(rows)?;
        let all = Tensor::f_zeros([p.world * p.most * p.row], (rows.kind(), self.device))?;
        self.collective("all_gather", |pg| pg.all_gather(&all, &p.padded))?;
        p.unpad(&all, &rows.size())
    }

    /// As [`Dist::all_gather_rows`], to rank 0 alone (c10d's gather): rank 0 gets
    /// `Some([n_0 + n_1 + ..., ...])`, the others `None` and hold no one else's rows (so memory
    /// per rank does not grow with the world's rows, e.g. 50,000 x 2048 pool3 features).
    pub fn gather_rows(&self, rows: &Tensor) -> Result<Option<Tensor>> {
        if self.group.is_none() {
            return Ok(Some(rows.shallow_clone()));
        }
        let p = self.padded_rows(rows)?;
        let main = self.is_main();
        let len = if main { p.world * p.most * p.row } else { 0 };
        let all = Tensor::f_zeros([len], (rows.kind(), self.device))?;
        self.collective("gather", |pg| pg.gather(&all, &p.padded))?;
        if !main {
            return Ok(None);
        }
        Ok(Some(p.unpad(&all, &rows.size())?))
    }

    /// The row counts of every rank (one all-reduce) and this rank's rows, flat and padded to
    /// the largest count.
    fn padded_rows(&self, rows: &Tensor) -> Result<PaddedRows> {
        let size = rows.size();
        let n = *size.first().ok_or_else(|| DistError::Mismatch {
            what: "rows to gather",
            expected: "a tensor of at least one dimension".into(),
            got: "a 0-d tensor".into(),
        })?;
        let world = self.world_size();
        let counts = Tensor::f_zeros([world as i64], (Kind::Int64, Device::Cpu))?;
        let _ = counts.f_get(self.rank() as i64)?.f_fill_(n)?;
        let counts = counts.f_to_device(self.device)?;
        self.collective("all_reduce", |pg| pg.all_reduce_sum(std::slice::from_ref(&counts)))?;
        let counts = Vec::<i64>::try_from(counts.f_to_device(Device::Cpu)?)?;
        let most = counts.iter().copied().max().unwrap_or(0);
        let row: i64 = size[1..].iter().product();
        let padded = Tensor::f_zeros([most * row], (rows.kind(), self.device))?;
        if n > 0 {
            let flat = rows.f_to_device(self.device)?.f_contiguous()?.f_view([n * row])?;
            padded.f_narrow(0, 0, n * row)?.f_copy_(&flat)?;
        }
        Ok(PaddedRows { counts, most, row, world: world as i64, padded })
    }

    /// Returns once every rank has called it (e.g. before rank 0 alone writes a checkpoint).
    pub fn barrier(&self) -> Result<()> {
        if self.group.is_none() {
            return Ok(());
        }
        self.collective("barrier", |pg| pg.barrier())
    }

    /// Runs one collective: refused after an earlier failure; a failure is diagnosed, recorded
    /// and returned.
    pub(crate) fn collective(
        &self,
        op: &'static str,
        f: impl FnOnce(&ProcessGroup) -> std::result::Result<(), ShimError>,
    ) -> Result<()> {
        let Some((group, seq)) = self.begin(op)? else { return Ok(()) };
        f(&group.pg).map_err(|source| self.fail(group, op, seq, source))
    }

    /// Starts an all-reduce (sum) of `t` in place, to be finished by [`Dist::finish`]; meanwhile
    /// the caller may prepare the next one (the backend runs them in order).
    pub(crate) fn start_all_reduce(&self, t: &Tensor) -> Result<Started> {
        let op = "all_reduce";
        let Some((group, seq)) = self.begin(op)? else {
            return Ok(Started { work: None, seq: 0, op });
        };
        let work = group
            .pg
            .all_reduce_sum_start(std::slice::from_ref(t))
            .map_err(|source| self.fail(group, op, seq, source))?;
        Ok(Started { work: Some(work), seq, op })
    }

    /// Waits for a collective from [`Dist::start_all_reduce`].
    pub(crate) fn finish(&self, started: Started) -> Result<()> {
        let (Some(work), Some(group)) = (started.work, &self.group) else { return Ok(()) };
        work.wait().map_err(|source| self.fail(group, started.op, started.seq, source))
    }

    /// The group and the number of the next collective, or why it is refused.
    fn begin(&self, op: &'static str) -> Result<Option<(&Group, u64)>> {
        let Some(group) = &self.group else { return Ok(None) };
        if let Some(first) = self.failed.borrow().as_ref() {
            return Err(DistError::Failed { op, first: first.clone() });
        }
        let seq = self.seq.get();
        self.seq.set(seq + 1);
        Ok(Some((group, seq)))
    }

    /// The error of collective `seq`, diagnosed; later collectives are refused with it.
    fn fail(&self, group: &Group, op: &'static str, seq: u64, source: ShimError) -> DistError {
        if let Some(first) = self.failed.borrow().as_ref() {
            // A later collective of a pipeline failing after the first: the first says it all.
            return DistError::Failed { op, first: first.clone() };
        }
        let diagnosis = self.diagnose(group, seq);
        let err = DistError::Collective {
            op,
            seq,
            rank: self.rank(),
            world_size: self.world_size(),
            diagnosis,
            source,
        };
        *self.failed.borrow_mut() = Some(err.to_string());
        err
    }

    /// Which ranks are gone after collective `seq` failed here: each survivor writes
    /// `failed/{seq}/{rank}` and looks for the others' keys for `failure_grace`.
    fn diagnose(&self, group: &Group, seq: u64) -> String {
        let key = |r: usize| format!("failed/{seq}/{r}");
        if let Err(e) = group.store.set(&key(self.rank()), b"") {
            return format!(
                "the TCPStore served by {} is unreachable ({e}), so that process has exited",
                group.store_host
            );
        }
        let grace = self.options.failure_grace;
        let deadline = Instant::now() + grace;
        loop {
            let mut missing = Vec::new();
            for r in (0..self.world_size()).filter(|&r| r != self.rank()) {
                match group.store.check(&key(r)) {
                    Ok(true) => {}
                    Ok(false) => missing.push(r),
                    Err(e) => {
                        return format!(
                            "the TCPStore served by {} became unreachable ({e}), so that \
                             process has exited",
                            group.store_host
                        );
                    }
                }
            }
            if missing.is_empty() {
                return "every other rank reached this collective and saw it fail too".into();
            }
            if Instant::now() >= deadline {
                let ranks: Vec<String> = missing.iter().map(|r| r.to_string()).collect();
                let (noun, who) =
                    if missing.len() == 1 { ("rank", "it") } else { ("ranks", "each") };
                return format!(
                    "{noun} {} did not report within {grace:?} after the failure ({who} exited, \
                     hung, or is blocked in another call)",
                    ranks.join(", ")
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// This rank's rows prepared for a gather: see [`Dist::padded_rows`].
struct PaddedRows {
    counts: Vec<i64>,
    most: i64,
    row: i64,
    world: i64,
    padded: Tensor,
}

impl PaddedRows {
    /// The gathered [world * most * row] values without their padding, shaped as the rows.
    fn unpad(&self, all: &Tensor, size: &[i64]) -> Result<Tensor> {
        let (most, row) = (self.most, self.row);
        let parts = self
            .counts
            .iter()
            .enumerate()
            .map(|(r, &c)| all.f_narrow(0, r as i64 * most * row, c * row))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let mut shape = vec![self.counts.iter().sum::<i64>()];
        shape.extend_from_slice(&size[1..]);
        Ok(Tensor::f_cat(&parts, 0)?.f_view(shape.as_slice())?)
    }
}

/// How NCCL failures reach us, as `var(name)` has it: the variable to set before the group is
/// made, or `None` when the user chose a mode.
///
/// `ProcessGroupNCCL`'s `Work::wait(timeout)` only orders the caller's stream after the
/// collective's, and returns at once, unless `TORCH_NCCL_BLOCKING_WAIT=1`: then it blocks until
/// the collective completes and throws when it failed or outlived the group's timeout (torch's
/// documented behaviour; the constructor reads the variable). So we set it, and a dead or hung
/// peer comes back from [`Dist`]'s collectives as an error naming the ranks, as on Gloo. Its
/// cost: each wait holds the host until that collective is done (the gradient all-reduce once
/// per step, before the optimiser, which needs it anyway). A user who sets
/// `TORCH_NCCL_BLOCKING_WAIT` or `TORCH_NCCL_ASYNC_ERROR_HANDLING` (or their old `NCCL_`
/// names) keeps that choice; under torch's default asynchronous error handling a failed or
/// timed-out collective makes the watchdog abort the process instead, after the timeout, which
/// torchrun then reports.
pub fn nccl_error_mode(
    var: impl Fn(&str) -> Option<String>,
) -> Option<(&'static str, &'static str)> {
    let chosen = [
        "TORCH_NCCL_BLOCKING_WAIT",
        "NCCL_BLOCKING_WAIT",
        "TORCH_NCCL_ASYNC_ERROR_HANDLING",
        "NCCL_ASYNC_ERROR_HANDLING",
    ]
    .iter()
    .any(|v| var(v).is_some());
    (!chosen).then_some(("TORCH_NCCL_BLOCKING_WAIT", "1"))
}

/// The backend torch.distributed uses for a device type: Gloo for CPU tensors, NCCL for CUDA.
pub fn backend_for(device: Device) -> Result<Backend> {
    match device {
        Device::Cpu => Ok(Backend::Gloo),
        Device::Cuda(_) => Ok(Backend::Nccl),
        other => Err(DistError::Device { device: format!("{other:?}") }),
    }
}

/// A collective in flight (see [`Dist::start_all_reduce`]); `None` work for a single process.
#[derive(Debug)]
pub(crate) struct Started {
    work: Option<PendingWork>,
    seq: u64,
    op: &'static str,
}

/// Rank `rank`'s share of `n` items among `world_size` (see [`Dist::shard`]).
pub fn shard(n: usize, rank: usize, world_size: usize) -> Range<usize> {
    let (base, extra) = (n / world_size, n % world_size);
    let start = rank * base + rank.min(extra);
    start..start + base + usize::from(rank < extra)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: nothing set NCCL's blocking wait, so `Work::wait` on NCCL returned at once
    /// and a dead or hung peer was never named. It is set unless the user chose a mode.
    #[test]
    fn nccl_blocking_wait_is_set_unless_the_user_chose_an_error_mode() {
        assert_eq!(nccl_error_mode(|_| None), Some(("TORCH_NCCL_BLOCKING_WAIT", "1")));
        for chosen in [
            "TORCH_NCCL_BLOCKING_WAIT",
            "NCCL_BLOCKING_WAIT",
            "TORCH_NCCL_ASYNC_ERROR_HANDLING",
            "NCCL_ASYNC_ERROR_HANDLING",
        ] {
            let var = |v: &str| (v == chosen).then(|| "0".to_string());
            assert_eq!(nccl_error_mode(var), None, "{chosen}");
        }
    }

    #[test]
    fn shards_cover_every_item_once_in_rank_order() {
        for n in [0, 1, 5, 7, 100, 1001] {
            for ws in 1..=5 {
                let parts: Vec<_> = (0..ws).map(|r| shard(n, r, ws)).collect();
                assert_eq!(parts[0].start, 0);
                assert_eq!(parts[ws - 1].end, n);
                for w in parts.windows(2) {
                    assert_eq!(w[0].end, w[1].start);
                    assert!(w[0].len() >= w[1].len() && w[0].len() - w[1].len() <= 1);
                }
            }
        }
        assert_eq!(shard(7, 0, 3), 0..3);
        assert_eq!(shard(7, 2, 3), 5..7);
    }

    #[test]
    fn a_single_process_group_is_the_identity() {
        let dist = Dist::init(&DistEnv::single(), Device::Cpu, DistOptions::default()).unwrap();
        assert_eq!((dist.rank(), dist.world_size(), dist.is_main()), (0, 1, true));
        assert_eq!(dist.backend(), None);
        let t = Tensor::from_slice(&[1.5f32, 2.0]);
        dist.all_reduce_sum(std::slice::from_ref(&t)).unwrap();
        dist.broadcast_parameters(std::slice::from_ref(&t)).unwrap();
        dist.barrier().unwrap();
        assert_eq!(dist.broadcast_i64s(&[3, -4]).unwrap(), vec![3, -4]);
        assert_eq!(dist.broadcast_bytes(b"x").unwrap(), b"x");
        assert!(dist.all_gather_rows(&t).unwrap().equal(&t));
        assert_eq!(Vec::<f32>::try_from(&t).unwrap(), vec![1.5, 2.0]);
        assert_eq!(dist.collectives(), 0);
        assert_eq!(dist.shard(10), 0..10);
    }

    #[test]
    fn only_cpu_and_cuda_devices_have_a_backend() {
        assert_eq!(backend_for(Device::Cpu).unwrap(), Backend::Gloo);
        assert_eq!(backend_for(Device::Cuda(1)).unwrap(), Backend::Nccl);
        let e = Dist::init(&DistEnv::single(), Device::Mps, DistOptions::default()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "a process group runs on CPU (Gloo) or CUDA (NCCL) devices, not Mps"
        );
    }
}
