// A C ABI over libtorch's own distributed engine, c10d: the TCPStore rendezvous, the Gloo
// process group (CPU) and the NCCL process group (CUDA), and the flat-buffer copies that DDP's
// reducer does around its bucket all-reduces.
//
// Built by build.rs with -DUSE_C10D_GLOO against the wheel's c10d headers and our stand-ins for
// the five gloo headers they include (csrc/gloo_decls/README.md says what and why), and with
// -DUSE_C10D_NCCL only when the venv ships nccl.h and a CUDA libtorch. Everything links against
// the symbols libtorch_cpu.so / libtorch_cuda.so export.
//
// Like shim.cpp: no C++ exception escapes; each function returns nullptr on success or a
// strdup'd message the caller frees with ddpm_free_error. Every blocking call waits on its
// c10d::Work with the group's timeout, so a dead or hung peer is an error, never a hang.
#include <ATen/ATen.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#ifdef USE_C10D_NCCL
#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#ifndef USE_C10D_GLOO
#error "dist.cpp must be compiled with -DUSE_C10D_GLOO (see build.rs)"
#endif

typedef at::Tensor *tensor;
using millis = std::chrono::milliseconds;

// c10::Error::what() appends a C++ backtrace; the message alone is what a user needs. Variadic
// because braces do not protect commas inside a macro argument.
#define DIST_GUARD(...)                                                                            \
  try {                                                                                            \
    __VA_ARGS__;                                                                                   \
    return nullptr;                                                                                \
  } catch (const c10::Error &e) {                                                                  \
    return strdup(e.what_without_backtrace());                                                     \
  } catch (const std::exception &e) {                                                              \
    return strdup(e.what());                                                                       \
  } catch (...) {                                                                                  \
    return strdup("unknown C++ exception");                                                        \
  }

namespace {

struct Store {
  c10::intrusive_ptr<c10d::Store> store;
};

struct Group {
  c10::intrusive_ptr<c10d::Backend> backend;
  millis timeout;
};

struct Pending {
  c10::intrusive_ptr<c10d::Work> work;
  millis timeout;
};

std::vector<at::Tensor> tensor_list(tensor *ts, int n) {
  std::vector<at::Tensor> v;
  v.reserve(n);
  for (int i = 0; i < n; i++) v.push_back(*ts[i]);
  return v;
}

std::vector<std::string> split_commas(const std::string &s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, ','))
    if (!item.empty()) out.push_back(item);
  return out;
}

// Work::wait(timeout) returns when the collective completed, rethrows its error (Gloo: e.g.
// "Connection closed by peer"), or throws "Operation timed out!" after the timeout.
void wait(Group *g, const c10::intrusive_ptr<c10d::Work> &work) { work->wait(g->timeout); }

} // namespace

