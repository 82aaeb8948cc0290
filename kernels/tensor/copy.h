// sparsek CUDA kernels: strided copy with dtype conversion, and fill (declarations; copy.cu).
// Dtype codes are SkKernelDType values. Returns an SkKernelStatus (0 = ok).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cuda_runtime_api.h>

#include "kernels/common/kernel_dtype.h"

#ifdef __cplusplus
extern "C" {
#endif

// dst (contiguous, row-major over `shape`) <- src viewed through `src_strides` (in elements;
// src points at the view's first element). ndim in [0, 8] (0 = one element). shape and
// src_strides are HOST arrays. Conversions: any of f32/f64/bf16 to any of f32/f64/bf16
// (round-to-nearest-even into bf16); i32->i32/i64, i64->i64/i32 (truncating), u16->u16/i32/i64.
// Same dtype + contiguous src: cudaMemcpyAsync device-to-device.
int sk_cuda_copy_strided(void* dst, int dst_dtype, const void* src, int src_dtype, int ndim, const int64_t* shape,
                         const int64_t* src_strides, cudaStream_t s);

// dst[0..n) = value converted to dtype (all six dtypes; bf16 rounds to nearest even; integer
// dtypes truncate toward zero and return SK_KERNEL_BAD_ARG if value is NaN or out of range).
int sk_cuda_fill(void* dst, int dtype, int64_t n, double value, cudaStream_t s);

#ifdef __cplusplus
}
#endif
