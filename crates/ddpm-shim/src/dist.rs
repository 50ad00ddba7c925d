//! libtorch's distributed engine, c10d, through `csrc/dist.cpp`: the TCPStore rendezvous,
//! `ProcessGroupGloo` (CPU tensors) and `ProcessGroupNCCL` (CUDA tensors), the same objects
//! `torch.distributed.init_process_group` builds. Safe handles with `Drop`; every collective
//! blocks until it completes or the group's timeout passes, and a failure (a peer that exited,
//! a timeout) comes back as a [`ShimError`], never as a hang or an abort.
//!
//! Policy (which rank hosts the store, which backend for which device, what to do after a
//! failure) belongs to the `ddpm-dist` crate; this module only wraps the C++ objects.

use crate::{ShimError, check, ptrs};
use std::ffi::{CString, c_char, c_int, c_uchar, c_void};
use std::time::Duration;
use tch::Tensor;
use torch_sys::C_tensor;

unsafe extern "C" {
    fn ddpm_free_error(e: *mut c_char);
    fn ddpm_store_tcp(
        host: *const c_char,
        port: c_int,
        world_size: c_int,
        is_server: c_int,
        timeout_ms: i64,
        out: *mut *mut c_void,
    ) -> *mut c_char;
    fn ddpm_store_port(s: *mut c_void, port: *mut c_int) -> *mut c_char;
    fn ddpm_store_prefixed(
        s: *mut c_void,
        prefix: *const c_char,
        out: *mut *mut c_void,
    ) -> *mut c_char;
    fn ddpm_store_set(
        s: *mut c_void,
        key: *const c_char,
        data: *const c_uchar,
        len: usize,
    ) -> *mut c_char;
    fn ddpm_store_get(
        s: *mut c_void,
        key: *const c_char,
        data: *mut *mut c_uchar,
        len: *mut usize,
    ) -> *mut c_char;
    fn ddpm_store_check(s: *mut c_void, key: *const c_char, present: *mut c_int) -> *mut c_char;
    fn ddpm_store_free(s: *mut c_void);
    fn ddpm_pg_gloo(
        s: *mut c_void,
        rank: c_int,
        size: c_int,
        timeout_ms: i64,
        ifnames: *const c_char,
        hostname: *const c_char,
        out: *mut *mut c_void,
    ) -> *mut c_char;
    fn ddpm_pg_has_nccl() -> c_int;
    fn ddpm_pg_nccl(
        s: *mut c_void,
        rank: c_int,
        size: c_int,
        timeout_ms: i64,
        device_index: c_int,
        out: *mut *mut c_void,
    ) -> *mut c_char;
    fn ddpm_pg_free(g: *mut c_void);
    fn ddpm_pg_allreduce_sum(g: *mut c_void, ts: *const *const C_tensor, n: c_int) -> *mut c_char;
    fn ddpm_pg_allreduce_sum_start(
        g: *mut c_void,
        ts: *const *const C_tensor,
        n: c_int,
        out: *mut *mut c_void,
    ) -> *mut c_char;
    fn ddpm_work_wait(w: *mut c_void) -> *mut c_char;
    fn ddpm_work_free(w: *mut c_void);
    fn ddpm_pg_broadcast(g: *mut c_void, t: *const C_tensor, root: c_int) -> *mut c_char;
    fn ddpm_pg_allgather(
        g: *mut c_void,
        out: *const C_tensor,
        input: *const C_tensor,
    ) -> *mut c_char;
    fn ddpm_pg_gather(g: *mut c_void, out: *const C_tensor, input: *const C_tensor) -> *mut c_char;
    fn ddpm_pg_barrier(g: *mut c_void) -> *mut c_char;
    fn ddpm_flat_pack(flat: *const C_tensor, ts: *const *const C_tensor, n: c_int) -> *mut c_char;
    fn ddpm_flat_unpack(
        flat: *const C_tensor,
        ts: *const *const C_tensor,
        n: c_int,
        divisor: f64,
    ) -> *mut c_char;
}

fn cstr(what: &str, s: &str) -> Result<CString, ShimError> {
    CString::new(s).map_err(|_| ShimError(format!("{what} {s:?} contains a NUL byte")))
}

