// sparsek CUDA kernels: GELU forward/backward (declarations; implemented in gelu.cu).
// dtype: SK_KDT_F32 or SK_KDT_BF16. n = element count. approximate_tanh: 0 = erf form, 1 = tanh form.
// Returns an SkKernelStatus (0 = ok).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cuda_runtime_api.h>

#include "kernels/common/kernel_dtype.h"

#ifdef __cplusplus
extern "C" {
#endif

// erf:  y = 0.5 x (1 + erf(x / sqrt(2)))
// tanh: y = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
int sk_cuda_gelu_forward(void* y, const void* x, int64_t n, int approximate_tanh, int dtype, cudaStream_t s);
// dx = dy * gelu'(x) (exact derivative of the chosen form). dx may alias dy.
int sk_cuda_gelu_backward(void* dx, const void* dy, const void* x, int64_t n, int approximate_tanh, int dtype,
                          cudaStream_t s);

#ifdef __cplusplus
}
#endif
