//! # ddpm-shim
//!
//! What tch 0.24's generated API leaves out, through a small C++ file built against the same
//! libtorch headers: the autocast dtype (tch's `autocast` casts to fp16 only, we want bf16),
//! torch's fused Adam kernel, `_foreach_*` ops (EMA and gradient norm in a few launches), and
//! CUDA graphs. Every call is exception-safe: C++ errors come back as [`ShimError`].
//! [`dist`] wraps libtorch's c10d (TCPStore, Gloo and NCCL process groups).

pub mod dist;

use std::ffi::{CStr, c_char, c_int, c_void};
use tch::{Device, Kind, Tensor};
use torch_sys::C_tensor;

unsafe extern "C" {
    fn ddpm_free_error(e: *mut c_char);
    fn ddpm_autocast_enter(
        device: c_int,
        dtype: c_int,
        prev_enabled: *mut c_int,
        prev_dtype: *mut c_int,
    ) -> *mut c_char;
    fn ddpm_autocast_exit(device: c_int, prev_enabled: c_int, prev_dtype: c_int) -> *mut c_char;
    fn ddpm_autocast_is_enabled(device: c_int, enabled: *mut c_int) -> *mut c_char;
    fn ddpm_fused_adam(
        params: *const *const C_tensor,
        grads: *const *const C_tensor,
        exp_avgs: *const *const C_tensor,
        exp_avg_sqs: *const *const C_tensor,
        state_steps: *const *const C_tensor,
        n: c_int,
        lr: f64,
        beta1: f64,
        beta2: f64,
        weight_decay: f64,
        eps: f64,
    ) -> *mut c_char;
    fn ddpm_foreach_lerp_scalar(
        selfs: *const *const C_tensor,
        others: *const *const C_tensor,
        n: c_int,
        w: f64,
    ) -> *mut c_char;
    fn ddpm_foreach_norm(
        ts: *const *const C_tensor,
        n: c_int,
        out: *mut *mut C_tensor,
    ) -> *mut c_char;
    fn ddpm_foreach_mul_tensor(
        ts: *const *const C_tensor,
        n: c_int,
        scalar: *const C_tensor,
    ) -> *mut c_char;
    fn ddpm_foreach_zero(ts: *const *const C_tensor, n: c_int) -> *mut c_char;
    fn ddpm_set_cuda_math(tf32: c_int, cudnn_benchmark: c_int) -> *mut c_char;
    fn ddpm_set_deterministic(on: c_int) -> *mut c_char;
    fn ddpm_op_counter_start() -> *mut c_char;
    fn ddpm_op_counter_stop(
        count: *mut i64,
        top_level: *mut i64,
        host_reads: *mut i64,
    ) -> *mut c_char;
    fn ddpm_has_cuda_graphs() -> c_int;
    fn ddpm_graph_new(out: *mut *mut c_void) -> *mut c_char;
    fn ddpm_graph_capture_begin(g: *mut c_void) -> *mut c_char;
    fn ddpm_graph_capture_end(g: *mut c_void) -> *mut c_char;
    fn ddpm_graph_replay(g: *mut c_void) -> *mut c_char;
    fn ddpm_graph_free(g: *mut c_void);
}

/// A libtorch error raised inside the shim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShimError(pub String);

impl std::fmt::Display for ShimError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // libtorch messages carry a C++ backtrace after the first line.
        write!(f, "libtorch: {}", self.0.lines().next().unwrap_or_default())
    }
}

impl std::error::Error for ShimError {}

fn check(e: *mut c_char) -> Result<(), ShimError> {
    if e.is_null() {
        return Ok(());
    }
    // Safety: a non-null return is a NUL-terminated strdup'd string that we own.
    let msg = unsafe { CStr::from_ptr(e) }.to_string_lossy().into_owned();
    unsafe { ddpm_free_error(e) };
    Err(ShimError(msg))
}

fn ptrs(ts: &[Tensor]) -> Vec<*const C_tensor> {
    ts.iter().map(|t| t.as_ptr()).collect()
}

fn device_code(device: Device) -> c_int {
    if device.is_cuda() { 1 } else { 0 }
}

/// c10::ScalarType codes of the kinds autocast can use.
fn scalar_type(kind: Kind) -> c_int {
    match kind {
        Kind::Half => 5,
        Kind::Float => 6,
        Kind::BFloat16 => 15,
        other => panic!("autocast dtype must be Half, Float or BFloat16, got {other:?}"),
    }
}

