// sparsek CUDA kernels: dtype and status conventions shared by every launcher.
// Plain C/C++ header (no CUDA types) so it can be included from g++-compiled host code.
#pragma once

#include <cstddef>
#include <cstdint>

// Element dtype codes accepted by the `dtype` / `*_dtype` launcher arguments.
enum SkKernelDType : int {
  SK_KDT_F32 = 0,
  SK_KDT_BF16 = 1,
  SK_KDT_F64 = 2,
  SK_KDT_I32 = 3,
  SK_KDT_I64 = 4,
  SK_KDT_U16 = 5
};

// Status codes returned by every launcher (0 = ok).
enum SkKernelStatus : int {
  SK_KERNEL_OK = 0,
  SK_KERNEL_BAD_ARG = 1,             // null pointer, negative size, ld < V, ndim out of range, ...
  SK_KERNEL_UNSUPPORTED_DTYPE = 2,   // dtype not listed for that launcher
  SK_KERNEL_LAUNCH_FAILED = 3,       // cudaGetLastError()/cudaMemcpyAsync reported an error
  SK_KERNEL_MISALIGNED = 4           // a pointer is not aligned to its element size
};

#ifdef __cplusplus
extern "C" {
#endif

// Human-readable name of a SkKernelStatus value ("ok", "bad argument", ...). Never null.
const char* sk_kernel_status_string(int status);

#ifdef __cplusplus
}
#endif
