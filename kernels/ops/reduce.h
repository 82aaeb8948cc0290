// sparsek CUDA kernels: deterministic reductions (declarations; implemented in reduce.cu).
// Inputs x: SK_KDT_F32 or SK_KDT_BF16 (dtype). Every reduction is two-stage with a fixed order,
// through a caller-provided fp32 scratch buffer of *_scratch_floats(...) floats.
// Returns an SkKernelStatus (0 = ok).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cuda_runtime_api.h>

#include "kernels/common/kernel_dtype.h"

#ifdef __cplusplus
extern "C" {
#endif

// *out (device fp32 scalar) = sum_{i<n} x[i]
size_t sk_cuda_sum_scratch_floats(int64_t n);
int sk_cuda_sum(float* out, float* scratch, const void* x, int64_t n, int dtype, cudaStream_t s);

// out[c] = sum_n x[n, c] for x [N, C] contiguous; out is [C] in dtype (overwritten).
size_t sk_cuda_sum_rows_scratch_floats(int64_t N, int64_t C);
int sk_cuda_sum_rows(void* out, float* scratch, const void* x, int64_t N, int64_t C, int dtype, cudaStream_t s);

// *acc += sum_{i<n} x[i]^2 (acc: device fp32 scalar; stream-ordered across calls).
size_t sk_cuda_sumsq_scratch_floats(int64_t n);
int sk_cuda_sumsq_accumulate(float* acc, float* scratch, const void* x, int64_t n, int dtype, cudaStream_t s);

// *acc += sum over the `count` tensors x[t] (n[t] elements each, all of `dtype`) of their squares:
// two launches for any count up to 96 (a few more beyond); deterministic for a given list.
// scratch: sk_cuda_sumsq_multi_scratch_floats(n, count) floats.
size_t sk_cuda_sumsq_multi_scratch_floats(const int64_t* n, int count);
int sk_cuda_sumsq_multi_accumulate(float* acc, float* scratch, const void* const* x, const int64_t* n, int count,
                                   int dtype, cudaStream_t s);

// *coef = min(1, max_norm / (sqrt(*sumsq) + 1e-6)) computed on the device (no host sync).
// A NaN norm gives a NaN coefficient (like torch.clamp).
int sk_cuda_clip_coefficient(float* coef, const float* sumsq, float max_norm, cudaStream_t s);

#ifdef __cplusplus
}
#endif