/// Mixed precision for the current thread: ops that autocast covers run in `dtype` on
/// `device`'s type until the guard is dropped (like `torch.autocast(device, dtype)`).
#[derive(Debug)]
pub struct AutocastGuard {
    device: c_int,
    prev_enabled: c_int,
    prev_dtype: c_int,
}

impl AutocastGuard {
    pub fn new(device: Device, dtype: Kind) -> Result<Self, ShimError> {
        let (mut prev_enabled, mut prev_dtype) = (0, 0);
        let device = device_code(device);
        check(unsafe {
            ddpm_autocast_enter(device, scalar_type(dtype), &mut prev_enabled, &mut prev_dtype)
        })?;
        Ok(Self { device, prev_enabled, prev_dtype })
    }
}

impl Drop for AutocastGuard {
    fn drop(&mut self) {
        let _ =
            check(unsafe { ddpm_autocast_exit(self.device, self.prev_enabled, self.prev_dtype) });
    }
}

/// Whether autocast is on for `device`'s type on this thread.
pub fn autocast_enabled(device: Device) -> bool {
    let mut e = 0;
    check(unsafe { ddpm_autocast_is_enabled(device_code(device), &mut e) })
        .expect("autocast query");
    e != 0
}

/// `torch.optim.Adam(fused=True)`'s step over all parameters at once. `state_steps` are f32
/// scalars on the parameters' device, one per parameter, holding the number of steps taken;
/// like torch's optimiser, this increments them before the update.
pub fn fused_adam(
    params: &[Tensor],
    grads: &[Tensor],
    exp_avgs: &[Tensor],
    exp_avg_sqs: &[Tensor],
    state_steps: &[Tensor],
    lr: f64,
    betas: (f64, f64),
    weight_decay: f64,
    eps: f64,
) -> Result<(), ShimError> {
    let n = params.len();
    assert!(
        grads.len() == n && exp_avgs.len() == n && exp_avg_sqs.len() == n && state_steps.len() == n
    );
    let (p, g, m, v, s) =
        (ptrs(params), ptrs(grads), ptrs(exp_avgs), ptrs(exp_avg_sqs), ptrs(state_steps));
    check(unsafe {
        ddpm_fused_adam(
            p.as_ptr(),
            g.as_ptr(),
            m.as_ptr(),
            v.as_ptr(),
            s.as_ptr(),
            n as c_int,
            lr,
            betas.0,
            betas.1,
            weight_decay,
            eps,
        )
    })
}

/// `selfs[i] += weight * (others[i] - selfs[i])` for every i, in one call.
pub fn foreach_lerp_(selfs: &[Tensor], others: &[Tensor], weight: f64) -> Result<(), ShimError> {
    assert_eq!(selfs.len(), others.len());
    let (a, b) = (ptrs(selfs), ptrs(others));
    check(unsafe { ddpm_foreach_lerp_scalar(a.as_ptr(), b.as_ptr(), a.len() as c_int, weight) })
}

/// The 2-norm of every tensor, as 0-d tensors on their devices.
pub fn foreach_norm(ts: &[Tensor]) -> Result<Vec<Tensor>, ShimError> {
    let p = ptrs(ts);
    let mut out = vec![std::ptr::null_mut(); ts.len()];
    check(unsafe { ddpm_foreach_norm(p.as_ptr(), p.len() as c_int, out.as_mut_ptr()) })?;
    // Safety: each pointer is a fresh heap at::Tensor whose ownership passes to us.
    Ok(out.into_iter().map(|t| unsafe { Tensor::from_ptr(t) }).collect())
}

/// `ts[i] *= scalar` for a 0-d tensor, without reading it back to the host.
pub fn foreach_mul_(ts: &[Tensor], scalar: &Tensor) -> Result<(), ShimError> {
    let p = ptrs(ts);
    check(unsafe { ddpm_foreach_mul_tensor(p.as_ptr(), p.len() as c_int, scalar.as_ptr()) })
}

/// `ts[i] = 0` for every i, in one call (zeroing gradients).
pub fn foreach_zero_(ts: &[Tensor]) -> Result<(), ShimError> {
    let p = ptrs(ts);
    check(unsafe { ddpm_foreach_zero(p.as_ptr(), p.len() as c_int) })
}

/// TF32 tensor-core math for f32 matmuls and convolutions, and cuDNN's autotuner (CUDA only;
/// harmless elsewhere).
pub fn set_cuda_math(tf32: bool, cudnn_benchmark: bool) -> Result<(), ShimError> {
    check(unsafe { ddpm_set_cuda_math(tf32 as c_int, cudnn_benchmark as c_int) })
}

