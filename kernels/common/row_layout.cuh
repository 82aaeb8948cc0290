// sparsek CUDA kernels: "row in registers" helpers for the per-row kernels (LayerNorm, softmax).
// CUDA-only; included by .cu files.
//
// A row of C elements is owned by a group of TPR = 32 * WPR threads (WPR warps per row,
// WPR in {1, 2, 4, 8}); a 256-thread block holds RPB = 256 / TPR rows at a time. Each thread
// keeps VPL packs of 16 bytes (Pack<T>::N elements each) in registers, in the storage dtype
// (8 bf16 or 4 fp32 per uint4), so the row is read from global memory exactly once.
//
// Element (k, j) of thread t (k < VPL, j < N) is column
//   VEC  : (k * TPR + t) * N + j   -> one 16-byte load per pack (needs 16-byte aligned rows, C % N == 0)
//   !VEC : (k * N + j) * TPR + t   -> coalesced scalar loads, any alignment / any C
// Slots past C hold zero bits and are reported invalid by valid().
#pragma once

#include <type_traits>

#include "kernels/common/device_utils.cuh"

namespace sk_kern {

constexpr int kRowBlock = 256;                 // threads per block of the register-row kernels
constexpr int kRowSlotsPerThread = 32;         // max elements per thread (VPL * N) kept in registers
constexpr int kRowMaxC = kRowBlock * kRowSlotsPerThread;  // 8192: larger rows use the fallback kernels

template <typename T, int VPL, bool VEC>
struct RowLayout {
  using P = Pack<T>;
  static constexpr int N = P::N;

  __device__ __forceinline__ static int col(int k, int j, int t, int TPR) {
    return VEC ? (k * TPR + t) * N + j : (k * N + j) * TPR + t;
  }
  __device__ __forceinline__ static bool valid(int k, int j, int t, int TPR, int C) {
    return col(k, j, t, TPR) < C;
  }

  // Load this thread's slice of `row` (zeros past C, or everything zero when !active).
  __device__ __forceinline__ static void load(uint4 (&r)[VPL], const T* row, int t, int TPR, int C, bool active) {
#pragma unroll
    for (int k = 0; k < VPL; ++k) {
      r[k] = make_uint4(0u, 0u, 0u, 0u);
      if (!active) continue;
      if (VEC) {
        const int c0 = (k * TPR + t) * N;
        if (c0 < C) r[k] = ld_stream(row + c0);
      } else {
#pragma unroll
        for (int j = 0; j < N; ++j) {
          const int c = col(k, j, t, TPR);
          if (c < C) P::set_bits(r[k], j, P::load_bits(row + c));
        }
      }
    }
  }

  // Load with default caching (for weights that every row re-reads).
  __device__ __forceinline__ static void load_cached(uint4 (&r)[VPL], const T* row, int t, int TPR, int C) {
#pragma unroll
    for (int k = 0; k < VPL; ++k) {
      r[k] = make_uint4(0u, 0u, 0u, 0u);
      if (VEC) {
        const int c0 = (k * TPR + t) * N;
        if (c0 < C) r[k] = ld_vec(row + c0);
      } else {
#pragma unroll
        for (int j = 0; j < N; ++j) {
          const int c = col(k, j, t, TPR);
          if (c < C) P::set_bits(r[k], j, P::load_bits(row + c));
        }
      }
    }
  }

  // Load pack k only (default caching; used for weights re-read by every row from L1/L2).
  __device__ __forceinline__ static uint4 load_pack(const T* row, int k, int t, int TPR, int C) {
    uint4 r = make_uint4(0u, 0u, 0u, 0u);
    if (VEC) {
      const int c0 = (k * TPR + t) * N;
      if (c0 < C) r = ld_vec(row + c0);
    } else {
#pragma unroll
      for (int j = 0; j < N; ++j) {
        const int c = col(k, j, t, TPR);
        if (c < C) P::set_bits(r, j, P::load_bits(row + c));
      }
    }
    return r;
  }

  // Store pack k (N floats) to the valid columns of `row`.
  __device__ __forceinline__ static void store_pack(T* row, int k, const float (&f)[N], int t, int TPR, int C) {
    if (VEC) {
      const int c0 = (k * TPR + t) * N;
      if (c0 < C) st_stream(row + c0, P::pack(f));
    } else {
#pragma unroll
      for (int j = 0; j < N; ++j) {
        const int c = col(k, j, t, TPR);
        if (c < C) store_f32(row + c, f[j]);
      }
    }
  }