fn millis(timeout: Duration) -> i64 {
    timeout.as_millis().clamp(1, i64::MAX as u128) as i64
}

/// A `c10d::Store`: the key-value rendezvous every rank of a group shares.
#[derive(Debug)]
pub struct Store {
    raw: *mut c_void,
}

// c10d stores serialise their operations internally (TCPStore holds a lock per request).
unsafe impl Send for Store {}
unsafe impl Sync for Store {}

impl Store {
    /// `c10d::TCPStore` at `host:port`: its server when `is_server` (`port` 0 binds a free port,
    /// see [`Store::port`]), else a client. The server waits up to `timeout` until `world_size`
    /// participants (itself included) have connected; a client retries as long.
    pub fn tcp(
        host: &str,
        port: u16,
        world_size: usize,
        is_server: bool,
        timeout: Duration,
    ) -> Result<Self, ShimError> {
        let host = cstr("host", host)?;
        let mut raw = std::ptr::null_mut();
        check(unsafe {
            ddpm_store_tcp(
                host.as_ptr(),
                port as c_int,
                world_size as c_int,
                is_server as c_int,
                millis(timeout),
                &mut raw,
            )
        })?;
        Ok(Self { raw })
    }

    /// The TCP port of a TCPStore (the one bound when it was created with port 0).
    pub fn port(&self) -> Result<u16, ShimError> {
        let mut port = 0;
        check(unsafe { ddpm_store_port(self.raw, &mut port) })?;
        Ok(port as u16)
    }

    /// A view whose keys are all `prefix/key` (`c10d::PrefixStore`), as `init_process_group`
    /// prefixes the default group's keys, sharing this connection.
    pub fn prefixed(&self, prefix: &str) -> Result<Store, ShimError> {
        let prefix = cstr("store prefix", prefix)?;
        let mut raw = std::ptr::null_mut();
        check(unsafe { ddpm_store_prefixed(self.raw, prefix.as_ptr(), &mut raw) })?;
        Ok(Store { raw })
    }

    pub fn set(&self, key: &str, value: &[u8]) -> Result<(), ShimError> {
        let key = cstr("key", key)?;
        check(unsafe { ddpm_store_set(self.raw, key.as_ptr(), value.as_ptr(), value.len()) })
    }

    /// The value of `key`, waiting for it up to the store's timeout.
    pub fn get(&self, key: &str) -> Result<Vec<u8>, ShimError> {
        let key = cstr("key", key)?;
        let (mut data, mut len) = (std::ptr::null_mut(), 0usize);
        check(unsafe { ddpm_store_get(self.raw, key.as_ptr(), &mut data, &mut len) })?;
        // Safety: on success `data` is a malloc'd buffer of `len` bytes that we now own.
        let value = unsafe { std::slice::from_raw_parts(data, len) }.to_vec();
        unsafe { ddpm_free_error(data as *mut c_char) };
        Ok(value)
    }

    /// Whether `key` exists, without waiting.
    pub fn check(&self, key: &str) -> Result<bool, ShimError> {
        let key = cstr("key", key)?;
        let mut present = 0;
        check(unsafe { ddpm_store_check(self.raw, key.as_ptr(), &mut present) })?;
        Ok(present != 0)
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        unsafe { ddpm_store_free(self.raw) }
    }
}

/// The collective backend of a [`ProcessGroup`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `c10d::ProcessGroupGloo`: CPU tensors over TCP.
    Gloo,
    /// `c10d::ProcessGroupNCCL`: CUDA tensors, one GPU per rank.
    Nccl,
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Backend::Gloo => "gloo",
            Backend::Nccl => "nccl",
        })
    }
}

/// Which network interface Gloo's TCP transport binds, as torch.distributed chooses it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum GlooDevice {
    /// `createDefaultDevice`: the address this machine's hostname resolves to, or the loopback
    /// address if it does not resolve (what torch does without `GLOO_SOCKET_IFNAME`).
    #[default]
    Default,
    /// `createDeviceForHostname`: the address of this host name or IP.
    Hostname(String),
    /// `createDeviceForInterface` for each name (`GLOO_SOCKET_IFNAME=eth0,eth1`).
    Interfaces(Vec<String>),
}

