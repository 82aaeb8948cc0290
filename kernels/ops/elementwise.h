// sparsek CUDA kernels: pointwise arithmetic (declarations; implemented in elementwise.cu).
// dtype: SK_KDT_F32 or SK_KDT_BF16 (all tensors of one call share it). n = element count.
// `out` may alias `a` or `b`. Returns an SkKernelStatus (0 = ok).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cuda_runtime_api.h>

#include "kernels/common/kernel_dtype.h"

#ifdef __cplusplus
extern "C" {
#endif

// out = alpha * a + beta * b
int sk_cuda_axpby(void* out, const void* a, const void* b, int64_t n, float alpha, float beta, int dtype,
                  cudaStream_t s);
// out = a * b
int sk_cuda_mul(void* out, const void* a, const void* b, int64_t n, int dtype, cudaStream_t s);
// out = alpha * a
int sk_cuda_scale(void* out, const void* a, float alpha, int64_t n, int dtype, cudaStream_t s);
// dst += src
int sk_cuda_accumulate(void* dst, const void* src, int64_t n, int dtype, cudaStream_t s);

#ifdef __cplusplus
}
#endif
