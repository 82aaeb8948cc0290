// sparsek CUDA kernels: softmax forward / backward over the last dim.
//
// Shapes: x, y, dy, dx [N, C] (N rows, C classes), contiguous. Dtypes: fp32 or bf16, fp32 math.
// Design:
//   * C <= 8192: register path (kernels/common/row_layout.cuh): 1..8 warps per row, the row stays
//     in registers in its storage dtype, one global read and one write per element; 16-byte
//     accesses when rows are 16-byte aligned, coalesced scalar accesses otherwise.
//     Forward: max, then sum of exp(x - max), then y = exp(x - max) / sum (exp recomputed from
//     registers). Backward: s = sum(dy * y), dx = y * (dy - s).
//   * C > 8192 (e.g. vocabulary-sized rows): one block per row; forward makes one online
//     (max, sum-exp) pass and one write pass, backward one dot pass and one write pass; 16-byte
//     vector body with a per-row scalar head/tail when the row pointers share a 16-byte phase.
// Deterministic (fixed reduction trees). exp(x - max) is evaluated as exp2f(x * log2e - max * log2e)
// (FMA + ex2; the rounding of max * log2e is a common factor that cancels in the normalisation),
// and the normalisation multiplies by 1 / sum.
//
// Checked by tests/cuda/test_cuda_parity.cpp against the CPU reference in src/ops/softmax.cpp.
#include "kernels/ops/softmax.h"

#include "kernels/common/device_utils.cuh"
#include "kernels/common/row_layout.cuh"

