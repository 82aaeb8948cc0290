// Launcher declaration for kernels/tensor/copy_to_strided.cu (plain types; included from .cpp).
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

// dst view (ndim <= 8, strides in elements, dst already at its first element) <- contiguous src,
// same dtype (any SkKernelDType). Returns an SkKernelStatus.
int sk_cuda_copy_to_strided(void* dst, const void* src, int dtype, int ndim, const int64_t* shape,
                            const int64_t* dst_strides, cudaStream_t s);
