// sparsek CUDA kernels: embedding forward (row gather) and backward (row scatter-add).
//
// Shapes: table [V, C] (V vocabulary rows, C channels), idx [N] i32/i64, out / dout [N, C],
// dtable_f32 [V, C] fp32. Dtypes: table / out / dout fp32 or bf16.
// Design: one warp per output row (8 rows per 256-thread block, persistent grid-stride).
//   * forward is a pure copy of raw bits (no conversion): 16-byte vectors when table, out and the
//     row pitch C * sizeof(T) are 16-byte aligned, element copies otherwise. Out-of-range index:
//     zero row + *bad_index_flag = 1. Deterministic.
//   * backward accumulates dout rows into the fp32 table with atomicAdd — float4 vector atomics
//     (sm_90) when aligned, scalar otherwise. Repeated indices make the fp32 summation order
//     depend on scheduling: THIS KERNEL IS NOT BIT-DETERMINISTIC (the only such kernel here).
//
// Checked by tests/cuda/test_cuda_parity.cpp against the CPU reference in src/ops/embedding.cpp.
#include "kernels/ops/embedding.h"

#include "kernels/common/device_utils.cuh"

namespace {

using namespace sk_kern;

constexpr int kEmbBlock = 256;
constexpr int kEmbRowsPerBlock = kEmbBlock / 32;
constexpr int kEmbUnroll = 4;

// U: raw element type (uint16_t / uint32_t) for the scalar path; vec: 16-byte path.
template <typename U, typename TI>
__global__ void __launch_bounds__(kEmbBlock)
    emb_fwd_kernel(U* __restrict__ out, const U* __restrict__ table, const TI* __restrict__ idx, int64_t rows,
                   int64_t V, int64_t C, int* bad_flag, bool vec) {
  const int lane = threadIdx.x & 31;
  const int64_t warp0 = static_cast<int64_t>(blockIdx.x) * kEmbRowsPerBlock + (threadIdx.x >> 5);
  const int64_t nwarps = static_cast<int64_t>(gridDim.x) * kEmbRowsPerBlock;
  constexpr int64_t kPer = 16 / sizeof(U);
  for (int64_t n = warp0; n < rows; n += nwarps) {
    const int64_t id = static_cast<int64_t>(idx[n]);
    const bool ok = id >= 0 && id < V;
    if (!ok && lane == 0 && bad_flag) *bad_flag = 1;
    U* dst = out + n * C;
    const U* src = table + (ok ? id : 0) * C;
    if (vec) {
      const int64_t nv = C / kPer;
      uint4* d4 = reinterpret_cast<uint4*>(dst);
      const uint4* s4 = reinterpret_cast<const uint4*>(src);
      for (int64_t v0 = lane; v0 < nv; v0 += 32 * kEmbUnroll) {
        uint4 r[kEmbUnroll];
#pragma unroll
        for (int u = 0; u < kEmbUnroll; ++u) {
          const int64_t v = v0 + 32 * u;
          r[u] = (ok && v < nv) ? s4[v] : make_uint4(0u, 0u, 0u, 0u);
        }
#pragma unroll
        for (int u = 0; u < kEmbUnroll; ++u) {
          const int64_t v = v0 + 32 * u;
          if (v < nv) d4[v] = r[u];
        }
      }
    } else {
      for (int64_t c = lane; c < C; c += 32) dst[c] = ok ? src[c] : U(0);
    }
  }
}

template <typename T, typename TI>
__global__ void __launch_bounds__(kEmbBlock)
    emb_bwd_kernel(float* __restrict__ dtable, const T* __restrict__ dout, const TI* __restrict__ idx, int64_t rows,
                   int64_t V, int64_t C, bool vec) {
  using P = Pack<T>;
  constexpr int N = P::N;
  const int lane = threadIdx.x & 31;
  const int64_t warp0 = static_cast<int64_t>(blockIdx.x) * kEmbRowsPerBlock + (threadIdx.x >> 5);
  const int64_t nwarps = static_cast<int64_t>(gridDim.x) * kEmbRowsPerBlock;
  for (int64_t n = warp0; n < rows; n += nwarps) {
    const int64_t id = static_cast<int64_t>(idx[n]);
    if (id < 0 || id >= V) continue;  // warp-uniform
    const T* src = dout + n * C;
    float* dst = dtable + id * C;
    if (vec) {
      const int64_t nv = C / N;
      for (int64_t v = lane; v < nv; v += 32) {
        float f[N];
        P::unpack(ld_stream(src + v * N), f);
#pragma unroll
        for (int q = 0; q < N / 4; ++q) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
          atomicAdd(reinterpret_cast<float4*>(dst + v * N) + q,
                    make_float4(f[4 * q], f[4 * q + 1], f[4 * q + 2], f[4 * q + 3]));
#else
          for (int e = 0; e < 4; ++e) atomicAdd(dst + v * N + 4 * q + e, f[4 * q + e]);
#endif
        }
      }
    } else {
      for (int64_t c = lane; c < C; c += 32) atomicAdd(dst + c, load_f32(src + c));
    }
  }
}