namespace {

using namespace sk_kern;

constexpr int kGenericBlock = 512;

// ------------------------------------------------------------------------------------------
// Register path
// ------------------------------------------------------------------------------------------
template <typename T, int VPL, bool VEC>
__global__ void __launch_bounds__(kRowBlock, 1)
    softmax_fwd_rows_kernel(T* __restrict__ y, const T* __restrict__ x, int64_t rows, int C, int WPR) {
  using L = RowLayout<T, VPL, VEC>;
  using P = Pack<T>;
  constexpr int N = P::N;
  __shared__ float red[kRowBlock / 32];
  const int TPR = 32 * WPR;
  const int RPB = kRowBlock / TPR;
  const int ry = threadIdx.x / TPR, t = threadIdx.x % TPR;

  for (int64_t base = static_cast<int64_t>(blockIdx.x) * RPB; base < rows;
       base += static_cast<int64_t>(gridDim.x) * RPB) {
    const int64_t row = base + ry;
    const bool active = row < rows;
    uint4 xr[VPL];
    L::load(xr, x + row * C, t, TPR, C, active);

    float m = -INFINITY;
#pragma unroll
    for (int k = 0; k < VPL; ++k)
#pragma unroll
      for (int j = 0; j < N; ++j)
        if (L::valid(k, j, t, TPR, C)) m = fmaxf(m, P::get(xr[k], j));
    m = group_max(m, red, WPR);

    // exp(x - m) = exp2(x * log2e - m * log2e): one FMA + ex2. The rounding of m * log2e scales
    // every term (and the sum) by the same factor, so it cancels in the normalisation.
    const float ml = m * kLog2e;
    float sum = 0.f;
#pragma unroll
    for (int k = 0; k < VPL; ++k)
#pragma unroll
      for (int j = 0; j < N; ++j)
        if (L::valid(k, j, t, TPR, C)) sum += exp2f(fmaf(P::get(xr[k], j), kLog2e, -ml));
    sum = group_sum(sum, red, WPR);
    const float inv = 1.0f / sum;
    launder(xr);

    if (active) {
      T* yrow = y + row * C;
#pragma unroll
      for (int k = 0; k < VPL; ++k) {
        float out[N];
#pragma unroll
        for (int j = 0; j < N; ++j) out[j] = exp2f(fmaf(P::get(xr[k], j), kLog2e, -ml)) * inv;
        L::store_pack(yrow, k, out, t, TPR, C);
      }
    }
  }
}

template <typename T, int VPL, bool VEC>
__global__ void __launch_bounds__(kRowBlock, 1)
    softmax_bwd_rows_kernel(T* dx, const T* dy, const T* __restrict__ y, int64_t rows, int C, int WPR) {
  // dx may alias dy: every element is read (into registers) before the same thread writes it.
  using L = RowLayout<T, VPL, VEC>;
  using P = Pack<T>;
  constexpr int N = P::N;
  __shared__ float red[kRowBlock / 32];
  const int TPR = 32 * WPR;
  const int RPB = kRowBlock / TPR;
  const int ry = threadIdx.x / TPR, t = threadIdx.x % TPR;

  for (int64_t base = static_cast<int64_t>(blockIdx.x) * RPB; base < rows;
       base += static_cast<int64_t>(gridDim.x) * RPB) {
    const int64_t row = base + ry;
    const bool active = row < rows;
    uint4 yr[VPL], dyr[VPL];
    L::load(yr, y + row * C, t, TPR, C, active);
    L::load(dyr, dy + row * C, t, TPR, C, active);

    float dot = 0.f;
#pragma unroll
    for (int k = 0; k < VPL; ++k)
#pragma unroll
      for (int j = 0; j < N; ++j) dot += P::get(dyr[k], j) * P::get(yr[k], j);  // invalid slots are 0
    dot = group_sum(dot, red, WPR);
    launder(yr);
    launder(dyr);

    if (active) {
      T* dxrow = dx + row * C;
#pragma unroll
      for (int k = 0; k < VPL; ++k) {
        float out[N];
#pragma unroll
        for (int j = 0; j < N; ++j) out[j] = P::get(yr[k], j) * (P::get(dyr[k], j) - dot);
        L::store_pack(dxrow, k, out, t, TPR, C);
      }
    }
  }
}

// ------------------------------------------------------------------------------------------
// Generic path (C > kRowMaxC): block per row. vec: rows of x and y share a 16-byte phase.
// ------------------------------------------------------------------------------------------
template <typename T>
__global__ void __launch_bounds__(kGenericBlock)
    softmax_fwd_generic_kernel(T* __restrict__ y, const T* __restrict__ x, int64_t rows, int64_t C, bool vec) {
  using P = Pack<T>;
  constexpr int N = P::N;
  __shared__ float red[64];
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const T* xr = x + row * C;
    T* yr = y + row * C;
    int64_t head = C, nv = 0;
    if (vec) row_split<T>(xr, C, head, nv);
    const int64_t tail0 = head + nv * N;

    float m = -INFINITY, s = 0.f;
    auto add = [&](float v) {  // online update with one element
      if (v > m) {
        s = s * exp2f((m - v) * kLog2e);
        m = v;
      }
      s += exp2f((v - (m == -INFINITY ? 0.f : m)) * kLog2e);  // all -inf so far: exp(-inf) = 0, not NaN
    };
    for (int64_t i = threadIdx.x; i < head; i += blockDim.x) add(load_f32(xr + i));
    for (int64_t v = threadIdx.x; v < nv; v += blockDim.x) {
      float f[N];
      P::unpack(ld_vec(xr + head + v * N), f);
      float pm = f[0];
#pragma unroll
      for (int j = 1; j < N; ++j) pm = fmaxf(pm, f[j]);
      if (pm > m) {
        s = s * exp2f((m - pm) * kLog2e);
        m = pm;
      }
      const float mm = m == -INFINITY ? 0.f : m;
#pragma unroll
      for (int j = 0; j < N; ++j) s += exp2f((f[j] - mm) * kLog2e);
    }
    for (int64_t i = tail0 + threadIdx.x; i < C; i += blockDim.x) add(load_f32(xr + i));
    block_ms_merge(m, s, red);
    const float ml = m * kLog2e, inv = 1.0f / s;

    for (int64_t i = threadIdx.x; i < head; i += blockDim.x) store_f32(yr + i, exp2f(fmaf(load_f32(xr + i), kLog2e, -ml)) * inv);
    for (int64_t v = threadIdx.x; v < nv; v += blockDim.x) {
      float f[N];
      P::unpack(ld_stream(xr + head + v * N), f);
#pragma unroll
      for (int j = 0; j < N; ++j) f[j] = exp2f(fmaf(f[j], kLog2e, -ml)) * inv;
      st_stream(yr + head + v * N, P::pack(f));
    }
    for (int64_t i = tail0 + threadIdx.x; i < C; i += blockDim.x) store_f32(yr + i, exp2f(fmaf(load_f32(xr + i), kLog2e, -ml)) * inv);
  }
}

