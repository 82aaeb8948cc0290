// sparsek CUDA kernels: LayerNorm over the last dim (declarations; implemented in layernorm.cu).
// Shapes: x, y, dy, dx are [N, C] contiguous; weight, bias, dweight, dbias are [C]; mean, rstd
// are [N] fp32. dtype (SK_KDT_F32 or SK_KDT_BF16) applies to every non-fp32 tensor.
// Returns an SkKernelStatus (0 = ok).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cuda_runtime_api.h>

#include "kernels/common/kernel_dtype.h"

#ifdef __cplusplus
extern "C" {
#endif

// mean = sum x / C, var = sum (x - mean)^2 / C, rstd = 1 / sqrt(var + eps),
// y = (x - mean) * rstd * weight + bias. bias may be null; mean / rstd may be null (not written).
int sk_cuda_layernorm_forward(void* y, float* mean, float* rstd, const void* x, const void* weight,
                              const void* bias, int64_t N, int64_t C, float eps, int dtype, cudaStream_t s);

// The same for the row sum = x + residual (residual may be null: plain LayerNorm): sum_out gets sum
// rounded to dtype, and the statistics and y are of that rounded sum. sum_out must not alias x or
// residual.
int sk_cuda_add_layernorm_forward(void* y, float* mean, float* rstd, void* sum_out, const void* x, const void* residual,
                                  const void* weight, const void* bias, int64_t N, int64_t C, float eps, int dtype,
                                  cudaStream_t s);

// Floats of fp32 scratch the caller must pass to sk_cuda_layernorm_backward (depends on N, C and
// the current device's SM count).
size_t sk_cuda_layernorm_backward_scratch_floats(int64_t N, int64_t C);

// xhat = (x - mean) * rstd, g = dy * weight;
// dx = rstd * (g - mean_c(g) - xhat * mean_c(g * xhat))   (overwrites dx)
// dweight = sum_n dy * xhat, dbias = sum_n dy              (overwrite; dbias may be null)
// dweight/dbias are reduced deterministically in fp32 through `scratch`.
int sk_cuda_layernorm_backward(void* dx, void* dweight, void* dbias, float* scratch, const void* dy, const void* x,
                               const void* weight, const float* mean, const float* rstd, int64_t N, int64_t C,
                               int dtype, cudaStream_t s);

// The same with dx = (the above) + dres, added in fp32 before dx's one rounding (dres [N, C] may be
// null: plain backward). The backward of the fused residual + LayerNorm.
int sk_cuda_layernorm_backward_add(void* dx, void* dweight, void* dbias, float* scratch, const void* dy,
                                   const void* dres, const void* x, const void* weight, const float* mean,
                                   const float* rstd, int64_t N, int64_t C, int dtype, cudaStream_t s);

#ifdef __cplusplus
}
#endif
