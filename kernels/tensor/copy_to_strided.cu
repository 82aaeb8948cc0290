// Copy of a contiguous tensor into a strided view of the same dtype (used by Tensor::copy_ for
// slice backward and in-place writes into views). One thread per element, index arithmetic over
// up to 8 dims; not a hot path. Checked by tests/cuda/test_cuda_parity.cpp (CudaParity.slice).
#include <cstdint>

#include "kernels/common/kernel_dtype.h"
#include "kernels/tensor/copy_to_strided.h"

namespace {
struct StridedLayout {
  int ndim;
  int64_t shape[8];
  int64_t strides[8];
};

template <typename T>
__global__ void copy_to_strided_kernel(T* __restrict__ dst, const T* __restrict__ src, int64_t n, StridedLayout L) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    int64_t rem = i, off = 0;
    for (int k = L.ndim - 1; k >= 0; --k) {
      int64_t idx = rem % L.shape[k];
      rem /= L.shape[k];
      off += idx * L.strides[k];
    }
    dst[off] = src[i];
  }
}

template <typename T>
int launch(void* dst, const void* src, int64_t n, const StridedLayout& L, cudaStream_t s) {
  int threads = 256;
  int64_t blocks = (n + threads - 1) / threads;
  if (blocks > 65535 * 16) blocks = 65535 * 16;
  copy_to_strided_kernel<T><<<(unsigned)blocks, threads, 0, s>>>(static_cast<T*>(dst), static_cast<const T*>(src), n, L);
  return cudaGetLastError() == cudaSuccess ? SK_KERNEL_OK : SK_KERNEL_LAUNCH_FAILED;
}
}  // namespace

int sk_cuda_copy_to_strided(void* dst, const void* src, int dtype, int ndim, const int64_t* shape,
                            const int64_t* dst_strides, cudaStream_t s) {
  if (ndim < 0 || ndim > 8) return SK_KERNEL_BAD_ARG;
  StridedLayout L{};
  L.ndim = ndim;
  int64_t n = 1;
  for (int k = 0; k < ndim; ++k) {
    L.shape[k] = shape[k];
    L.strides[k] = dst_strides[k];
    n *= shape[k];
  }
  if (n == 0) return SK_KERNEL_OK;
  switch (dtype) {
    case SK_KDT_F32: case SK_KDT_I32: return launch<uint32_t>(dst, src, n, L, s);
    case SK_KDT_BF16: case SK_KDT_U16: return launch<uint16_t>(dst, src, n, L, s);
    case SK_KDT_F64: case SK_KDT_I64: return launch<uint64_t>(dst, src, n, L, s);
    default: return SK_KERNEL_UNSUPPORTED_DTYPE;
  }
}