template <typename T>
__global__ void __launch_bounds__(kGenericBlock)
    softmax_bwd_generic_kernel(T* dx, const T* dy, const T* __restrict__ y, int64_t rows, int64_t C, bool vec) {
  using P = Pack<T>;
  constexpr int N = P::N;
  __shared__ float red[32];
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const T* yr = y + row * C;
    const T* dyr = dy + row * C;
    T* dxr = dx + row * C;
    int64_t head = C, nv = 0;
    if (vec) row_split<T>(yr, C, head, nv);
    const int64_t tail0 = head + nv * N;
    float dot = 0.f;
    for (int64_t i = threadIdx.x; i < head; i += blockDim.x) dot += load_f32(dyr + i) * load_f32(yr + i);
    for (int64_t v = threadIdx.x; v < nv; v += blockDim.x) {
      float a[N], b[N];
      P::unpack(ld_vec(dyr + head + v * N), a);
      P::unpack(ld_vec(yr + head + v * N), b);
#pragma unroll
      for (int j = 0; j < N; ++j) dot += a[j] * b[j];
    }
    for (int64_t i = tail0 + threadIdx.x; i < C; i += blockDim.x) dot += load_f32(dyr + i) * load_f32(yr + i);
    dot = block_sum(dot, red);
    // dx may alias dy: each thread reads its own elements before writing them, and the dot pass
    // above finished (block_sum synchronizes) before any write.
    for (int64_t i = threadIdx.x; i < head; i += blockDim.x)
      store_f32(dxr + i, load_f32(yr + i) * (load_f32(dyr + i) - dot));
    for (int64_t v = threadIdx.x; v < nv; v += blockDim.x) {
      float a[N], b[N];
      P::unpack(ld_vec(dyr + head + v * N), a);
      P::unpack(ld_vec(yr + head + v * N), b);
#pragma unroll
      for (int j = 0; j < N; ++j) a[j] = b[j] * (a[j] - dot);
      st_vec(dxr + head + v * N, P::pack(a));
    }
    for (int64_t i = tail0 + threadIdx.x; i < C; i += blockDim.x)
      store_f32(dxr + i, load_f32(yr + i) * (load_f32(dyr + i) - dot));
  }
}

template <typename T>
int softmax_forward_impl(void* y, const void* x, int64_t N, int64_t C, cudaStream_t s) {
  T* yp = static_cast<T*>(y);
  const T* xp = static_cast<const T*>(x);
  if (!aligned_to(y, sizeof(T)) || !aligned_to(x, sizeof(T))) return SK_KERNEL_MISALIGNED;
  int wpr = 0, vpl = 0;
  if (pick_row_shape<T>(C, wpr, vpl)) {
    const bool vec = (C * static_cast<int64_t>(sizeof(T))) % 16 == 0 && aligned16(y) && aligned16(x);
    const int rpb = kRowBlock / (32 * wpr);
    return dispatch_row_shape<T>(vec, vpl, [&](auto vc, auto vecc) {
      constexpr int V = decltype(vc)::value;
      constexpr bool VEC = decltype(vecc)::value;
      auto kernel = softmax_fwd_rows_kernel<T, V, VEC>;
      const int grid = persistent_grid(kernel, kRowBlock, 0, ceil_div(N, rpb));
      kernel<<<grid, kRowBlock, 0, s>>>(yp, xp, N, static_cast<int>(C), wpr);
      return launch_status();
    });
  }
  // vector body only if every row of x and y has the same 16-byte phase
  const bool vec = misalign16(x) == misalign16(y) && (C * static_cast<int64_t>(sizeof(T))) % 16 == 0;
  auto kernel = softmax_fwd_generic_kernel<T>;
  const int grid = persistent_grid(kernel, kGenericBlock, 0, N);
  kernel<<<grid, kGenericBlock, 0, s>>>(yp, xp, N, C, vec);
  return launch_status();
}

