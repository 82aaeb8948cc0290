// CUDA backend runtime: device queries, the per-device compute stream and cuBLASLt handle,
// copies, memory statistics. In a CPU-only build every entry point except compiled() and
// is_available() throws sk::Error("... built without CUDA ...").
#include "backend/cuda_device.h"

#include <cstdio>
#include <string>

#include "util/check.h"

#ifdef SPARSEK_HAS_CUDA
#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <mutex>
#include <vector>

#include "backend/cuda_allocator.h"
#include "backend/cuda_context.h"
#include "backend/deferred_checks.h"
#include "kernels/common/kernel_dtype.h"

namespace sk::cuda {

namespace {
struct DeviceHandles {
  cudaStream_t stream = nullptr;
  cublasLtHandle_t lt = nullptr;
  void* workspace = nullptr;
  int sm_count = 0;
};
constexpr size_t kWorkspaceBytes = 32u << 20;
thread_local int tl_device = -1;

DeviceHandles& handles(int device) {
  static std::mutex& mu = *new std::mutex;  // never destroyed (used by releases at exit)
  static auto& all = *new std::vector<DeviceHandles>;
  std::lock_guard<std::mutex> lock(mu);
  if (static_cast<int>(all.size()) <= device) all.resize(device + 1);
  DeviceHandles& h = all[device];
  if (!h.stream) {
    SK_CUDA_CHECK(cudaSetDevice(device));
    SK_CUDA_CHECK(cudaStreamCreateWithFlags(&h.stream, cudaStreamNonBlocking));
    SK_CUBLAS_CHECK(cublasLtCreate(&h.lt));
    SK_CUDA_CHECK(cudaMalloc(&h.workspace, kWorkspaceBytes));
    SK_CUDA_CHECK(cudaDeviceGetAttribute(&h.sm_count, cudaDevAttrMultiProcessorCount, device));
  }
  return h;
}
}  // namespace

bool compiled() { return true; }

int device_count() {
  static int count = [] {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
      (void)cudaGetLastError();
      n = 0;
    }
    return n;
  }();
  return count;
}

bool is_available() { return device_count() > 0; }

std::string device_name(int device) {
  cudaDeviceProp prop{};
  SK_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  return prop.name;
}

int compute_capability(int device) {
  int major = 0, minor = 0;
  SK_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  SK_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device));
  return major * 10 + minor;
}

void set_device(int device) {
  SK_CHECK(device >= 0 && device < device_count(), "CUDA device ", device, " does not exist (",
           device_count(), " device(s) present)");
  if (tl_device != device) {
    SK_CUDA_CHECK(cudaSetDevice(device));
    tl_device = device;
  }
}

int current_device() {
  if (tl_device < 0) set_device(0);
  return tl_device;
}

cudaStream_t stream() { return handles(current_device()).stream; }
cublasLtHandle_t cublaslt() { return handles(current_device()).lt; }
void* cublas_workspace(size_t* nbytes) {
  *nbytes = kWorkspaceBytes;
  return handles(current_device()).workspace;
}
int multiprocessor_count() { return handles(current_device()).sm_count; }

void synchronize() {
  SK_CUDA_CHECK(cudaStreamSynchronize(stream()));
  check_deferred_errors();
}

namespace {
bool g_poison_on_alloc = false;
}
void set_poison_on_alloc(bool on) { g_poison_on_alloc = on; }

void* raw_alloc(size_t nbytes, int device) {
  set_device(device);
  void* p = allocator_for(device).allocate(nbytes);
  if (g_poison_on_alloc && nbytes > 0) SK_CUDA_CHECK(cudaMemsetAsync(p, 0xFF, nbytes, stream()));
  return p;
}
void raw_free(void* ptr, int device) { allocator_for(device).release(ptr); }

void copy_h2d(void* dst, const void* src, size_t nbytes) {
  if (nbytes == 0) return;
  SK_CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyHostToDevice, stream()));
  // The host buffer may be freed right after we return: wait for the copy.
  SK_CUDA_CHECK(cudaStreamSynchronize(stream()));
}
void copy_d2h(void* dst, const void* src, size_t nbytes) {
  if (nbytes == 0) return;
  SK_CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDeviceToHost, stream()));
  SK_CUDA_CHECK(cudaStreamSynchronize(stream()));
  check_deferred_errors();  // after the copy: the data is valid, but bad input upstream must surface
}
void copy_d2d(void* dst, const void* src, size_t nbytes) {
  if (nbytes == 0) return;
  SK_CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDeviceToDevice, stream()));
}

MemoryStats memory_stats(int device) { return allocator_for(device).stats(); }
void reset_peak_memory(int device) { allocator_for(device).reset_peak(); }
void empty_cache(int device) { allocator_for(device).empty_cache(); }

std::string memory_report(int device) {
  MemoryStats s = memory_stats(device);
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "cuda:%d memory: allocated %.1f MiB, peak %.1f MiB, reserved %.1f MiB, cudaMalloc calls %zu, cache hits %zu",
                device, s.allocated_bytes / 1048576.0, s.peak_allocated_bytes / 1048576.0,
                s.reserved_bytes / 1048576.0, s.cuda_malloc_calls, s.cache_hits);
  return buf;
}

void throw_cuda_error(cudaError_t err, const char* expr, const char* file, int line) {
  ::sk::detail::throw_error(nullptr, file, line,
                            ::sk::detail::concat("CUDA error ", cudaGetErrorName(err), " (",
                                                 cudaGetErrorString(err), ") in ", expr, " on device ",
                                                 tl_device));
}
void throw_cublas_error(int status, const char* expr, const char* file, int line) {
  ::sk::detail::throw_error(nullptr, file, line,
                            ::sk::detail::concat("cuBLAS error status ", status, " in ", expr));
}
void throw_kernel_error(int status, const char* launcher, const char* file, int line) {
  cudaError_t last = cudaGetLastError();
  ::sk::detail::throw_error(nullptr, file, line,
                            ::sk::detail::concat("kernel launcher failed: ", sk_kernel_status_string(status),
                                                 " in ", launcher, " (last CUDA error: ",
                                                 cudaGetErrorString(last), ")"));
}

}  // namespace sk::cuda

#else  // CPU-only build

namespace sk::cuda {
namespace {
[[noreturn]] void no_cuda(const char* what) {
  SK_FAIL(what, ": this sparsek was built without CUDA (configure with nvcc present, or -DSPARSEK_CUDA=ON)");
}
}  // namespace
bool compiled() { return false; }
bool is_available() { return false; }
int device_count() { return 0; }
std::string device_name(int) { no_cuda("device_name"); }
int compute_capability(int) { no_cuda("compute_capability"); }
void set_device(int) { no_cuda("set_device"); }
void synchronize() {}
void* raw_alloc(size_t, int) { no_cuda("allocating CUDA memory"); }
void raw_free(void*, int) {}
void copy_h2d(void*, const void*, size_t) { no_cuda("copy to CUDA"); }
void copy_d2h(void*, const void*, size_t) { no_cuda("copy from CUDA"); }
void copy_d2d(void*, const void*, size_t) { no_cuda("copy on CUDA"); }
MemoryStats memory_stats(int) { return {}; }
void reset_peak_memory(int) {}
std::string memory_report(int) { return "no CUDA in this build"; }
void empty_cache(int) {}
void set_poison_on_alloc(bool) {}
}  // namespace sk::cuda

#endif
