// sparsek CUDA kernels: the Mean reduction of the fused cross-entropy on the device, so that a
// training step needs no host sync to count the rows that are not ignore_index
// (implemented in cross_entropy_mean.cu). Shapes: losses, dlosses [N] fp32; targets [N] i32/i64;
// mean, inv_count, g: device fp32 scalars. Returns an SkKernelStatus (0 = ok).
#pragma once

#include <cstdint>
#include <cuda_runtime_api.h>

#include "kernels/common/kernel_dtype.h"

#ifdef __cplusplus
extern "C" {
#endif

// count = #{n : target[n] != ignore_index}; *mean = sum_n losses[n] / count (0 when count == 0);
// *inv_count = 1 / count (0 when count == 0). One block, fixed summation order: deterministic.
int sk_cuda_cross_entropy_mean_forward(float* mean, float* inv_count, const float* losses, const void* targets,
                                       int target_dtype, int64_t N, int ignore_index, cudaStream_t s);

// *inv_count only (the count before the losses exist: the fused forward + backward needs it).
int sk_cuda_cross_entropy_inv_count(float* inv_count, const void* targets, int target_dtype, int64_t N,
                                    int ignore_index, cudaStream_t s);

// dlosses[n] = g[0] * inv_count[0] for every n.
int sk_cuda_cross_entropy_mean_backward(float* dlosses, const float* g, const float* inv_count, int64_t N,
                                        cudaStream_t s);

#ifdef __cplusplus
}
#endif
