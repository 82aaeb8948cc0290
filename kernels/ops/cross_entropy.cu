// sparsek CUDA kernels: fused softmax + cross-entropy, forward and backward.
//
// Shapes: N rows, V vocabulary entries per row, row stride ld >= V (padding columns V..ld-1 are
// never read by the forward and are zeroed by the backward). Dtypes: logits fp32 or bf16,
// targets i32 or i64, losses / lse / dlosses fp32; all math in fp32.
// Design:
//   * one 256-thread block per row, one block per row launched (grid-stride kept for N > 2^31-1).
//   * forward: a single pass over the logits with an online (max, sum exp(x - max)) per thread;
//     4 x 16-byte loads in flight per thread, one rescale per batch of 4 packs (exp2-based,
//     ~1 exp per element); a fixed-order block merge gives lse = max + log(sum). The target's
//     logit is read once by thread 0. Each row's 16-byte phase is peeled with a scalar
//     head/tail, so any ld and any alignment take the vector path.
//   * backward: one read of the logits + one write of dlogits per element,
//     dlogits = (exp(x - lse) - onehot) * g. In-place safe (dlogits == logits): every element is
//     read and then written by the same thread, no thread reads another's elements. Vector path
//     when logits and dlogits have the same 16-byte phase, scalar (coalesced) otherwise.
//   * deterministic: fixed per-thread order and fixed reduction trees.
//   * backward rows with an out-of-range (non-ignored) target are zeroed like ignored rows,
//     matching the zero loss the forward reports for them (the host throws on the flag anyway).
//
// Checked by tests/cuda/test_cuda_parity.cpp against the CPU reference in src/ops/cross_entropy.cpp.
#include "kernels/ops/cross_entropy.h"

#include "kernels/common/device_utils.cuh"

namespace {

using namespace sk_kern;

constexpr int kCEBlock = 256;
constexpr int kCEUnroll = 4;

// online update of (m, s) with one value
__device__ __forceinline__ void online_add(float& m, float& s, float v) {
  if (v > m) {
    s *= exp2f((m - v) * kLog2e);
    m = v;
  }
  const float mm = m == -INFINITY ? 0.f : m;
  s += exp2f((v - mm) * kLog2e);
}

template <typename T, typename TT>
__global__ void __launch_bounds__(kCEBlock)
    ce_fwd_kernel(float* __restrict__ losses, float* __restrict__ lse_out, const T* __restrict__ logits,
                  const TT* __restrict__ targets, int64_t rows, int64_t V, int64_t ld, int64_t ignore_index,
                  int* bad_flag) {
  using P = Pack<T>;
  constexpr int N = P::N;
  constexpr int U = kCEUnroll;
  __shared__ float red[64];
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const T* xr = logits + row * ld;
    int64_t head, nv;
    row_split<T>(xr, V, head, nv);
    const int64_t tail0 = head + nv * N;
    const T* body = xr + head;

    float m = -INFINITY, s = 0.f;
    for (int64_t i = threadIdx.x; i < head; i += blockDim.x) online_add(m, s, load_f32(xr + i));
    for (int64_t v0 = threadIdx.x; v0 < nv; v0 += static_cast<int64_t>(blockDim.x) * U) {
      uint4 r[U];
#pragma unroll
      for (int u = 0; u < U; ++u) {
        const int64_t v = v0 + static_cast<int64_t>(u) * blockDim.x;
        r[u] = v < nv ? ld_stream(body + v * N) : make_uint4(0u, 0u, 0u, 0u);
      }
      float pm = -INFINITY;
#pragma unroll
      for (int u = 0; u < U; ++u) {
        if (v0 + static_cast<int64_t>(u) * blockDim.x < nv) {
#pragma unroll
          for (int j = 0; j < N; ++j) pm = fmaxf(pm, P::get(r[u], j));
        }
      }
      if (pm > m) {
        s *= exp2f((m - pm) * kLog2e);
        m = pm;
      }
      const float mm = m == -INFINITY ? 0.f : m;
#pragma unroll
      for (int u = 0; u < U; ++u) {
        if (v0 + static_cast<int64_t>(u) * blockDim.x < nv) {
#pragma unroll
          for (int j = 0; j < N; ++j) s += exp2f((P::get(r[u], j) - mm) * kLog2e);
        }
      }
    }
    for (int64_t i = tail0 + threadIdx.x; i < V; i += blockDim.x) online_add(m, s, load_f32(xr + i));

    block_ms_merge(m, s, red);

    if (threadIdx.x == 0) {
      const float l = m + logf(s);
      lse_out[row] = l;
      const int64_t t = static_cast<int64_t>(targets[row]);
      float loss = 0.f;
      if (t != ignore_index) {
        if (t < 0 || t >= V) {
          if (bad_flag) *bad_flag = 1;
        } else {
          loss = l - load_f32(xr + t);
        }
      }
      losses[row] = loss;
    }
  }
}

