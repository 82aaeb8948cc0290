// sparsek CUDA kernels: fused softmax + cross-entropy over a vocabulary (declarations;
// implemented in cross_entropy.cu). Never materialises probabilities.
// Shapes: logits / dlogits [N, ld] (row n's V valid logits at logits + n * ld, ld >= V; columns
// V..ld-1 are padding), targets [N] (target_dtype SK_KDT_I32 or SK_KDT_I64), losses / lse /
// dlosses [N] fp32. dtype (logits, dlogits): SK_KDT_F32 or SK_KDT_BF16.
// Returns an SkKernelStatus (0 = ok).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cuda_runtime_api.h>

#include "kernels/common/kernel_dtype.h"

#ifdef __cplusplus
extern "C" {
#endif

// lse[n] = log sum_{j<V} exp(logit[n, j]); losses[n] = lse[n] - logit[n, target[n]].
// target == ignore_index: losses[n] = 0 (lse still written). Other targets outside [0, V):
// losses[n] = 0 and *bad_target_flag = 1 (flag is a device int, may be null).
int sk_cuda_cross_entropy_forward(float* losses, float* lse, const void* logits, const void* targets,
                                  int target_dtype, int64_t N, int64_t V, int64_t ld, int ignore_index, int dtype,
                                  int* bad_target_flag, cudaStream_t s);

// dlogits[n, j] = (exp(logit[n, j] - lse[n]) - [j == target[n]]) * g_n for j < V, 0 for V <= j < ld,
// g_n = dloss_scale * (dlosses ? dlosses[n] : 1). Rows whose target is ignore_index (or outside
// [0, V)) get all zeros. dlogits may alias logits (in-place).
int sk_cuda_cross_entropy_backward(void* dlogits, const void* logits, const float* lse, const void* targets,
                                   int target_dtype, const float* dlosses, float dloss_scale, int64_t N, int64_t V,
                                   int64_t ld, int ignore_index, int dtype, cudaStream_t s);

// Forward and backward of a Mean loss in one pass, in place: losses and lse as
// sk_cuda_cross_entropy_forward, then logits is overwritten by its gradient for an upstream
// gradient of 1, i.e. (exp(logit - lse) - onehot) * inv_count[0] (inv_count: a device scalar,
// sk_cuda_cross_entropy_inv_count); padding columns and ignored rows get 0. The row is read
// from HBM once (its second read comes from L2).
int sk_cuda_cross_entropy_mean_fused(float* losses, float* lse, void* logits, const void* targets, int target_dtype,
                                     const float* inv_count, int64_t N, int64_t V, int64_t ld, int ignore_index,
                                     int dtype, int* bad_target_flag, cudaStream_t s);

// d[i] *= g[0] for n values, unless g[0] == 1 (then nothing is written): the fused gradient above
// times the actual upstream gradient.
int sk_cuda_cross_entropy_rescale(void* d, int64_t n, const float* g, int dtype, cudaStream_t s);

#ifdef __cplusplus
}
#endif