extern "C" {

// A TCPStore client of host:port, or its server when is_server != 0 (port 0 picks a free port;
// ddpm_store_port tells which). Like torch.distributed.TCPStore(host, port, world_size,
// is_master, timeout, multi_tenant=is_master): the server waits up to `timeout_ms` for
// world_size clients (itself included), a client retries the connection for as long.
char *ddpm_store_tcp(const char *host, int port, int world_size, int is_server,
                     long long timeout_ms, void **out) {
  DIST_GUARD({
    c10d::TCPStoreOptions opts;
    opts.port = static_cast<std::uint16_t>(port);
    opts.isServer = is_server != 0;
    opts.numWorkers = static_cast<std::size_t>(world_size);
    opts.waitWorkers = true;
    opts.timeout = millis(timeout_ms);
    opts.multiTenant = is_server != 0;
    auto store = c10::make_intrusive<c10d::TCPStore>(std::string(host), opts);
    *out = new Store{store};
  })
}

// The port a TCPStore is bound to or connected to.
char *ddpm_store_port(void *s, int *port) {
  DIST_GUARD({
    auto *tcp = dynamic_cast<c10d::TCPStore *>(static_cast<Store *>(s)->store.get());
    TORCH_CHECK(tcp != nullptr, "not a TCPStore");
    *port = tcp->getPort();
  })
}

// A view of `s` whose keys all start with `prefix` (c10d::PrefixStore), sharing the connection.
char *ddpm_store_prefixed(void *s, const char *prefix, void **out) {
  DIST_GUARD({
    auto inner = static_cast<Store *>(s)->store;
    *out = new Store{c10::make_intrusive<c10d::PrefixStore>(std::string(prefix), inner)};
  })
}

char *ddpm_store_set(void *s, const char *key, const unsigned char *data, size_t len) {
  DIST_GUARD({
    std::vector<uint8_t> value(data, data + len);
    static_cast<Store *>(s)->store->set(std::string(key), value);
  })
}

// Blocks until the key exists (up to the store's timeout). *data is malloc'd; free it with
// ddpm_free_error.
char *ddpm_store_get(void *s, const char *key, unsigned char **data, size_t *len) {
  DIST_GUARD({
    auto value = static_cast<Store *>(s)->store->get(std::string(key));
    *len = value.size();
    *data = static_cast<unsigned char *>(malloc(value.size() + 1));
    TORCH_CHECK(*data != nullptr, "out of memory");
    if (!value.empty()) memcpy(*data, value.data(), value.size());
  })
}

// Whether the key exists, without waiting.
char *ddpm_store_check(void *s, const char *key, int *present) {
  DIST_GUARD({ *present = static_cast<Store *>(s)->store->check({std::string(key)}) ? 1 : 0; })
}

void ddpm_store_free(void *s) { delete static_cast<Store *>(s); }

// c10d::ProcessGroupGloo over the store. The transport device follows torch.distributed:
// one device per interface in `ifnames` (GLOO_SOCKET_IFNAME, comma-separated) if non-empty,
// else one bound to `hostname` if non-empty, else createDefaultDevice (this machine's hostname,
// falling back to the loopback address). `timeout_ms` bounds every gloo operation.
char *ddpm_pg_gloo(void *s, int rank, int size, long long timeout_ms, const char *ifnames,
                   const char *hostname, void **out) {
  DIST_GUARD({
    auto opts = c10d::ProcessGroupGloo::Options::create(millis(timeout_ms));
    bool lazy = c10d::getDefaultGlooLazyInit();
    auto names = split_commas(ifnames ? ifnames : "");
    if (!names.empty()) {
      for (auto &name : names)
        opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(name, lazy));
    } else if (hostname && *hostname) {
      opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(hostname, lazy));
    } else {
      opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice(lazy));
    }
    auto store = static_cast<Store *>(s)->store;
    auto pg = c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, size, opts);
    *out = new Group{pg, millis(timeout_ms)};
  })
}

int ddpm_pg_has_nccl() {
#ifdef USE_C10D_NCCL
  return 1;
#else
  return 0;
#endif
}

// c10d::ProcessGroupNCCL over the store, bound to cuda:device_index and connected eagerly (as
// torch.distributed.init_process_group(device_id=...) does), so a failing peer shows at start.
// cuda:device_index becomes the calling thread's current device (torch.cuda.set_device), so
// that this rank creates no CUDA context on GPU 0.
char *ddpm_pg_nccl(void *s, int rank, int size, long long timeout_ms, int device_index,
                   void **out) {
#ifdef USE_C10D_NCCL
  DIST_GUARD({
    c10::cuda::set_device(static_cast<c10::DeviceIndex>(device_index));
    auto opts = c10d::ProcessGroupNCCL::Options::create();
    opts->timeout = millis(timeout_ms);
    auto store = static_cast<Store *>(s)->store;
    auto pg = c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, size, opts);
    at::Device device(at::kCUDA, static_cast<c10::DeviceIndex>(device_index));
    pg->setBoundDeviceId(device);
    pg->eagerConnectSingleDevice(device);
    *out = new Group{pg, millis(timeout_ms)};
  })
#else
  (void)s, (void)rank, (void)size, (void)timeout_ms, (void)device_index, (void)out;
  return strdup("this build has no NCCL process group: ddpm-shim was compiled without nccl.h "
                "or without a CUDA libtorch");
#endif
}

void ddpm_pg_free(void *g) { delete static_cast<Group *>(g); }

// Sum over ranks, in place: one allreduce for one tensor, one allreduce_coalesced (a single
// collective over all of them; same dtype and device) for several.
char *ddpm_pg_allreduce_sum(void *g, tensor *ts, int n) {
  DIST_GUARD({
    auto *grp = static_cast<Group *>(g);
    auto v = tensor_list(ts, n);
    if (n == 1) {
      c10d::AllreduceOptions opts;
      opts.timeout = grp->timeout;
      wait(grp, grp->backend->allreduce(v, opts));
    } else {
      c10d::AllreduceCoalescedOptions opts;
      opts.timeout = grp->timeout;
      wait(grp, grp->backend->allreduce_coalesced(v, opts));
    }
  })
}

