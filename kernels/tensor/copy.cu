// sparsek CUDA kernels: strided gather-copy with dtype conversion (copy_strided) and fill.
//
// Shapes: `shape` has ndim <= 8 dims, n = prod(shape) elements; dst is contiguous row-major,
// src element (i0..i_{ndim-1}) lives at src + sum_k i_k * src_strides[k] (strides in elements,
// may be 0 for broadcast views or negative).
// Design:
//   * host-side dim simplification: size-1 dims dropped, adjacent dims merged when
//     stride[k] == stride[k+1] * shape[k+1]; a src that collapses to one unit-stride dim is
//     "contiguous": same dtype -> cudaMemcpyAsync D2D, different dtype -> linear convert kernel.
//   * otherwise a grid-stride gather kernel; shape/strides travel by value in a struct, the
//     index decomposition is fully unrolled over 8 dims (no local memory) and uses 32-bit
//     division when n < 2^31.
//   * fill: memset when the value's byte pattern is one repeated byte (e.g. 0), else a kernel
//     writing 16-byte vectors of the repeated pattern with a scalar head/tail.
// Deterministic (pure copies). Conversions: f32/f64/bf16 among themselves (bf16 rounds to
// nearest even; f64 -> bf16 rounds once, directly), i32 <-> i64 (C++ static_cast), u16 -> u16/i32/i64.
//
// Checked by tests/cuda/test_cuda_parity.cpp against the CPU reference in src/tensor/copy.cpp.
#include "kernels/tensor/copy.h"

#include <cstring>

#include "kernels/common/device_utils.cuh"

namespace {

using namespace sk_kern;

constexpr int kMaxDims = 8;

struct StridedParams {
  int ndim;
  int64_t shape[kMaxDims];
  int64_t stride[kMaxDims];
};

// ---- element conversion ------------------------------------------------------------------
template <typename S, typename D>
struct Convert {
  __device__ __forceinline__ static D apply(S v) { return static_cast<D>(v); }
};
template <>
struct Convert<float, __nv_bfloat16> {
  __device__ __forceinline__ static __nv_bfloat16 apply(float v) { return __float2bfloat16_rn(v); }
};
template <>
struct Convert<double, __nv_bfloat16> {
  __device__ __forceinline__ static __nv_bfloat16 apply(double v) { return __double2bfloat16(v); }
};
template <>
struct Convert<__nv_bfloat16, float> {
  __device__ __forceinline__ static float apply(__nv_bfloat16 v) { return __bfloat162float(v); }
};
template <>
struct Convert<__nv_bfloat16, double> {
  __device__ __forceinline__ static double apply(__nv_bfloat16 v) {
    return static_cast<double>(__bfloat162float(v));
  }
};
template <>
struct Convert<__nv_bfloat16, __nv_bfloat16> {
  __device__ __forceinline__ static __nv_bfloat16 apply(__nv_bfloat16 v) { return v; }
};

// ---- kernels -------------------------------------------------------------------------------
template <typename S, typename D, typename IdxT>
__global__ void __launch_bounds__(256) strided_copy_kernel(D* __restrict__ dst, const S* __restrict__ src,
                                                           IdxT n, StridedParams p) {
  const IdxT G = static_cast<IdxT>(gridDim.x) * blockDim.x;
  for (IdxT i = static_cast<IdxT>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += G) {
    IdxT rem = i;
    int64_t off = 0;
#pragma unroll
    for (int k = kMaxDims - 1; k >= 0; --k) {
      if (k < p.ndim) {
        const IdxT sz = static_cast<IdxT>(p.shape[k]);
        const IdxT q = rem / sz;
        off += static_cast<int64_t>(rem - q * sz) * p.stride[k];
        rem = q;
      }
    }
    dst[i] = Convert<S, D>::apply(src[off]);
  }
}

template <typename S, typename D>
__global__ void __launch_bounds__(256) convert_kernel(D* __restrict__ dst, const S* __restrict__ src, int64_t n) {
  const int64_t G = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += G)
    dst[i] = Convert<S, D>::apply(src[i]);
}

