// sparsek CUDA kernels: embedding lookup and its gradient (declarations; embedding.cu).
// Shapes: table [V, C], out / dout [N, C], idx [N] (idx_dtype SK_KDT_I32 or SK_KDT_I64),
// dtable_f32 [V, C] fp32. dtype (table, out, dout): SK_KDT_F32 or SK_KDT_BF16.
// Returns an SkKernelStatus (0 = ok).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cuda_runtime_api.h>

#include "kernels/common/kernel_dtype.h"

#ifdef __cplusplus
extern "C" {
#endif

// out[n, :] = table[idx[n], :]. An index < 0 or >= V writes a zero row and sets
// *bad_index_flag = 1 (device int, may be null).
int sk_cuda_embedding_forward(void* out, const void* table, const void* idx, int idx_dtype, int64_t N, int64_t V,
                              int64_t C, int dtype, int* bad_index_flag, cudaStream_t s);

// dtable_f32[idx[n], :] += dout[n, :] (accumulates into a caller-zeroed fp32 buffer; out-of-range
// indices are skipped). Uses fp32 atomicAdd: NOT deterministic in summation order.
int sk_cuda_embedding_backward(float* dtable_f32, const void* dout, const void* idx, int idx_dtype, int64_t N,
                               int64_t V, int64_t C, int dtype, cudaStream_t s);

#ifdef __cplusplus
}
#endif