  // Store f[k][j] to the valid columns of `row`.
  __device__ __forceinline__ static void store(T* row, const float (&f)[VPL][N], int t, int TPR, int C) {
#pragma unroll
    for (int k = 0; k < VPL; ++k) {
      if (VEC) {
        const int c0 = (k * TPR + t) * N;
        if (c0 < C) st_stream(row + c0, P::pack(f[k]));
      } else {
#pragma unroll
        for (int j = 0; j < N; ++j) {
          const int c = col(k, j, t, TPR);
          if (c < C) store_f32(row + c, f[k][j]);
        }
      }
    }
  }
};

// Hide a pointer's value from the optimizer, so loads through it are not hoisted out of the row
// loop (keeps per-row weight loads as cheap L1 hits instead of pinning unpacked weights in registers).
template <typename T>
__device__ __forceinline__ const T* opaque(const T* p) {
  asm volatile("" : "+l"(p));
  return p;
}

// Make the optimizer forget what a register pack holds (no code emitted). Used between the
// passes over a register row so values unpacked to fp32 in one pass are not kept alive (CSE)
// into the next: the packed form (4 registers per 16 bytes) is what stays live, not 8 floats.
template <int VPL>
__device__ __forceinline__ void launder(uint4 (&r)[VPL]) {
#pragma unroll
  for (int k = 0; k < VPL; ++k) asm volatile("" : "+r"(r[k].x), "+r"(r[k].y), "+r"(r[k].z), "+r"(r[k].w));
}

// Sum over the TPR = 32 * WPR threads of one row group (groups are consecutive in threadIdx.x).
// Fixed order; all threads of the group get the same value. Must be reached by every thread of
// the block when WPR > 1 (contains __syncthreads). `red` holds kRowBlock / 32 floats.
__device__ __forceinline__ float group_sum(float v, float* red, int WPR) {
  v = warp_sum(v);
  if (WPR == 1) return v;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  __syncthreads();
  if (lane == 0) red[warp] = v;
  __syncthreads();
  const int g0 = (warp / WPR) * WPR;
  float r = 0.f;
  for (int i = 0; i < WPR; ++i) r += red[g0 + i];
  return r;
}
__device__ __forceinline__ float group_max(float v, float* red, int WPR) {
  v = warp_max(v);
  if (WPR == 1) return v;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  __syncthreads();
  if (lane == 0) red[warp] = v;
  __syncthreads();
  const int g0 = (warp / WPR) * WPR;
  float r = -INFINITY;
  for (int i = 0; i < WPR; ++i) r = fmaxf(r, red[g0 + i]);
  return r;
}

// Pick warps-per-row and packs-per-thread for a row of C elements of T: the smallest WPR in
// {1, 2, 4, 8} whose per-thread share fits kRowSlotsPerThread. Returns false if C > kRowMaxC.
template <typename T>
inline bool pick_row_shape(int64_t C, int& wpr, int& vpl) {
  constexpr int N = Pack<T>::N;
  constexpr int kMaxVpl = kRowSlotsPerThread / N;
  for (int w = 1; w <= 8; w *= 2) {
    const int64_t v = ceil_div(C, static_cast<int64_t>(32) * w * N);
    if (v <= kMaxVpl) {
      wpr = w;
      vpl = static_cast<int>(v < 1 ? 1 : v);
      return true;
    }
  }
  return false;
}

// Calls f(std::integral_constant<int, VPL>, std::bool_constant<VEC>) with the runtime (vpl, vec)
// turned into template arguments (VPL in 1 .. kRowSlotsPerThread / N).
template <typename T, int V = 1, typename F>
inline int dispatch_row_shape(bool vec, int vpl, F&& f) {
  constexpr int kMax = kRowSlotsPerThread / Pack<T>::N;
  if constexpr (V > kMax) {
    (void)vec;
    (void)vpl;
    (void)f;
    return SK_KERNEL_BAD_ARG;
  } else {
    if (vpl == V) {
      return vec ? f(std::integral_constant<int, V>{}, std::true_type{})
                 : f(std::integral_constant<int, V>{}, std::false_type{});
    }
    return dispatch_row_shape<T, V + 1>(vec, vpl, f);
  }
}

}  // namespace sk_kern
