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

// lse of row xr (V values): one pass with an online (max, sum exp) per thread, 16-byte loads
// (evict-first when kStream, default caching otherwise), fixed-order block merge. Every thread
// gets the result. red: 64 floats of shared memory.
template <typename T, bool kStream>
__device__ __forceinline__ float ce_row_lse(const T* xr, int64_t V, float* red) {
  using P = Pack<T>;
  constexpr int N = P::N;
  constexpr int U = kCEUnroll;
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
      r[u] = v < nv ? (kStream ? ld_stream(body + v * N) : ld_vec(body + v * N)) : make_uint4(0u, 0u, 0u, 0u);
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
  return m + logf(s);
}

// Thread 0: lse[row], losses[row] (0 for an ignored row; an out-of-range target raises bad_flag).
// x_t: the target's logit (read by the caller while t is valid; unused otherwise).
__device__ __forceinline__ void ce_row_loss(float* losses, float* lse_out, int64_t row, int64_t t, float x_t, float l,
                                            int64_t V, int64_t ignore_index, int* bad_flag) {
  lse_out[row] = l;
  float loss = 0.f;
  if (t != ignore_index) {
    if (t < 0 || t >= V) {
      if (bad_flag) *bad_flag = 1;
    } else {
      loss = l - x_t;
    }
  }
  losses[row] = loss;
}

// The target's logit of a row (0 for a target outside [0, V)); thread 0 reads it before the row's
// pass, so the load's latency hides behind the pass (and, in place, before the row is overwritten).
template <typename T>
__device__ __forceinline__ float ce_target_logit(const T* xr, int64_t t, int64_t V) {
  return (t >= 0 && t < V) ? load_f32(xr + t) : 0.f;
}

template <typename T, typename TT>
__global__ void __launch_bounds__(kCEBlock)
    ce_fwd_kernel(float* __restrict__ losses, float* __restrict__ lse_out, const T* __restrict__ logits,
                  const TT* __restrict__ targets, int64_t rows, int64_t V, int64_t ld, int64_t ignore_index,
                  int* bad_flag) {
  __shared__ float red[64];
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const T* xr = logits + row * ld;
    int64_t t = 0;
    float x_t = 0.f;
    if (threadIdx.x == 0) {
      t = static_cast<int64_t>(targets[row]);
      x_t = ce_target_logit(xr, t, V);
    }
    const float l = ce_row_lse<T, true>(xr, V, red);
    if (threadIdx.x == 0) ce_row_loss(losses, lse_out, row, t, x_t, l, V, ignore_index, bad_flag);
  }
}

template <typename T>
__device__ __forceinline__ float ce_grad(float x, int64_t j, int64_t t, int64_t V, float l, float g) {
  if (j >= V) return 0.f;
  const float p = exp2f((x - l) * kLog2e);
  return (j == t ? p - 1.0f : p) * g;
}

// Row gradient dr = (exp(xr - l) - onehot(t)) * g over the valid columns, 0 in the padding (and
// everywhere when zero_row). dr may alias xr: each element is read, then written, by one thread.
// vec: dr and xr share their 16-byte phase (16-byte accesses in the body).
template <typename T>
__device__ __forceinline__ void ce_grad_row(T* dr, const T* xr, int64_t t, bool zero_row, float l, float g, int64_t V,
                                            int64_t ld, bool vec) {
  using P = Pack<T>;
  constexpr int N = P::N;
  constexpr int U = kCEUnroll;
  int64_t head = ld, nv = 0;
  if (vec) row_split<T>(dr, ld, head, nv);
  const int64_t tail0 = head + nv * N;
  T* dbody = dr + head;
  const T* xbody = xr + head;

  if (zero_row) {
    for (int64_t i = threadIdx.x; i < head; i += blockDim.x) store_f32(dr + i, 0.f);
    for (int64_t v = threadIdx.x; v < nv; v += blockDim.x) st_stream(dbody + v * N, make_uint4(0u, 0u, 0u, 0u));
    for (int64_t i = tail0 + threadIdx.x; i < ld; i += blockDim.x) store_f32(dr + i, 0.f);
    return;
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
        if (j0 + N <= V && (t < j0 || t >= j0 + N)) {  // all valid, not the target's pack: p * g
#pragma unroll
          for (int j = 0; j < N; ++j) f[j] = exp2f((P::get(r[u], j) - l) * kLog2e) * g;
        } else {
#pragma unroll
          for (int j = 0; j < N; ++j) f[j] = ce_grad<T>(P::get(r[u], j), j0 + j, t, V, l, g);
        }
        st_stream(dbody + v * N, P::pack(f));
      }
    }
  }
  for (int64_t i = tail0 + threadIdx.x; i < ld; i += blockDim.x) {
    const float x = i < V ? load_f32(xr + i) : 0.f;
    store_f32(dr + i, ce_grad<T>(x, i, t, V, l, g));
  }
}

// NOTE: no __restrict__ on logits / dlogits: they may alias.
template <typename T, typename TT>
__global__ void __launch_bounds__(kCEBlock)
    ce_bwd_kernel(T* dlogits, const T* logits, const float* __restrict__ lse, const TT* __restrict__ targets,
                  const float* __restrict__ dlosses, float scale, int64_t rows, int64_t V, int64_t ld,
                  int64_t ignore_index, bool vec) {
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const int64_t t = static_cast<int64_t>(targets[row]);
    const bool zero_row = t == ignore_index || t < 0 || t >= V;
    const float g = scale * (dlosses ? dlosses[row] : 1.0f);
    ce_grad_row<T>(dlogits + row * ld, logits + row * ld, t, zero_row, lse[row], g, V, ld, vec);
  }
}