/// Deterministic algorithms everywhere (`torch.use_deterministic_algorithms(True)`, cuDNN's
/// deterministic kernels, no autotuning), so that reruns on one GPU are bit-identical. An op
/// without a deterministic kernel then fails instead of running. cuBLAS also needs
/// `CUBLAS_WORKSPACE_CONFIG=:4096:8` in the environment.
pub fn set_deterministic(on: bool) -> Result<(), ShimError> {
    check(unsafe { ddpm_set_deterministic(on as c_int) })
}

/// ATen operator calls counted by [`count_ops`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpCount {
    /// Every dispatcher call, nested ones (an op's own sub-ops) included.
    pub all: i64,
    /// Calls issued directly by the measured code: on a GPU, foreach and fused ops are one
    /// call each whatever the number of tensors.
    pub top_level: i64,
    /// Reads of a tensor's value that the measured code issues itself (top-level `aten::item`
    /// or `aten::_local_scalar_dense`): on a GPU each one waits for the device to finish the
    /// work queued so far. Reads inside another op (PyTorch's CPU `_fused_adam_` reads each
    /// step count) are not counted.
    pub host_reads: i64,
}

/// Counts the ATen operator calls that `f` makes (process-wide).
pub fn count_ops<R>(f: impl FnOnce() -> R) -> Result<(R, OpCount), ShimError> {
    check(unsafe { ddpm_op_counter_start() })?;
    let r = f();
    let (mut all, mut top_level, mut host_reads) = (0i64, 0i64, 0i64);
    check(unsafe { ddpm_op_counter_stop(&mut all, &mut top_level, &mut host_reads) })?;
    Ok((r, OpCount { all, top_level, host_reads }))
}

/// Whether this build can capture CUDA graphs (it found the CUDA headers of a CUDA libtorch).
pub fn has_cuda_graphs() -> bool {
    unsafe { ddpm_has_cuda_graphs() != 0 }
}

/// A captured CUDA graph (`at::cuda::CUDAGraph` on its own side stream). Capture a fixed
/// sequence of kernels on static input/output tensors once, then replay it with one launch.
#[derive(Debug)]
pub struct CudaGraph {
    raw: *mut c_void,
}

impl CudaGraph {
    pub fn new() -> Result<Self, ShimError> {
        let mut raw = std::ptr::null_mut();
        check(unsafe { ddpm_graph_new(&mut raw) })?;
        Ok(Self { raw })
    }