// U: unsigned integer type of the element width (bit pattern). head scalar elements bring dst
// to 16-byte alignment; vec is the 16-byte replicated pattern.
template <typename U>
__global__ void __launch_bounds__(256) fill_kernel(U* dst, int64_t n, U pattern, uint4 vec, int64_t head,
                                                   int64_t nvec) {
  constexpr int64_t kPer = 16 / sizeof(U);
  const int64_t gtid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t G = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = gtid; i < head; i += G) dst[i] = pattern;
  uint4* vd = reinterpret_cast<uint4*>(dst + head);
  for (int64_t v = gtid; v < nvec; v += G) vd[v] = vec;
  for (int64_t i = head + nvec * kPer + gtid; i < n; i += G) dst[i] = pattern;
}

// ---- host side -----------------------------------------------------------------------------
size_t dtype_size(int dt) {
  switch (dt) {
    case SK_KDT_F32: return 4;
    case SK_KDT_BF16: return 2;
    case SK_KDT_F64: return 8;
    case SK_KDT_I32: return 4;
    case SK_KDT_I64: return 8;
    case SK_KDT_U16: return 2;
    default: return 0;
  }
}

template <typename S, typename D>
int launch_copy(void* dst, const void* src, int64_t n, bool contiguous, const StridedParams& p, cudaStream_t s) {
  D* d = static_cast<D*>(dst);
  const S* sp = static_cast<const S*>(src);
  if (contiguous) {
    auto k = convert_kernel<S, D>;
    const int grid = persistent_grid(k, 256, 0, ceil_div(n, 256));
    k<<<grid, 256, 0, s>>>(d, sp, n);
  } else if (n <= static_cast<int64_t>(INT32_MAX)) {
    auto k = strided_copy_kernel<S, D, uint32_t>;
    const int grid = persistent_grid(k, 256, 0, ceil_div(n, 256));
    k<<<grid, 256, 0, s>>>(d, sp, static_cast<uint32_t>(n), p);
  } else {
    auto k = strided_copy_kernel<S, D, int64_t>;
    const int grid = persistent_grid(k, 256, 0, ceil_div(n, 256));
    k<<<grid, 256, 0, s>>>(d, sp, n, p);
  }
  return launch_status();
}

template <typename S>
int dispatch_float_dst(void* dst, int dst_dtype, const void* src, int64_t n, bool contiguous, const StridedParams& p,
                       cudaStream_t s) {
  switch (dst_dtype) {
    case SK_KDT_F32: return launch_copy<S, float>(dst, src, n, contiguous, p, s);
    case SK_KDT_F64: return launch_copy<S, double>(dst, src, n, contiguous, p, s);
    case SK_KDT_BF16: return launch_copy<S, __nv_bfloat16>(dst, src, n, contiguous, p, s);
    default: return SK_KERNEL_UNSUPPORTED_DTYPE;
  }
}