/// Whether this build has `ProcessGroupNCCL` (see [`nccl_missing_reason`]).
pub fn has_nccl() -> bool {
    unsafe { ddpm_pg_has_nccl() != 0 }
}

/// Why this build has no NCCL process group, as build.rs found it; `None` when it has one.
pub fn nccl_missing_reason() -> Option<&'static str> {
    Some(env!("DDPM_NCCL_MISSING")).filter(|why| !why.is_empty())
}

/// A c10d process group (a `c10d::Backend`): this rank's handle on the collectives of
/// `size` processes. All ranks must call the same collectives in the same order.
#[derive(Debug)]
pub struct ProcessGroup {
    raw: *mut c_void,
    backend: Backend,
    rank: usize,
    size: usize,
}

// c10d backends queue work from any thread; the handle itself is only moved, never shared.
unsafe impl Send for ProcessGroup {}

impl ProcessGroup {
    /// `c10d::ProcessGroupGloo` of `size` ranks rendezvousing through `store`. `timeout`
    /// bounds every gloo operation and every wait of ours.
    pub fn gloo(
        store: &Store,
        rank: usize,
        size: usize,
        timeout: Duration,
        device: &GlooDevice,
    ) -> Result<Self, ShimError> {
        let (ifnames, hostname) = match device {
            GlooDevice::Default => (String::new(), String::new()),
            GlooDevice::Hostname(h) => (String::new(), h.clone()),
            GlooDevice::Interfaces(names) => (names.join(","), String::new()),
        };
        let ifnames = cstr("interface", &ifnames)?;
        let hostname = cstr("hostname", &hostname)?;
        let mut raw = std::ptr::null_mut();
        check(unsafe {
            ddpm_pg_gloo(
                store.raw,
                rank as c_int,
                size as c_int,
                millis(timeout),
                ifnames.as_ptr(),
                hostname.as_ptr(),
                &mut raw,
            )
        })?;
        Ok(Self { raw, backend: Backend::Gloo, rank, size })
    }