template <typename U, typename TI>
int emb_forward_impl(void* out, const void* table, const void* idx, int64_t N, int64_t V, int64_t C, int* bad_flag,
                     cudaStream_t s) {
  if (!aligned_to(out, sizeof(U)) || !aligned_to(table, sizeof(U)) || !aligned_to(idx, sizeof(TI)))
    return SK_KERNEL_MISALIGNED;
  const bool vec = aligned16(out) && aligned16(table) && (C * static_cast<int64_t>(sizeof(U))) % 16 == 0;
  auto kernel = emb_fwd_kernel<U, TI>;
  const int grid = persistent_grid(kernel, kEmbBlock, 0, ceil_div(N, kEmbRowsPerBlock));
  kernel<<<grid, kEmbBlock, 0, s>>>(static_cast<U*>(out), static_cast<const U*>(table),
                                    static_cast<const TI*>(idx), N, V, C, bad_flag, vec);
  return launch_status();
}

template <typename T, typename TI>
int emb_backward_impl(float* dtable, const void* dout, const void* idx, int64_t N, int64_t V, int64_t C,
                      cudaStream_t s) {
  if (!aligned_to(dtable, 4) || !aligned_to(dout, sizeof(T)) || !aligned_to(idx, sizeof(TI)))
    return SK_KERNEL_MISALIGNED;
  const bool vec = aligned16(dtable) && aligned16(dout) && C % Pack<T>::N == 0;
  auto kernel = emb_bwd_kernel<T, TI>;
  const int grid = persistent_grid(kernel, kEmbBlock, 0, ceil_div(N, kEmbRowsPerBlock));
  kernel<<<grid, kEmbBlock, 0, s>>>(dtable, static_cast<const T*>(dout), static_cast<const TI*>(idx), N, V, C, vec);
  return launch_status();
}

}  // namespace

extern "C" int sk_cuda_embedding_forward(void* out, const void* table, const void* idx, int idx_dtype, int64_t N,
                                         int64_t V, int64_t C, int dtype, int* bad_index_flag, cudaStream_t s) {
  if (!is_float_dtype(dtype)) return SK_KERNEL_UNSUPPORTED_DTYPE;
  if (idx_dtype != SK_KDT_I32 && idx_dtype != SK_KDT_I64) return SK_KERNEL_UNSUPPORTED_DTYPE;
  if (N < 0 || V < 0 || C < 0) return SK_KERNEL_BAD_ARG;
  if (N == 0 || C == 0) return SK_KERNEL_OK;
  if (!out || !idx || (V > 0 && !table)) return SK_KERNEL_BAD_ARG;
  const bool i64 = idx_dtype == SK_KDT_I64;
  // the forward copies raw bits: only the element width matters
  if (dtype == SK_KDT_F32)
    return i64 ? emb_forward_impl<uint32_t, int64_t>(out, table, idx, N, V, C, bad_index_flag, s)
               : emb_forward_impl<uint32_t, int32_t>(out, table, idx, N, V, C, bad_index_flag, s);
  return i64 ? emb_forward_impl<uint16_t, int64_t>(out, table, idx, N, V, C, bad_index_flag, s)
             : emb_forward_impl<uint16_t, int32_t>(out, table, idx, N, V, C, bad_index_flag, s);
}

extern "C" int sk_cuda_embedding_backward(float* dtable_f32, const void* dout, const void* idx, int idx_dtype,
                                          int64_t N, int64_t V, int64_t C, int dtype, cudaStream_t s) {
  if (!is_float_dtype(dtype)) return SK_KERNEL_UNSUPPORTED_DTYPE;
  if (idx_dtype != SK_KDT_I32 && idx_dtype != SK_KDT_I64) return SK_KERNEL_UNSUPPORTED_DTYPE;
  if (N < 0 || V < 0 || C < 0) return SK_KERNEL_BAD_ARG;
  if (N == 0 || C == 0 || V == 0) return SK_KERNEL_OK;
  if (!dtable_f32 || !dout || !idx) return SK_KERNEL_BAD_ARG;
  const bool i64 = idx_dtype == SK_KDT_I64;
  if (dtype == SK_KDT_F32)
    return i64 ? emb_backward_impl<float, int64_t>(dtable_f32, dout, idx, N, V, C, s)
               : emb_backward_impl<float, int32_t>(dtable_f32, dout, idx, N, V, C, s);
  return i64 ? emb_backward_impl<__nv_bfloat16, int64_t>(dtable_f32, dout, idx, N, V, C, s)
             : emb_backward_impl<__nv_bfloat16, int32_t>(dtable_f32, dout, idx, N, V, C, s);
}
