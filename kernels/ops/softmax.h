// sparsek CUDA kernels: softmax over the last dim (declarations; implemented in softmax.cu).
// Shapes: x, y, dy, dx are [N, C] contiguous. dtype: SK_KDT_F32 or SK_KDT_BF16.
// Returns an SkKernelStatus (0 = ok).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cuda_runtime_api.h>

#include "kernels/common/kernel_dtype.h"

#ifdef __cplusplus
extern "C" {
#endif

// y[n, c] = exp(x[n, c] - max_c x[n, :]) / sum_c exp(x[n, c] - max_c x[n, :])
int sk_cuda_softmax_forward(void* y, const void* x, int64_t N, int64_t C, int dtype, cudaStream_t s);
// dx = y * (dy - sum_c(dy * y))
int sk_cuda_softmax_backward(void* dx, const void* dy, const void* y, int64_t N, int64_t C, int dtype,
                             cudaStream_t s);

#ifdef __cplusplus
}
#endif