template <typename T>
__device__ __forceinline__ float ce_grad(float x, int64_t j, int64_t t, int64_t V, float l, float g) {
  if (j >= V) return 0.f;
  const float p = exp2f((x - l) * kLog2e);
  return (j == t ? p - 1.0f : p) * g;
}

// NOTE: no __restrict__ on logits / dlogits: they may alias.
template <typename T, typename TT>
__global__ void __launch_bounds__(kCEBlock)
    ce_bwd_kernel(T* dlogits, const T* logits, const float* __restrict__ lse, const TT* __restrict__ targets,
                  const float* __restrict__ dlosses, float scale, int64_t rows, int64_t V, int64_t ld,
                  int64_t ignore_index, bool vec) {
  using P = Pack<T>;
  constexpr int N = P::N;
  constexpr int U = kCEUnroll;
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const T* xr = logits + row * ld;
    T* dr = dlogits + row * ld;
    const int64_t t = static_cast<int64_t>(targets[row]);
    const bool zero_row = t == ignore_index || t < 0 || t >= V;
    const float g = scale * (dlosses ? dlosses[row] : 1.0f);
    const float l = lse[row];

    int64_t head = ld, nv = 0;
    if (vec) row_split<T>(dr, ld, head, nv);
    const int64_t tail0 = head + nv * N;
    T* dbody = dr + head;
    const T* xbody = xr + head;

    if (zero_row) {
      for (int64_t i = threadIdx.x; i < head; i += blockDim.x) store_f32(dr + i, 0.f);
      for (int64_t v = threadIdx.x; v < nv; v += blockDim.x) st_stream(dbody + v * N, make_uint4(0u, 0u, 0u, 0u));
      for (int64_t i = tail0 + threadIdx.x; i < ld; i += blockDim.x) store_f32(dr + i, 0.f);
      continue;
    }

    for (int64_t i = threadIdx.x; i < head; i += blockDim.x) {
      const float x = i < V ? load_f32(xr + i) : 0.f;
      store_f32(dr + i, ce_grad<T>(x, i, t, V, l, g));
    }
    for (int64_t v0 = threadIdx.x; v0 < nv; v0 += static_cast<int64_t>(blockDim.x) * U) {
      uint4 r[U];
#pragma unroll
      for (int u = 0; u < U; ++u) {
        const int64_t v = v0 + static_cast<int64_t>(u) * blockDim.x;
        // packs entirely in the padding are not read
        r[u] = (v < nv && head + v * N < V) ? ld_stream(xbody + v * N) : make_uint4(0u, 0u, 0u, 0u);
      }
#pragma unroll
      for (int u = 0; u < U; ++u) {
        const int64_t v = v0 + static_cast<int64_t>(u) * blockDim.x;
        if (v < nv) {
          const int64_t j0 = head + v * N;
          float f[N];
#pragma unroll
          for (int j = 0; j < N; ++j) f[j] = ce_grad<T>(P::get(r[u], j), j0 + j, t, V, l, g);
          st_stream(dbody + v * N, P::pack(f));
        }
      }
    }
    for (int64_t i = tail0 + threadIdx.x; i < ld; i += blockDim.x) {
      const float x = i < V ? load_f32(xr + i) : 0.f;
      store_f32(dr + i, ce_grad<T>(x, i, t, V, l, g));
    }
  }
}

template <typename T, typename TT>
int ce_forward_impl(float* losses, float* lse, const void* logits, const void* targets, int64_t N, int64_t V,
                    int64_t ld, int64_t ignore_index, int* bad_flag, cudaStream_t s) {
  if (!aligned_to(logits, sizeof(T)) || !aligned_to(targets, sizeof(TT))) return SK_KERNEL_MISALIGNED;
  auto kernel = ce_fwd_kernel<T, TT>;
  const int grid = streaming_grid(N);
  kernel<<<grid, kCEBlock, 0, s>>>(losses, lse, static_cast<const T*>(logits), static_cast<const TT*>(targets), N,
                                   V, ld, ignore_index, bad_flag);
  return launch_status();
}

