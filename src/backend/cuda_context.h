// CUDA-only handles for op implementations: the compute stream, the cuBLASLt handle and
// workspace, and the check macros for CUDA/cuBLAS calls and our kernel launchers.
// Include only inside `#ifdef SPARSEK_HAS_CUDA`.
#pragma once
#ifdef SPARSEK_HAS_CUDA
#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <string>

#include "backend/cuda_device.h"
#include "util/check.h"

namespace sk::cuda {

cudaStream_t stream();             // compute stream of the current device (created on first use)
cublasLtHandle_t cublaslt();       // one handle per device
void* cublas_workspace(size_t* nbytes);  // a fixed workspace for cuBLASLt (32 MiB)
int current_device();
int multiprocessor_count();

[[noreturn]] void throw_cuda_error(cudaError_t err, const char* expr, const char* file, int line);
[[noreturn]] void throw_cublas_error(int status, const char* expr, const char* file, int line);
[[noreturn]] void throw_kernel_error(int status, const char* launcher, const char* file, int line);

}  // namespace sk::cuda

#define SK_CUDA_CHECK(expr)                                                          \
  do {                                                                               \
    cudaError_t sk_err_ = (expr);                                                    \
    if (sk_err_ != cudaSuccess) ::sk::cuda::throw_cuda_error(sk_err_, #expr, __FILE__, __LINE__); \
  } while (0)

#define SK_CUBLAS_CHECK(expr)                                                        \
  do {                                                                               \
    int sk_st_ = static_cast<int>(expr);                                             \
    if (sk_st_ != 0) ::sk::cuda::throw_cublas_error(sk_st_, #expr, __FILE__, __LINE__); \
  } while (0)

// Launchers in kernels/ return an SkKernelStatus (0 = ok).
#define SK_KERNEL_CHECK(call)                                                        \
  do {                                                                               \
    int sk_ks_ = (call);                                                             \
    if (sk_ks_ != 0) ::sk::cuda::throw_kernel_error(sk_ks_, #call, __FILE__, __LINE__); \
  } while (0)

#endif  // SPARSEK_HAS_CUDA