int dispatch_copy(void* dst, int dst_dtype, const void* src, int src_dtype, int64_t n, bool contiguous,
                  const StridedParams& p, cudaStream_t s) {
  switch (src_dtype) {
    case SK_KDT_F32: return dispatch_float_dst<float>(dst, dst_dtype, src, n, contiguous, p, s);
    case SK_KDT_F64: return dispatch_float_dst<double>(dst, dst_dtype, src, n, contiguous, p, s);
    case SK_KDT_BF16: return dispatch_float_dst<__nv_bfloat16>(dst, dst_dtype, src, n, contiguous, p, s);
    case SK_KDT_I32:
      if (dst_dtype == SK_KDT_I32) return launch_copy<int32_t, int32_t>(dst, src, n, contiguous, p, s);
      if (dst_dtype == SK_KDT_I64) return launch_copy<int32_t, int64_t>(dst, src, n, contiguous, p, s);
      return SK_KERNEL_UNSUPPORTED_DTYPE;
    case SK_KDT_I64:
      if (dst_dtype == SK_KDT_I64) return launch_copy<int64_t, int64_t>(dst, src, n, contiguous, p, s);
      if (dst_dtype == SK_KDT_I32) return launch_copy<int64_t, int32_t>(dst, src, n, contiguous, p, s);
      return SK_KERNEL_UNSUPPORTED_DTYPE;
    case SK_KDT_U16:
      if (dst_dtype == SK_KDT_U16) return launch_copy<uint16_t, uint16_t>(dst, src, n, contiguous, p, s);
      if (dst_dtype == SK_KDT_I32) return launch_copy<uint16_t, int32_t>(dst, src, n, contiguous, p, s);
      if (dst_dtype == SK_KDT_I64) return launch_copy<uint16_t, int64_t>(dst, src, n, contiguous, p, s);
      return SK_KERNEL_UNSUPPORTED_DTYPE;
    default:
      return SK_KERNEL_UNSUPPORTED_DTYPE;
  }
}

bool supported_pair(int src_dtype, int dst_dtype) {
  const bool sf = src_dtype == SK_KDT_F32 || src_dtype == SK_KDT_F64 || src_dtype == SK_KDT_BF16;
  const bool df = dst_dtype == SK_KDT_F32 || dst_dtype == SK_KDT_F64 || dst_dtype == SK_KDT_BF16;
  if (sf) return df;
  switch (src_dtype) {
    case SK_KDT_I32:
    case SK_KDT_I64: return dst_dtype == SK_KDT_I32 || dst_dtype == SK_KDT_I64;
    case SK_KDT_U16: return dst_dtype == SK_KDT_U16 || dst_dtype == SK_KDT_I32 || dst_dtype == SK_KDT_I64;
    default: return false;
  }
}

template <typename U>
int launch_fill(void* dst, int64_t n, U pattern, cudaStream_t s) {
  // one repeated byte (0, -1 for ints, ...) -> memset
  unsigned char bytes[sizeof(U)];
  std::memcpy(bytes, &pattern, sizeof(U));
  bool one_byte = true;
  for (size_t i = 1; i < sizeof(U); ++i) one_byte = one_byte && bytes[i] == bytes[0];
  if (one_byte) {
    return cudaMemsetAsync(dst, bytes[0], static_cast<size_t>(n) * sizeof(U), s) == cudaSuccess
               ? SK_KERNEL_OK
               : SK_KERNEL_LAUNCH_FAILED;
  }
  constexpr int64_t kPer = 16 / sizeof(U);
  U rep[kPer];
  for (int64_t i = 0; i < kPer; ++i) rep[i] = pattern;
  uint4 vec;
  std::memcpy(&vec, rep, 16);
  int64_t head = static_cast<int64_t>(((16u - misalign16(dst)) & 15u) / sizeof(U));
  if (head > n) head = n;
  const int64_t nvec = (n - head) / kPer;
  int64_t work = nvec > kPer ? nvec : kPer;
  auto k = fill_kernel<U>;
  const int grid = persistent_grid(k, 256, 0, ceil_div(work, 256));
  k<<<grid, 256, 0, s>>>(static_cast<U*>(dst), n, pattern, vec, head, nvec);
  return launch_status();
}

}  // namespace