// Forward and backward of a Mean loss in one launch, in place (logits becomes dlogits): per row,
// the lse pass with default caching, then the gradient for an upstream gradient of 1:
// (exp(x - lse) - onehot) * inv_count (*inv_count on the device). Two 512-thread blocks per SM:
// two rows per SM in flight (26 MB of bf16 GPT-2 rows on 132 SMs, inside the 50 MB L2, so the
// second pass reads the row from L2), 64 KB of loads in flight per SM, and one block's exp work
// overlaps the other's loads.
constexpr int kCEFusedBlock = 512;
template <typename T, typename TT>
__global__ void __launch_bounds__(kCEFusedBlock, 2)
    ce_fused_mean_kernel(float* __restrict__ losses, float* __restrict__ lse_out, T* logits,
                         const TT* __restrict__ targets, const float* __restrict__ inv_count, int64_t rows, int64_t V,
                         int64_t ld, int64_t ignore_index, int* bad_flag) {
  __shared__ float red[64];
  const float g = *inv_count;
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    T* xr = logits + row * ld;
    const int64_t t = static_cast<int64_t>(targets[row]);
    float x_t = 0.f;
    if (threadIdx.x == 0) x_t = ce_target_logit(xr, t, V);
    const float l = ce_row_lse<T, false>(xr, V, red);  // ends in block-wide barriers: x_t is read by then
    if (threadIdx.x == 0) ce_row_loss(losses, lse_out, row, t, x_t, l, V, ignore_index, bad_flag);
    ce_grad_row<T>(xr, xr, t, t == ignore_index || t < 0 || t >= V, l, g, V, ld, true);
  }
}

// d *= *g unless *g == 1 (the usual upstream gradient of a loss: then every block returns at once).
template <typename T>
__global__ void ce_rescale_kernel(T* d, int64_t n, const float* __restrict__ g) {
  const float s = *g;
  if (s == 1.0f) return;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    store_f32(d + i, load_f32(d + i) * s);
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

extern "C" int sk_cuda_cross_entropy_mean_fused(float* losses, float* lse, void* logits, const void* targets,
                                                int target_dtype, const float* inv_count, int64_t N, int64_t V,
                                                int64_t ld, int ignore_index, int dtype, int* bad_target_flag,
                                                cudaStream_t s) {
  if (!is_float_dtype(dtype)) return SK_KERNEL_UNSUPPORTED_DTYPE;
  if (target_dtype != SK_KDT_I32 && target_dtype != SK_KDT_I64) return SK_KERNEL_UNSUPPORTED_DTYPE;
  if (N < 0 || V < 1 || ld < V) return SK_KERNEL_BAD_ARG;
  if (N == 0) return SK_KERNEL_OK;
  if (!losses || !lse || !logits || !targets || !inv_count) return SK_KERNEL_BAD_ARG;
  const size_t es = float_dtype_size(dtype), ts = target_dtype == SK_KDT_I32 ? 4 : 8;
  if (!aligned_to(logits, es) || !aligned_to(targets, ts)) return SK_KERNEL_MISALIGNED;
  const int grid = static_cast<int>(N < 2 * sm_count() ? N : 2 * sm_count());
  auto launch = [&](auto tp, auto ttp) {
    using T = std::remove_pointer_t<decltype(tp)>;
    using TT = std::remove_pointer_t<decltype(ttp)>;
    ce_fused_mean_kernel<T, TT><<<grid, kCEFusedBlock, 0, s>>>(losses, lse, static_cast<T*>(logits),
                                                               static_cast<const TT*>(targets), inv_count, N, V, ld,
                                                               ignore_index, bad_target_flag);
    return launch_status();
  };
  if (dtype == SK_KDT_F32)
    return target_dtype == SK_KDT_I32 ? launch(static_cast<float*>(nullptr), static_cast<int32_t*>(nullptr))
                                      : launch(static_cast<float*>(nullptr), static_cast<int64_t*>(nullptr));
  return target_dtype == SK_KDT_I32 ? launch(static_cast<__nv_bfloat16*>(nullptr), static_cast<int32_t*>(nullptr))
                                    : launch(static_cast<__nv_bfloat16*>(nullptr), static_cast<int64_t*>(nullptr));
}

extern "C" int sk_cuda_cross_entropy_rescale(void* d, int64_t n, const float* g, int dtype, cudaStream_t s) {
  if (!is_float_dtype(dtype)) return SK_KERNEL_UNSUPPORTED_DTYPE;
  if (n < 0 || !g || (n > 0 && !d)) return SK_KERNEL_BAD_ARG;
  if (n == 0) return SK_KERNEL_OK;
  // Grid-stride over a few blocks per SM: with one block per 256 values (6.4 M blocks for GPT-2's
  // logits) the launch alone took ~4 ms even when every block returned at once (ncu, 2026-12-03).
  const int64_t cap = static_cast<int64_t>(sm_count()) * 4;
  const int64_t blocks = ceil_div(n, static_cast<int64_t>(256));
  const int grid = static_cast<int>(blocks < cap ? blocks : cap);
  if (dtype == SK_KDT_F32) ce_rescale_kernel<float><<<grid, 256, 0, s>>>(static_cast<float*>(d), n, g);
  else ce_rescale_kernel<__nv_bfloat16><<<grid, 256, 0, s>>>(static_cast<__nv_bfloat16*>(d), n, g);
  return launch_status();
}