template <typename T, typename TT>
int ce_backward_impl(void* dlogits, const void* logits, const float* lse, const void* targets, const float* dlosses,
                     float scale, int64_t N, int64_t V, int64_t ld, int64_t ignore_index, cudaStream_t s) {
  if (!aligned_to(dlogits, sizeof(T)) || !aligned_to(logits, sizeof(T)) || !aligned_to(targets, sizeof(TT)))
    return SK_KERNEL_MISALIGNED;
  const bool vec = misalign16(dlogits) == misalign16(logits);
  auto kernel = ce_bwd_kernel<T, TT>;
  const int grid = streaming_grid(N);
  kernel<<<grid, kCEBlock, 0, s>>>(static_cast<T*>(dlogits), static_cast<const T*>(logits), lse,
                                   static_cast<const TT*>(targets), dlosses, scale, N, V, ld, ignore_index, vec);
  return launch_status();
}

}  // namespace

extern "C" int sk_cuda_cross_entropy_forward(float* losses, float* lse, const void* logits, const void* targets,
                                             int target_dtype, int64_t N, int64_t V, int64_t ld, int ignore_index,
                                             int dtype, int* bad_target_flag, cudaStream_t s) {
  if (!is_float_dtype(dtype)) return SK_KERNEL_UNSUPPORTED_DTYPE;
  if (target_dtype != SK_KDT_I32 && target_dtype != SK_KDT_I64) return SK_KERNEL_UNSUPPORTED_DTYPE;
  if (N < 0 || V <= 0 || ld < V) return SK_KERNEL_BAD_ARG;
  if (N == 0) return SK_KERNEL_OK;
  if (!losses || !lse || !logits || !targets) return SK_KERNEL_BAD_ARG;
  if (!aligned_to(losses, 4) || !aligned_to(lse, 4)) return SK_KERNEL_MISALIGNED;
  const bool i64 = target_dtype == SK_KDT_I64;
  if (dtype == SK_KDT_F32)
    return i64 ? ce_forward_impl<float, int64_t>(losses, lse, logits, targets, N, V, ld, ignore_index,
                                                 bad_target_flag, s)
               : ce_forward_impl<float, int32_t>(losses, lse, logits, targets, N, V, ld, ignore_index,
                                                 bad_target_flag, s);
  return i64 ? ce_forward_impl<__nv_bfloat16, int64_t>(losses, lse, logits, targets, N, V, ld, ignore_index,
                                                       bad_target_flag, s)
             : ce_forward_impl<__nv_bfloat16, int32_t>(losses, lse, logits, targets, N, V, ld, ignore_index,
                                                       bad_target_flag, s);
}

extern "C" int sk_cuda_cross_entropy_backward(void* dlogits, const void* logits, const float* lse,
                                              const void* targets, int target_dtype, const float* dlosses,
                                              float dloss_scale, int64_t N, int64_t V, int64_t ld, int ignore_index,
                                              int dtype, cudaStream_t s) {
  if (!is_float_dtype(dtype)) return SK_KERNEL_UNSUPPORTED_DTYPE;
  if (target_dtype != SK_KDT_I32 && target_dtype != SK_KDT_I64) return SK_KERNEL_UNSUPPORTED_DTYPE;
  if (N < 0 || V <= 0 || ld < V) return SK_KERNEL_BAD_ARG;
  if (N == 0) return SK_KERNEL_OK;
  if (!dlogits || !logits || !lse || !targets) return SK_KERNEL_BAD_ARG;
  if (!aligned_to(lse, 4) || (dlosses && !aligned_to(dlosses, 4))) return SK_KERNEL_MISALIGNED;
  const bool i64 = target_dtype == SK_KDT_I64;
  if (dtype == SK_KDT_F32)
    return i64 ? ce_backward_impl<float, int64_t>(dlogits, logits, lse, targets, dlosses, dloss_scale, N, V, ld,
                                                  ignore_index, s)
               : ce_backward_impl<float, int32_t>(dlogits, logits, lse, targets, dlosses, dloss_scale, N, V, ld,
                                                  ignore_index, s);
  return i64 ? ce_backward_impl<__nv_bfloat16, int64_t>(dlogits, logits, lse, targets, dlosses, dloss_scale, N, V,
                                                        ld, ignore_index, s)
             : ce_backward_impl<__nv_bfloat16, int32_t>(dlogits, logits, lse, targets, dlosses, dloss_scale, N, V,
                                                        ld, ignore_index, s);
}
