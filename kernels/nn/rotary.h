// sparsek CUDA kernels: rotary position embeddings, GPT-NeoX half-split pairing, partial rotary
// (declarations; implemented in rotary.cu). dtype: SK_KDT_F32 or SK_KDT_BF16. Returns an
// SkKernelStatus (0 = ok).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cuda_runtime_api.h>

#include "kernels/common/kernel_dtype.h"

#ifdef __cplusplus
extern "C" {
#endif

// x: (B, H, T, D) with element strides (sb, sh, st) and the last dim contiguous; out: contiguous
// (B, H, T, D), not aliasing x. The first R = rotary_dims dims (even, <= D) rotate, the rest are
// copied. For i < R/2 at position p = t + position_offset, theta = p * base^(-2i/R):
//   forward:  out[i] = x[i] cos - x[i + R/2] sin,  out[i + R/2] = x[i + R/2] cos + x[i] sin
//   backward: the same with -theta (dx from dy, which is passed as x).
int sk_cuda_rotary_forward(void* out, const void* x, int64_t B, int64_t H, int64_t T, int64_t D, int64_t sb,
                           int64_t sh, int64_t st, int64_t rotary_dims, double base, int64_t position_offset,
                           int dtype, cudaStream_t s);
int sk_cuda_rotary_backward(void* dx, const void* dy, int64_t B, int64_t H, int64_t T, int64_t D, int64_t sb,
                            int64_t sh, int64_t st, int64_t rotary_dims, double base, int64_t position_offset,
                            int dtype, cudaStream_t s);

#ifdef __cplusplus
}
#endif