    /// `c10d::ProcessGroupNCCL` of `size` ranks on `cuda:device_index`, connected eagerly.
    /// Fails with the reason when this build has no NCCL (see [`nccl_missing_reason`]).
    pub fn nccl(
        store: &Store,
        rank: usize,
        size: usize,
        timeout: Duration,
        device_index: usize,
    ) -> Result<Self, ShimError> {
        if let Some(why) = nccl_missing_reason() {
            return Err(ShimError(format!("ddpm-shim was built without NCCL: {why}")));
        }
        let mut raw = std::ptr::null_mut();
        check(unsafe {
            ddpm_pg_nccl(
                store.raw,
                rank as c_int,
                size as c_int,
                millis(timeout),
                device_index as c_int,
                &mut raw,
            )
        })?;
        Ok(Self { raw, backend: Backend::Nccl, rank, size })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn rank(&self) -> usize {
        self.rank
    }

    pub fn size(&self) -> usize {
        self.size
    }

    /// Sums `tensors` over all ranks, in place, in one collective (`allreduce` for one tensor,
    /// `allreduce_coalesced` for several: same dtype and device, contiguous).
    pub fn all_reduce_sum(&self, tensors: &[Tensor]) -> Result<(), ShimError> {
        if tensors.is_empty() {
            return Ok(());
        }
        let p = ptrs(tensors);
        check(unsafe { ddpm_pg_allreduce_sum(self.raw, p.as_ptr(), p.len() as c_int) })
    }

    /// Starts [`ProcessGroup::all_reduce_sum`] and returns at once; the sums are in place once
    /// [`PendingWork::wait`] returns. Collectives still run in the order they were started.
    pub fn all_reduce_sum_start(&self, tensors: &[Tensor]) -> Result<PendingWork, ShimError> {
        let p = ptrs(tensors);
        let mut raw = std::ptr::null_mut();
        check(unsafe {
            ddpm_pg_allreduce_sum_start(self.raw, p.as_ptr(), p.len() as c_int, &mut raw)
        })?;
        Ok(PendingWork { raw })
    }

    /// Copies rank `root`'s `tensor` into `tensor` on every rank.
    pub fn broadcast(&self, tensor: &Tensor, root: usize) -> Result<(), ShimError> {
        check(unsafe { ddpm_pg_broadcast(self.raw, tensor.as_ptr(), root as c_int) })
    }

    /// `out` (`[size * n]`) receives every rank's `input` (`[n]`) in rank order.
    pub fn all_gather(&self, out: &Tensor, input: &Tensor) -> Result<(), ShimError> {
        check(unsafe { ddpm_pg_allgather(self.raw, out.as_ptr(), input.as_ptr()) })
    }

    /// On rank 0, `out` (`[size * n]`) receives every rank's `input` (`[n]`) in rank order;
    /// the other ranks only send (their `out` is not touched and may be empty).
    pub fn gather(&self, out: &Tensor, input: &Tensor) -> Result<(), ShimError> {
        check(unsafe { ddpm_pg_gather(self.raw, out.as_ptr(), input.as_ptr()) })
    }

    /// Returns once every rank has reached its barrier.
    pub fn barrier(&self) -> Result<(), ShimError> {
        check(unsafe { ddpm_pg_barrier(self.raw) })
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        unsafe { ddpm_pg_free(self.raw) }
    }
}

/// A started collective (`c10d::Work`). Dropping it without waiting leaves the collective
/// running to completion in the backend.
#[derive(Debug)]
pub struct PendingWork {
    raw: *mut c_void,
}

unsafe impl Send for PendingWork {}

impl PendingWork {
    /// Blocks until the collective completes, fails, or outlives the group's timeout.
    pub fn wait(self) -> Result<(), ShimError> {
        check(unsafe { ddpm_work_wait(self.raw) })
    }
}

impl Drop for PendingWork {
    fn drop(&mut self) {
        unsafe { ddpm_work_free(self.raw) }
    }
}

/// `flat <- cat([t.flatten() for t in tensors])` in one kernel; the sizes must add up to
/// `flat`'s and the dtypes agree.
pub fn flat_pack(flat: &Tensor, tensors: &[Tensor]) -> Result<(), ShimError> {
    let p = ptrs(tensors);
    check(unsafe { ddpm_flat_pack(flat.as_ptr(), p.as_ptr(), p.len() as c_int) })
}

/// The reverse of [`flat_pack`]: each tensor receives its slice of `flat`, in one
/// `_foreach_copy_`.
pub fn flat_unpack(flat: &Tensor, tensors: &[Tensor]) -> Result<(), ShimError> {
    flat_unpack_div(flat, tensors, 1.0)
}

/// [`flat_unpack`] with each slice divided by `divisor` on the way (one pass over memory):
/// the averaging step after a bucket's sum over ranks.
pub fn flat_unpack_div(flat: &Tensor, tensors: &[Tensor], divisor: f64) -> Result<(), ShimError> {
    let p = ptrs(tensors);
    check(unsafe { ddpm_flat_unpack(flat.as_ptr(), p.as_ptr(), p.len() as c_int, divisor) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    fn single_rank_gloo() -> (Store, ProcessGroup) {
        let timeout = Duration::from_secs(20);
        let store = Store::tcp("127.0.0.1", 0, 1, true, timeout).unwrap();
        assert_ne!(store.port().unwrap(), 0);
        let prefixed = store.prefixed("test").unwrap();
        let device = GlooDevice::Hostname("127.0.0.1".into());
        let pg = ProcessGroup::gloo(&prefixed, 0, 1, timeout, &device).unwrap();
        (store, pg)
    }

    #[test]
    fn store_sets_gets_and_checks_keys_under_a_prefix() {
        let store = Store::tcp("127.0.0.1", 0, 1, true, Duration::from_secs(10)).unwrap();
        let a = store.prefixed("a").unwrap();
        a.set("k", b"value\0bytes").unwrap();
        assert_eq!(a.get("k").unwrap(), b"value\0bytes");
        assert!(a.check("k").unwrap());
        assert!(store.check("a/k").unwrap(), "PrefixStore writes under prefix + '/'");
        assert!(!store.check("k").unwrap());
        assert!(store.set("bad\0key", b"").is_err());
    }

    #[test]
    fn single_rank_gloo_collectives_are_identities() {
        let (_store, pg) = single_rank_gloo();
        assert_eq!((pg.backend(), pg.rank(), pg.size()), (Backend::Gloo, 0, 1));
        let a = Tensor::from_slice(&[1.0f32, 2.0, 3.0]);
        let b = Tensor::from_slice(&[4.0f32]);
        pg.all_reduce_sum(&[a.shallow_clone(), b.shallow_clone()]).unwrap();
        pg.all_reduce_sum(std::slice::from_ref(&a)).unwrap();
        let pending = pg.all_reduce_sum_start(std::slice::from_ref(&b)).unwrap();
        pending.wait().unwrap();
        assert_eq!(Vec::<f32>::try_from(&a).unwrap(), vec![1.0, 2.0, 3.0]);
        assert_eq!(Vec::<f32>::try_from(&b).unwrap(), vec![4.0]);
        pg.broadcast(&a, 0).unwrap();
        let out = Tensor::zeros([3], (Kind::Float, Device::Cpu));
        pg.all_gather(&out, &a).unwrap();
        assert_eq!(Vec::<f32>::try_from(&out).unwrap(), vec![1.0, 2.0, 3.0]);
        let out = Tensor::zeros([3], (Kind::Float, Device::Cpu));
        pg.gather(&out, &a).unwrap();
        assert_eq!(Vec::<f32>::try_from(&out).unwrap(), vec![1.0, 2.0, 3.0]);
        pg.barrier().unwrap();
    }

    #[test]
    fn collective_misuse_is_an_error_not_an_abort() {
        let (_store, pg) = single_rank_gloo();
        // allreduce_coalesced needs one dtype; the broadcast root must be a rank.
        let mixed = [Tensor::from_slice(&[1.0f32]), Tensor::from_slice(&[1.0f64])];
        let e = pg.all_reduce_sum(&mixed).unwrap_err();
        assert!(!e.0.is_empty());
        assert!(pg.broadcast(&mixed[0], 3).is_err());
        // The group still works after a rejected call.
        pg.all_reduce_sum(&mixed[..1]).unwrap();
    }

    #[test]
    fn flat_pack_and_unpack_round_trip() {
        let ts = [
            Tensor::arange(6, (Kind::Float, Device::Cpu)).view([2, 3]),
            Tensor::from_slice(&[10.0f32]),
            Tensor::from_slice(&[20.0f32, 30.0]),
        ];
        let flat = Tensor::zeros([9], (Kind::Float, Device::Cpu));
        flat_pack(&flat, &ts).unwrap();
        assert_eq!(
            Vec::<f32>::try_from(&flat).unwrap(),
            vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 10.0, 20.0, 30.0]
        );
        let _ = flat.shallow_clone().g_mul_scalar_(2.0);
        flat_unpack(&flat, &ts).unwrap();
        assert_eq!(ts[0].size(), vec![2, 3]);
        assert_eq!(
            Vec::<f32>::try_from(ts[0].view([-1])).unwrap(),
            vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]
        );
        assert_eq!(Vec::<f32>::try_from(&ts[2]).unwrap(), vec![40.0, 60.0]);
        flat_unpack_div(&flat, &ts, 4.0).unwrap();
        assert_eq!(Vec::<f32>::try_from(&ts[2]).unwrap(), vec![10.0, 15.0]);
        assert_eq!(ts[0].size(), vec![2, 3]);
        let short = Tensor::zeros([4], (Kind::Float, Device::Cpu));
        assert!(flat_unpack(&short, &ts).is_err(), "sizes must add up");
    }

    #[test]
    fn nccl_is_compiled_or_its_absence_explained() {
        assert_eq!(has_nccl(), nccl_missing_reason().is_none(), "{:?}", nccl_missing_reason());
        if tch::Cuda::is_available() {
            return;
        }
        // Without NCCL the reason; with NCCL but without a GPU, c10d's refusal: an error either
        // way, never an abort.
        let store = Store::tcp("127.0.0.1", 0, 1, true, Duration::from_secs(5)).unwrap();
        let e = ProcessGroup::nccl(&store, 0, 1, Duration::from_secs(5), 0).unwrap_err();
        if !has_nccl() {
            assert!(e.0.contains("without NCCL"), "{e}");
        }
        println!("ProcessGroup::nccl without a GPU: {e}");
    }
}
