// A small C ABI over libtorch for what tch's generated API leaves out.
// Tensors cross the boundary as tch's handles (at::Tensor*). No C++ exception escapes:
// each function returns nullptr on success or a strdup'd message the caller frees.
#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <ATen/record_function.h>
#include <atomic>
#include <cstring>
#include <vector>

#ifdef DDPM_WITH_CUDA
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

typedef at::Tensor *tensor;

static char *error_message(const char *what) { return strdup(what); }

#define GUARD(body)                                                                                \
  try {                                                                                            \
    body;                                                                                          \
    return nullptr;                                                                                \
  } catch (const std::exception &e) {                                                              \
    return error_message(e.what());                                                                \
  } catch (...) {                                                                                  \
    return error_message("unknown C++ exception");                                                 \
  }

static std::vector<at::Tensor> list(tensor *ts, int n) {
  std::vector<at::Tensor> v;
  v.reserve(n);
  for (int i = 0; i < n; i++) v.push_back(*ts[i]);
  return v;
}

static at::DeviceType device_type(int device) { return device == 1 ? at::kCUDA : at::kCPU; }

extern "C" {

void ddpm_free_error(char *e) { free(e); }

char *ddpm_autocast_enter(int device, int dtype, int *prev_enabled, int *prev_dtype) {
  GUARD({
    auto dev = device_type(device);
    *prev_enabled = at::autocast::is_autocast_enabled(dev) ? 1 : 0;
    *prev_dtype = static_cast<int>(at::autocast::get_autocast_dtype(dev));
    at::autocast::set_autocast_enabled(dev, true);
    at::autocast::set_autocast_dtype(dev, static_cast<at::ScalarType>(dtype));
    at::autocast::increment_nesting();
  })
}

char *ddpm_autocast_exit(int device, int prev_enabled, int prev_dtype) {
  GUARD({
    auto dev = device_type(device);
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    at::autocast::set_autocast_enabled(dev, prev_enabled != 0);
    at::autocast::set_autocast_dtype(dev, static_cast<at::ScalarType>(prev_dtype));
  })
}

char *ddpm_autocast_is_enabled(int device, int *enabled) {
  GUARD({ *enabled = at::autocast::is_autocast_enabled(device_type(device)) ? 1 : 0; })
}

// torch.optim.Adam(fused=True)'s kernel: one launch per dtype/device group for all tensors.
char *ddpm_fused_adam(tensor *params, tensor *grads, tensor *exp_avgs, tensor *exp_avg_sqs,
                      tensor *state_steps, int n, double lr, double beta1, double beta2,
                      double weight_decay, double eps) {
  GUARD({
    std::vector<at::Tensor> none;
    // torch.optim.Adam increments the step counters before the kernel reads them.
    at::_foreach_add_(list(state_steps, n), at::Scalar(1.0));
    at::_fused_adam_(list(params, n), list(grads, n), list(exp_avgs, n), list(exp_avg_sqs, n),
                     none, list(state_steps, n), lr, beta1, beta2, weight_decay, eps,
                     /*amsgrad=*/false, /*maximize=*/false, std::nullopt, std::nullopt);
  })
}

// self_i <- self_i + w (other_i - self_i) for all i: the EMA update in one call.
char *ddpm_foreach_lerp_scalar(tensor *selfs, tensor *others, int n, double weight) {
  GUARD({ at::_foreach_lerp_(list(selfs, n), list(others, n), at::Scalar(weight)); })
}

// out_i <- ||t_i||_2 as new tensors.
char *ddpm_foreach_norm(tensor *ts, int n, tensor *out) {
  GUARD({
    auto norms = at::_foreach_norm(list(ts, n), at::Scalar(2.0));
    for (int i = 0; i < n; i++) out[i] = new at::Tensor(norms[i]);
  })
}

// t_i <- t_i * s for a 0-d tensor s (stays on the device: no host sync).
char *ddpm_foreach_mul_tensor(tensor *ts, int n, tensor scalar) {
  GUARD({ at::_foreach_mul_(list(ts, n), *scalar); })
}

// t_i <- 0 for all i.
char *ddpm_foreach_zero(tensor *ts, int n) { GUARD({ at::_foreach_zero_(list(ts, n)); }) }

// TF32 tensor-core matmuls and convolutions on Ampere and newer (f32 storage, 10-bit mantissa
// products), and cuDNN's autotuner.
char *ddpm_set_cuda_math(int tf32, int cudnn_benchmark) {
  GUARD({
    at::globalContext().setAllowTF32CuBLAS(tf32 != 0);
    at::globalContext().setAllowTF32CuDNN(tf32 != 0);
    at::globalContext().setBenchmarkCuDNN(cudnn_benchmark != 0);
  })
}

// Deterministic kernels (torch.use_deterministic_algorithms(True) with cuDNN's deterministic
// algorithms and no autotuning): reruns on one GPU give bit-identical results, at some speed.
// cuBLAS also needs CUBLAS_WORKSPACE_CONFIG=:4096:8 in the environment.
char *ddpm_set_deterministic(int on) {
  GUARD({
    at::globalContext().setDeterministicAlgorithms(on != 0, /*warn_only=*/false);
    at::globalContext().setDeterministicCuDNN(on != 0);
    if (on != 0) at::globalContext().setBenchmarkCuDNN(false);
  })
}

// Counting ATen operator calls (every dispatcher call, nested ones included) between start and
// stop: the host-side work a step costs, and on a GPU an upper bound on its kernel launches.
// The callback is the calling thread's (PyTorch carries it into the work that thread starts, the
// autograd engine's included), so calls of other threads of the process are not counted.
static std::atomic<long long> g_op_count{0};
static std::atomic<long long> g_top_count{0};
// Host reads the measured code issues itself: top-level aten::item or aten::_local_scalar_dense
// (what tch's double_value, int64_value and f64::try_from run; on a GPU the host waits there
// for the device). Reads nested inside another op are that op's own: PyTorch's CPU
// _fused_adam_ reads each parameter's step count, which its CUDA kernel does not.
static std::atomic<long long> g_host_reads{0};
static thread_local int t_depth = 0;
static at::CallbackHandle g_op_handle = 0;

static std::unique_ptr<at::ObserverContext> count_op(const at::RecordFunction &fn) {
  g_op_count.fetch_add(1, std::memory_order_relaxed);
  const char *name = fn.name();
  if (t_depth == 0 && (std::strcmp(name, "aten::item") == 0 ||
                       std::strcmp(name, "aten::_local_scalar_dense") == 0))
    g_host_reads.fetch_add(1, std::memory_order_relaxed);
  if (t_depth++ == 0) g_top_count.fetch_add(1, std::memory_order_relaxed);
  return nullptr;
}

static void end_op(const at::RecordFunction &, at::ObserverContext *) { t_depth--; }

char *ddpm_op_counter_start() {
  GUARD({
    g_op_count = 0;
    g_top_count = 0;
    g_host_reads = 0;
    g_op_handle = at::addThreadLocalCallback(
        at::RecordFunctionCallback(&count_op, &end_op).scopes({at::RecordScope::FUNCTION}));
  })
}

// All calls (nested ones included), top-level calls (those the caller issued itself) and host
// reads.
char *ddpm_op_counter_stop(long long *count, long long *top_level, long long *host_reads) {
  GUARD({
    at::removeCallback(g_op_handle);
    *count = g_op_count.load();
    *top_level = g_top_count.load();
    *host_reads = g_host_reads.load();
  })
}

int ddpm_has_cuda_graphs() {
#ifdef DDPM_WITH_CUDA
  return 1;
#else
  return 0;
#endif
}

#ifdef DDPM_WITH_CUDA
struct ddpm_graph {
  at::cuda::CUDAGraph graph;
  c10::cuda::CUDAStream stream = c10::cuda::getStreamFromPool();
};

char *ddpm_graph_new(void **out) { GUARD({ *out = new ddpm_graph(); }) }

// Makes the graph's side stream current (captures must not run on the legacy default stream).
char *ddpm_graph_capture_begin(void *g) {
  GUARD({
    auto *gr = static_cast<ddpm_graph *>(g);
    // Autocast's cast cache must not live across a capture (as torch.cuda.graph does).
    at::autocast::set_autocast_cache_enabled(false);
    gr->stream.synchronize();
    c10::cuda::getCurrentCUDAStream().synchronize();
    c10::cuda::setCurrentCUDAStream(gr->stream);
    gr->graph.capture_begin();
  })
}

// Ends the capture; the caller's stream and autocast's cache come back even when capture_end
// throws (a capture invalidated by an op that failed inside it), so a failed capture leaves the
// process able to run CUDA work and to capture again.
char *ddpm_graph_capture_end(void *g) {
  GUARD({
    auto *gr = static_cast<ddpm_graph *>(g);
    struct Restore {
      ~Restore() {
        at::autocast::set_autocast_cache_enabled(true);
        c10::cuda::setCurrentCUDAStream(c10::cuda::getDefaultCUDAStream());
      }
    } restore;
    gr->graph.capture_end();
    gr->stream.synchronize();
  })
}

char *ddpm_graph_replay(void *g) { GUARD({ static_cast<ddpm_graph *>(g)->graph.replay(); }) }

void ddpm_graph_free(void *g) { delete static_cast<ddpm_graph *>(g); }
#else
char *ddpm_graph_new(void **) { return error_message("built without CUDA headers"); }
char *ddpm_graph_capture_begin(void *) { return error_message("built without CUDA headers"); }
char *ddpm_graph_capture_end(void *) { return error_message("built without CUDA headers"); }
char *ddpm_graph_replay(void *) { return error_message("built without CUDA headers"); }
void ddpm_graph_free(void *) {}
#endif
}