template <typename T>
int softmax_backward_impl(void* dx, const void* dy, const void* y, int64_t N, int64_t C, cudaStream_t s) {
  T* dxp = static_cast<T*>(dx);
  const T* dyp = static_cast<const T*>(dy);
  const T* yp = static_cast<const T*>(y);
  if (!aligned_to(dx, sizeof(T)) || !aligned_to(dy, sizeof(T)) || !aligned_to(y, sizeof(T)))
    return SK_KERNEL_MISALIGNED;
  int wpr = 0, vpl = 0;
  if (pick_row_shape<T>(C, wpr, vpl)) {
    const bool vec =
        (C * static_cast<int64_t>(sizeof(T))) % 16 == 0 && aligned16(dx) && aligned16(dy) && aligned16(y);
    const int rpb = kRowBlock / (32 * wpr);
    return dispatch_row_shape<T>(vec, vpl, [&](auto vc, auto vecc) {
      constexpr int V = decltype(vc)::value;
      constexpr bool VEC = decltype(vecc)::value;
      auto kernel = softmax_bwd_rows_kernel<T, V, VEC>;
      const int grid = persistent_grid(kernel, kRowBlock, 0, ceil_div(N, rpb));
      kernel<<<grid, kRowBlock, 0, s>>>(dxp, dyp, yp, N, static_cast<int>(C), wpr);
      return launch_status();
    });
  }
  const bool vec = misalign16(dx) == misalign16(y) && misalign16(dy) == misalign16(y) &&
                   (C * static_cast<int64_t>(sizeof(T))) % 16 == 0;
  auto kernel = softmax_bwd_generic_kernel<T>;
  const int grid = persistent_grid(kernel, kGenericBlock, 0, N);
  kernel<<<grid, kGenericBlock, 0, s>>>(dxp, dyp, yp, N, C, vec);
  return launch_status();
}

}  // namespace

extern "C" int sk_cuda_softmax_forward(void* y, const void* x, int64_t N, int64_t C, int dtype, cudaStream_t s) {
  if (!is_float_dtype(dtype)) return SK_KERNEL_UNSUPPORTED_DTYPE;
  if (N < 0 || C < 0 || C > INT32_MAX) return SK_KERNEL_BAD_ARG;
  if (N == 0 || C == 0) return SK_KERNEL_OK;
  if (!y || !x) return SK_KERNEL_BAD_ARG;
  if (dtype == SK_KDT_F32) return softmax_forward_impl<float>(y, x, N, C, s);
  return softmax_forward_impl<__nv_bfloat16>(y, x, N, C, s);
}

extern "C" int sk_cuda_softmax_backward(void* dx, const void* dy, const void* y, int64_t N, int64_t C, int dtype,
                                        cudaStream_t s) {
  if (!is_float_dtype(dtype)) return SK_KERNEL_UNSUPPORTED_DTYPE;
  if (N < 0 || C < 0 || C > INT32_MAX) return SK_KERNEL_BAD_ARG;
  if (N == 0 || C == 0) return SK_KERNEL_OK;
  if (!dx || !dy || !y) return SK_KERNEL_BAD_ARG;
  if (dtype == SK_KDT_F32) return softmax_backward_impl<float>(dx, dy, y, N, C, s);
  return softmax_backward_impl<__nv_bfloat16>(dx, dy, y, N, C, s);
}