extern "C" int sk_cuda_copy_strided(void* dst, int dst_dtype, const void* src, int src_dtype, int ndim,
                                    const int64_t* shape, const int64_t* src_strides, cudaStream_t s) {
  if (ndim < 0 || ndim > kMaxDims) return SK_KERNEL_BAD_ARG;
  if (ndim > 0 && (shape == nullptr || src_strides == nullptr)) return SK_KERNEL_BAD_ARG;
  const size_t dsz = dtype_size(dst_dtype), ssz = dtype_size(src_dtype);
  if (dsz == 0 || ssz == 0 || !supported_pair(src_dtype, dst_dtype)) return SK_KERNEL_UNSUPPORTED_DTYPE;

  int64_t n = 1;
  for (int k = 0; k < ndim; ++k) {
    if (shape[k] < 0) return SK_KERNEL_BAD_ARG;
    n *= shape[k];
  }
  if (n == 0) return SK_KERNEL_OK;
  if (dst == nullptr || src == nullptr) return SK_KERNEL_BAD_ARG;
  if (!aligned_to(dst, dsz) || !aligned_to(src, ssz)) return SK_KERNEL_MISALIGNED;

  // Simplify: drop size-1 dims, merge dims that are contiguous with respect to each other.
  StridedParams p{};
  p.ndim = 0;
  for (int k = 0; k < ndim; ++k) {
    if (shape[k] == 1) continue;
    if (p.ndim > 0 && p.stride[p.ndim - 1] == src_strides[k] * shape[k]) {
      p.shape[p.ndim - 1] *= shape[k];
      p.stride[p.ndim - 1] = src_strides[k];
    } else {
      p.shape[p.ndim] = shape[k];
      p.stride[p.ndim] = src_strides[k];
      ++p.ndim;
    }
  }
  const bool contiguous = p.ndim == 0 || (p.ndim == 1 && p.stride[0] == 1);

  if (contiguous && src_dtype == dst_dtype) {
    if (dst == src) return SK_KERNEL_OK;
    return cudaMemcpyAsync(dst, src, static_cast<size_t>(n) * dsz, cudaMemcpyDeviceToDevice, s) == cudaSuccess
               ? SK_KERNEL_OK
               : SK_KERNEL_LAUNCH_FAILED;
  }
  return dispatch_copy(dst, dst_dtype, src, src_dtype, n, contiguous, p, s);
}

extern "C" int sk_cuda_fill(void* dst, int dtype, int64_t n, double value, cudaStream_t s) {
  const size_t sz = dtype_size(dtype);
  if (sz == 0) return SK_KERNEL_UNSUPPORTED_DTYPE;
  if (n < 0) return SK_KERNEL_BAD_ARG;
  if (n == 0) return SK_KERNEL_OK;
  if (dst == nullptr) return SK_KERNEL_BAD_ARG;
  if (!aligned_to(dst, sz)) return SK_KERNEL_MISALIGNED;
  switch (dtype) {
    case SK_KDT_F32: {
      const float f = static_cast<float>(value);
      uint32_t u;
      std::memcpy(&u, &f, 4);
      return launch_fill<uint32_t>(dst, n, u, s);
    }
    case SK_KDT_F64: {
      uint64_t u;
      std::memcpy(&u, &value, 8);
      return launch_fill<uint64_t>(dst, n, u, s);
    }
    case SK_KDT_BF16: {
      const __nv_bfloat16 h = __double2bfloat16(value);
      uint16_t u;
      std::memcpy(&u, &h, 2);
      return launch_fill<uint16_t>(dst, n, u, s);
    }
    case SK_KDT_I32: {
      if (!(value > -2147483649.0 && value < 2147483648.0)) return SK_KERNEL_BAD_ARG;
      const int32_t i = static_cast<int32_t>(value);
      uint32_t u;
      std::memcpy(&u, &i, 4);
      return launch_fill<uint32_t>(dst, n, u, s);
    }
    case SK_KDT_I64: {
      if (!(value >= -9223372036854775808.0 && value < 9223372036854775808.0)) return SK_KERNEL_BAD_ARG;
      const int64_t i = static_cast<int64_t>(value);
      uint64_t u;
      std::memcpy(&u, &i, 8);
      return launch_fill<uint64_t>(dst, n, u, s);
    }
    case SK_KDT_U16: {
      if (!(value > -1.0 && value < 65536.0)) return SK_KERNEL_BAD_ARG;
      const uint16_t u = static_cast<uint16_t>(value);
      return launch_fill<uint16_t>(dst, n, u, s);
    }
    default:
      return SK_KERNEL_UNSUPPORTED_DTYPE;
  }
}
