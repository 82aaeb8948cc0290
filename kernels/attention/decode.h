// sparsek CUDA kernels: attention decode step, one new query per (batch, head) against a KV cache
// (declarations; implemented in decode.cu). dtype: SK_KDT_F32 or SK_KDT_BF16 (q, caches and out
// alike); fp32 accumulation. Returns an SkKernelStatus (0 = ok).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cuda_runtime_api.h>

#include "kernels/common/kernel_dtype.h"

#ifdef __cplusplus
extern "C" {
#endif

// q: (BH, D) contiguous, the query at `position`; k, v: (BH, S, D) contiguous rings (position p in
// slot p % S); out: (BH, D). The query sees the positions p <= position still in the ring (the last
// min(position + 1, S)) with position - p < window (window 0: no limit). D in [1, 256].
// out = sum_p softmax_p(scale * q.k_p) v_p.
int sk_cuda_attention_decode(void* out, const void* q, const void* k, const void* v, int64_t BH, int64_t S, int64_t D,
                             int64_t position, int64_t window, float scale, int dtype, cudaStream_t s);

#ifdef __cplusplus
}
#endif