    /// Captures the kernels `f` launches (on the graph's side stream). Panic-safe: when `f`
    /// panics (tch ops panic on failure), the capture is ended before the panic goes on, so
    /// the side stream does not stay current and later CUDA work (another capture included)
    /// still runs.
    pub fn capture<R>(&mut self, f: impl FnOnce() -> R) -> Result<R, ShimError> {
        check(unsafe { ddpm_graph_capture_begin(self.raw) })?;
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        let ended = check(unsafe { ddpm_graph_capture_end(self.raw) });
        match r {
            Ok(r) => ended.map(|()| r),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }

    pub fn replay(&self) -> Result<(), ShimError> {
        check(unsafe { ddpm_graph_replay(self.raw) })
    }
}

impl Drop for CudaGraph {
    fn drop(&mut self) {
        unsafe { ddpm_graph_free(self.raw) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn autocast_guard_switches_cpu_matmul_to_bf16_and_restores() {
        let a = Tensor::ones([4, 4], (Kind::Float, Device::Cpu));
        assert!(!autocast_enabled(Device::Cpu));
        {
            let _g = AutocastGuard::new(Device::Cpu, Kind::BFloat16).unwrap();
            assert!(autocast_enabled(Device::Cpu));
            assert_eq!(a.matmul(&a).kind(), Kind::BFloat16);
        }
        assert!(!autocast_enabled(Device::Cpu));
        assert_eq!(a.matmul(&a).kind(), Kind::Float);
    }

    #[test]
    fn foreach_ops_match_per_tensor_ops() {
        let a = vec![Tensor::from_slice(&[1.0f32, 2.0]), Tensor::from_slice(&[3.0f32, 4.0, 12.0])];
        let b = vec![Tensor::from_slice(&[3.0f32, 6.0]), Tensor::from_slice(&[5.0f32, 4.0, 0.0])];
        foreach_lerp_(&a, &b, 0.25).unwrap();
        assert_eq!(Vec::<f32>::try_from(&a[0]).unwrap(), vec![1.5, 3.0]);
        assert_eq!(Vec::<f32>::try_from(&a[1]).unwrap(), vec![3.5, 4.0, 9.0]);
        let n = foreach_norm(&b).unwrap();
        assert!((n[0].double_value(&[]) - 45f64.sqrt()).abs() < 1e-6);
        assert!((n[1].double_value(&[]) - 41f64.sqrt()).abs() < 1e-6);
        foreach_mul_(&b, &Tensor::from(0.5f32)).unwrap();
        assert_eq!(Vec::<f32>::try_from(&b[1]).unwrap(), vec![2.5, 2.0, 0.0]);
    }

    #[test]
    fn op_counter_counts_and_foreach_zero_zeroes() {
        let ts = vec![
            Tensor::ones([3], (Kind::Float, Device::Cpu)),
            Tensor::ones([2], (Kind::Float, Device::Cpu)),
        ];
        let (_, loop_ops) = count_ops(|| {
            for t in &ts {
                let _ = t.shallow_clone().zero_();
            }
        })
        .unwrap();
        assert_eq!(loop_ops.top_level, 2, "{loop_ops:?}");
        let (_, fused_ops) = count_ops(|| foreach_zero_(&ts).unwrap()).unwrap();
        assert_eq!(fused_ops.top_level, 1, "{fused_ops:?}");
        assert_eq!((loop_ops.host_reads, fused_ops.host_reads), (0, 0));
        let (_, read) = count_ops(|| {
            let s = ts[0].sum(Kind::Float);
            (s.double_value(&[]), s.int64_value(&[]))
        })
        .unwrap();
        assert_eq!(read.host_reads, 2, "two item() reads: {read:?}");
        assert!(ts.iter().all(|t| t.sum(Kind::Float).double_value(&[]) == 0.0));
        set_cuda_math(true, true).unwrap();
        set_deterministic(true).unwrap();
        set_deterministic(false).unwrap();
    }

    #[test]
    fn errors_come_back_as_values() {
        let a = vec![Tensor::from_slice(&[1.0f32, 2.0])];
        let b = vec![Tensor::from_slice(&[1.0f32, 2.0, 3.0])];
        let e = foreach_lerp_(&a, &b, 0.5).unwrap_err();
        assert!(!e.0.is_empty());
    }

    /// On a CUDA machine a graph captured once replays its kernels on whatever its static input
    /// holds at replay time; without a GPU, creating or capturing a graph is an error value,
    /// not a crash. Regression: the test returned early exactly where CUDA was present, so the
    /// graph itself was never tested.
    #[test]
    fn cuda_graph_replays_captured_kernels_on_a_gpu_and_fails_cleanly_without_one() {
        if !tch::Cuda::is_available() {
            let e = CudaGraph::new().and_then(|mut g| g.capture(|| ())).unwrap_err();
            assert!(!e.0.is_empty());
            return;
        }
        assert!(
            has_cuda_graphs(),
            "CUDA is present but this build found no CUDA headers: --cuda-graph cannot work"
        );
        let device = Device::Cuda(0);
        let x = Tensor::zeros([4], (Kind::Float, device));
        let y = Tensor::zeros([4], (Kind::Float, device));
        // A run outside the capture first, as torch.cuda.graphs' warm-up does.
        y.shallow_clone().copy_(&(&x * 2.0 + 1.0));
        let _ = y.shallow_clone().zero_();
        let mut graph = CudaGraph::new().unwrap();
        graph.capture(|| y.shallow_clone().copy_(&(&x * 2.0 + 1.0))).unwrap();
        for v in [3.0f32, -1.5] {
            let _ = x.shallow_clone().fill_(v as f64);
            graph.replay().unwrap();
            tch::Cuda::synchronize(0);
            let got = Vec::<f32>::try_from(y.to_device(Device::Cpu)).unwrap();
            assert_eq!(got, vec![2.0 * v + 1.0; 4], "replay after x = {v}");
        }
        // Regression: a panic inside the captured function left the capture open (the side
        // stream current), so every later CUDA call failed. It is ended, and the next capture
        // works.
        let mut broken = CudaGraph::new().unwrap();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            broken.capture(|| panic!("an op failed inside the capture"))
        }));
        assert!(r.is_err());
        let z = (&x + 1.0).to_device(Device::Cpu);
        assert_eq!(Vec::<f32>::try_from(z).unwrap(), vec![-0.5; 4], "CUDA work after the panic");
        let mut again = CudaGraph::new().unwrap();
        again.capture(|| y.shallow_clone().copy_(&(&x * 3.0))).unwrap();
        again.replay().unwrap();
        tch::Cuda::synchronize(0);
        assert_eq!(Vec::<f32>::try_from(y.to_device(Device::Cpu)).unwrap(), vec![-4.5; 4]);
    }
}