// The start of ddpm_pg_allreduce_sum: *out is the pending c10d::Work, to be waited for with
// ddpm_work_wait (while it runs on the backend's threads or stream, the caller can pack the next
// bucket, as DDP overlaps its bucket all-reduces with the backward pass) and freed with
// ddpm_work_free.
char *ddpm_pg_allreduce_sum_start(void *g, tensor *ts, int n, void **out) {
  DIST_GUARD({
    auto *grp = static_cast<Group *>(g);
    auto v = tensor_list(ts, n);
    c10::intrusive_ptr<c10d::Work> work;
    if (n == 1) {
      c10d::AllreduceOptions opts;
      opts.timeout = grp->timeout;
      work = grp->backend->allreduce(v, opts);
    } else {
      c10d::AllreduceCoalescedOptions opts;
      opts.timeout = grp->timeout;
      work = grp->backend->allreduce_coalesced(v, opts);
    }
    *out = new Pending{work, grp->timeout};
  })
}

char *ddpm_work_wait(void *w) {
  DIST_GUARD({
    auto *p = static_cast<Pending *>(w);
    p->work->wait(p->timeout);
  })
}

void ddpm_work_free(void *w) { delete static_cast<Pending *>(w); }

// Rank `root`'s values into `t` on every rank.
char *ddpm_pg_broadcast(void *g, tensor t, int root) {
  DIST_GUARD({
    auto *grp = static_cast<Group *>(g);
    std::vector<at::Tensor> v{*t};
    c10d::BroadcastOptions opts;
    opts.rootRank = root;
    opts.timeout = grp->timeout;
    wait(grp, grp->backend->broadcast(v, opts));
  })
}

// `out` ([world_size * n], contiguous) <- every rank's `in` ([n]) in rank order.
char *ddpm_pg_allgather(void *g, tensor out, tensor in) {
  DIST_GUARD({
    auto *grp = static_cast<Group *>(g);
    c10d::AllgatherOptions opts;
    opts.timeout = grp->timeout;
    wait(grp, grp->backend->_allgather_base(*out, *in, opts));
  })
}

// On rank 0, `out` ([world_size * n], contiguous) <- every rank's `in` ([n]) in rank order;
// the other ranks send `in` and leave `out` (which may be empty) untouched (c10d gather, root 0).
char *ddpm_pg_gather(void *g, tensor out, tensor in) {
  DIST_GUARD({
    auto *grp = static_cast<Group *>(g);
    c10d::GatherOptions opts;
    opts.rootRank = 0;
    opts.timeout = grp->timeout;
    std::vector<at::Tensor> inputs{*in};
    std::vector<std::vector<at::Tensor>> outputs;
    if (grp->backend->getRank() == 0) outputs.push_back(out->chunk(grp->backend->getSize(), 0));
    wait(grp, grp->backend->gather(outputs, inputs, opts));
  })
}

char *ddpm_pg_barrier(void *g) {
  DIST_GUARD({
    auto *grp = static_cast<Group *>(g);
    c10d::BarrierOptions opts;
    opts.timeout = grp->timeout;
    if (auto device = grp->backend->getBoundDeviceId()) opts.device = device;
    wait(grp, grp->backend->barrier(opts));
  })
}

// flat <- cat(t.flatten() for t in ts): one kernel that fills a bucket (sizes must add up).
char *ddpm_flat_pack(tensor flat, tensor *ts, int n) {
  DIST_GUARD({
    std::vector<at::Tensor> parts;
    parts.reserve(n);
    for (int i = 0; i < n; i++) parts.push_back(ts[i]->reshape({-1}));
    at::cat_out(*flat, parts, 0);
  })
}

// ts[i] <- the i-th slice of flat, shaped like ts[i]: the reverse of ddpm_flat_pack, as one
// _foreach_copy_; with divisor != 1, ts[i] <- slice / divisor instead (DDP's averaging of a
// reduced bucket), fused into the same pass over memory on the CPU.
char *ddpm_flat_unpack(tensor flat, tensor *ts, int n, double divisor) {
  DIST_GUARD({
    auto dst = tensor_list(ts, n);
    std::vector<at::Tensor> src;
    src.reserve(n);
    int64_t offset = 0;
    for (auto &t : dst) {
      src.push_back(flat->narrow(0, offset, t.numel()).view(t.sizes()));
      offset += t.numel();
    }
    TORCH_CHECK(offset == flat->numel(), "flat buffer holds ", flat->numel(),
                " elements but the tensors hold ", offset);
    if (divisor != 1.0 && flat->is_cpu()) {
      // On the CPU memory passes cost and per-op dispatch (~1 us) does not.
      auto d = at::scalar_tensor(divisor, flat->options());
      for (int i = 0; i < n; i++) at::div_out(dst[i], src[i], d);
    } else {
      // On a GPU kernel launches cost and bandwidth does not: two launches in all.
      if (divisor != 1.0) flat->div_(divisor);
      at::_foreach_copy_(dst, src, /*non_blocking=*/false);
    }
  })
}

} // extern "C"
