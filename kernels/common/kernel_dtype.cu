// sparsek CUDA kernels: sk_kernel_status_string (host-only, no kernels here).
// Declared in kernels/common/kernel_dtype.h together with the SkKernelDType / SkKernelStatus
// enums that every launcher uses. Exercised indirectly by tests/cuda/test_cuda_parity.cpp.
#include "kernels/common/kernel_dtype.h"

extern "C" const char* sk_kernel_status_string(int status) {
  switch (status) {
    case SK_KERNEL_OK: return "ok";
    case SK_KERNEL_BAD_ARG: return "bad argument";
    case SK_KERNEL_UNSUPPORTED_DTYPE: return "unsupported dtype";
    case SK_KERNEL_LAUNCH_FAILED: return "kernel launch failed";
    case SK_KERNEL_MISALIGNED: return "misaligned pointer";
    default: return "unknown kernel status";
  }
}
