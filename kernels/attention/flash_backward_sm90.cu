// Fused causal attention backward on Hopper's warpgroup tensor cores (wgmma, sm_90a), head dims 64
// and 128: the main kernel of flash_backward.cu's three launches (its prepare and finish-dQ kernels are
// shared); flash_backward.cu picks it on compute capability 9.0 (flash_backward_sm90.h).
//
// One block = 128 keys of one (batch, head): two warpgroups of 64 keys, walking the 64-query tiles
// that see those keys. Per tile, each warpgroup:
//   S^T = K Q^T and dP^T = V dO^T        wgmma 64 x 64 x D, both operands from shared memory;
//   P^T = exp(scale S^T - lse), dS^T = P^T (dP^T - delta)     in registers (fp32);
//   dV += P^T dO, dK += dS^T Q           wgmma with A (P^T, dS^T as bf16) from registers and B read
//                                         N-major from the Q / dO tiles;
//   dS^T also to shared memory; after a block barrier, dQ = dS K:
//     column split (default): each warpgroup makes D / 2 of the D dQ columns for all 64 queries
//       over all 128 keys (wgmma 64 x D/2 x 128), one fp32 atomic per (query, column, block);
//     key split (kKeySplit): each warpgroup makes all 64 columns over its own 64 keys (64 x 64 x
//       64), two atomics per (query, column, block): the fallback if the column split's operand
//       (B starting half-way into a 128-byte swizzle row) were not accepted by the hardware.
// Q, dO and the row statistics are double-buffered with cp.async as in the mma.sync kernel; the
// wgmma products of a tile complete (wait 0) before the tile's buffers are reused.
// Shared-memory tiles use flash_tile.cuh's swz_panel layout: 64-column panels of 128-byte rows in
// the hardware's 128-byte swizzle (wgmma.cuh), so a product over D = 128 reads panel kk / 4 and
// dV, dK (64 x 128 per warpgroup) are two 64-column products, one per panel of dO / Q.
// Head dim 128 runs the pipelined column split only (dK, dV: 128 accumulator registers per thread).
// Tested by tests/attention/test_flash_attention.cpp (every variant at hd 64, the pipelined column
// split at 128).
#include <cuda_runtime.h>

#include <cmath>

#include "kernels/attention/flash_attention.h"
#include "kernels/attention/flash_backward_block.cuh"
#include "kernels/attention/flash_backward_sm90.h"
#include "kernels/attention/flash_tile.cuh"
#include "kernels/attention/wgmma.cuh"
#include "kernels/common/device_utils.cuh"

namespace sk_flash {
namespace sm90 {

constexpr int kThreads = 256;  // two warpgroups
constexpr int BLOCK_N = 128;   // keys per block, 64 per warpgroup
constexpr int BR = 64;         // queries per step
// Shared-memory layout per head dim, from a 1024-byte aligned base: K, V, Q x 2, dO x 2, dS^T
// (BLOCK_N x BR), then lse and delta (two buffers of BR floats each). A panel is 64 columns.
template <int D>
struct Smem {
  static constexpr uint32_t kKVPanel = BLOCK_N * 128, kQPanel = BR * 128;  // bytes per 64-column panel
  static constexpr uint32_t kKVTile = BLOCK_N * D * 2;                     // 16 KB (hd 64), 32 KB (hd 128)
  static constexpr uint32_t kQTile = BR * D * 2;                           // 8 KB, 16 KB
  static constexpr uint32_t kOffQ = 2 * kKVTile, kOffdO = kOffQ + 2 * kQTile;  // K at 0, V at kKVTile
  static constexpr uint32_t kOffdS = kOffdO + 2 * kQTile, kOffStats = kOffdS + BLOCK_N * BR * 2;
  static constexpr int kBytes = static_cast<int>(kOffStats) + 4 * BR * 4 + 1024;  // + alignment slack
};

// kFtz: the softmax's exp2 without denormal handling (SkFlashParams::exp2_ftz; flash_tile.cuh).
template <int D, bool kKeySplit, bool kPipelined, bool kFtz>
__global__ void __launch_bounds__(kThreads, 1)
    backward_kernel(const SkFlashParams p, const __nv_bfloat16* __restrict__ dout, const SkFlashStrides ds,
                    const float* __restrict__ lse, const float* __restrict__ delta, __nv_bfloat16* __restrict__ dk,
                    __nv_bfloat16* __restrict__ dv, float* __restrict__ dq_accum) {
#if SK_HAS_WGMMA
  using namespace sk_wgmma;
  extern __shared__ unsigned char smem_raw[];
  const uint32_t raw = smem_u32(smem_raw);
  const uint32_t base = (raw + 1023u) & ~1023u;
  unsigned char* smem = smem_raw + (base - raw);
  static_assert(D == 64 || (D == 128 && !kKeySplit), "head dim 128: the column split only");
  using L = Smem<D>;
  constexpr uint32_t kKVPanel = L::kKVPanel, kQPanel = L::kQPanel, kQTile = L::kQTile;
  constexpr uint32_t kWgRows = 64 * 128;  // one warpgroup's 64 rows of a K / V panel or of dS^T
  const uint32_t sK = base, sV = base + L::kKVTile, sQ = base + L::kOffQ, sdO = base + L::kOffdO,
                 sdS = base + L::kOffdS;
  float* s_lse = reinterpret_cast<float*>(smem + L::kOffStats);
  float* s_delta = s_lse + 2 * BR;

  const int n_block = static_cast<int>(gridDim.x - 1 - blockIdx.x);  // keys near the start see most queries
  const int h = blockIdx.y, b = blockIdx.z;
  const int T = p.seq_len, W = p.window, H = p.heads;
  const int tid = static_cast<int>(threadIdx.x);
  const int wg = tid >> 7, wi = (tid >> 5) & 3;  // warpgroup (64 keys), warp within it (16 rows)
  const int lane = tid & 31, g = lane >> 2, t = lane & 3;
  const int n0 = n_block * BLOCK_N;

  const BwdBlock blk = bwd_block<BR>(p, dout, ds, lse, delta, b, h, n0, BLOCK_N);
  const int m_first = blk.m_first, m_end = blk.m_end;
  load_tile<BLOCK_N, D, kThreads, true>(sK, blk.k, p.k_stride.row, n0, T);
  load_tile<BLOCK_N, D, kThreads, true>(sV, blk.v, p.v_stride.row, n0, T);
  if (m_first < m_end) load_query_tile<BR, D, kThreads, true>(blk, p, ds, sQ, sdO, s_lse, s_delta, m_first, 0);
  cp_async_commit();

  const float scale_log2 = p.softmax_scale * kLog2e;
  constexpr int kPanels = D / 64;
  constexpr int kDqCols = kKeySplit ? D : D / 2;  // dQ columns per warpgroup
  // dK, dV: one 64 x 64 accumulator per 64-column panel.
  float st[32], dpt[32], dk_acc[kPanels][32], dv_acc[kPanels][32], dq[kDqCols / 2];
#pragma unroll
  for (int i = 0; i < 32; ++i) st[i] = dpt[i] = 0.f;
#pragma unroll
  for (int pp = 0; pp < kPanels; ++pp)
#pragma unroll
    for (int i = 0; i < 32; ++i) dk_acc[pp][i] = dv_acc[pp][i] = 0.f;
#pragma unroll
  for (int i = 0; i < kDqCols / 2; ++i) dq[i] = 0.f;
  const int key_a = wg * 64 + wi * 16 + g;  // key row (in the block) of accumulator elements 0, 1; +8: 2, 3

  for (int m = m_first; m < m_end; ++m) {
    const int buf = (m - m_first) & 1;
    cp_async_wait<0>();
    fence_proxy_async();  // the cp.async writes are read by wgmma
    __syncthreads();
    if (m + 1 < m_end) load_query_tile<BR, D, kThreads, true>(blk, p, ds, sQ, sdO, s_lse, s_delta, m + 1, buf ^ 1);
    cp_async_commit();
    const int q0 = m * BR;
    const uint32_t sQb = sQ + buf * kQTile, sdOb = sdO + buf * kQTile;

    const bool needs_mask = q0 < n0 + BLOCK_N - 1 || q0 + BR > T || n0 + BLOCK_N > T ||
                            (W > 0 && q0 + BR - 1 >= n0 + W);
    const float* lse_s = s_lse + buf * BR;
    const float* delta_s = s_delta + buf * BR;
    uint32_t pa[BR / 16][4], dsa[BR / 16][4];
    if constexpr (kPipelined) {
      // S^T and dP^T as two groups; P^T is made while dP^T runs, dV's product is issued before
      // dS^T is made, and dK's while dS^T goes to shared memory (groups complete in order).
      fence();
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk)
        wgmma_m64n64k16_ss<0, 0>(st, desc_k_major(sK + (kk / 4) * kKVPanel + wg * kWgRows + (kk % 4) * 32),
                                 desc_k_major(sQb + (kk / 4) * kQPanel + (kk % 4) * 32), kk > 0);
      commit();
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk)
        wgmma_m64n64k16_ss<0, 0>(dpt, desc_k_major(sV + (kk / 4) * kKVPanel + wg * kWgRows + (kk % 4) * 32),
                                 desc_k_major(sdOb + (kk / 4) * kQPanel + (kk % 4) * 32), kk > 0);
      commit();
      fence_operand(dpt);
      wait<1>();  // S^T complete
      fence_operand(st);
#pragma unroll
      for (int j = 0; j < BR / 8; ++j) {  // P^T in fp32 replaces S^T; bf16 A fragments for dV
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int col = j * 8 + 2 * t + (e & 1);
          const int query = q0 + col, key = n0 + key_a + (e < 2 ? 0 : 8);
          const bool ok = !needs_mask || (key <= query && query < T && key < T && (W == 0 || key > query - W));
          st[4 * j + e] = ok ? softmax_exp2<kFtz>(st[4 * j + e] * scale_log2 - lse_s[col]) : 0.f;
        }
        pa[j / 2][(j & 1) * 2 + 0] = pack_bf16(st[4 * j + 0], st[4 * j + 1]);
        pa[j / 2][(j & 1) * 2 + 1] = pack_bf16(st[4 * j + 2], st[4 * j + 3]);
      }
      fence();
#pragma unroll
      for (int pp = 0; pp < kPanels; ++pp)
#pragma unroll
        for (int kk = 0; kk < BR / 16; ++kk)
          wgmma_m64n64k16_rs<1>(dv_acc[pp], pa[kk], desc_mn_major(sdOb + pp * kQPanel + kk * 2048), 1);
      commit();
      fence_accumulators(dv_acc);
      wait<1>();  // dP^T complete (dV's group may still run)
      fence_operand(dpt);
#pragma unroll
      for (int j = 0; j < BR / 8; ++j) {  // dS^T = P^T (dP^T - delta): A fragments for dK, and to shared memory
        float dsv[4];
#pragma unroll
        for (int e = 0; e < 4; ++e) dsv[e] = st[4 * j + e] * (dpt[4 * j + e] - delta_s[j * 8 + 2 * t + (e & 1)]);
        dsa[j / 2][(j & 1) * 2 + 0] = pack_bf16(dsv[0], dsv[1]);
        dsa[j / 2][(j & 1) * 2 + 1] = pack_bf16(dsv[2], dsv[3]);
        const int col = j * 8 + 2 * t;
        asm volatile("st.shared.b32 [%0], %1;\n" ::"r"(sdS + swz<BR>(key_a, col & ~7) + (col & 7) * 2),
                     "r"(dsa[j / 2][(j & 1) * 2 + 0]));
        asm volatile("st.shared.b32 [%0], %1;\n" ::"r"(sdS + swz<BR>(key_a + 8, col & ~7) + (col & 7) * 2),
                     "r"(dsa[j / 2][(j & 1) * 2 + 1]));
      }
      fence();
#pragma unroll
      for (int pp = 0; pp < kPanels; ++pp)
#pragma unroll
        for (int kk = 0; kk < BR / 16; ++kk)
          wgmma_m64n64k16_rs<1>(dk_acc[pp], dsa[kk], desc_mn_major(sQb + pp * kQPanel + kk * 2048), 1);
      commit();
      fence_accumulators(dk_acc);
    } else {
      // S^T = K Q^T, dP^T = V dO^T (k = head dim, 4 steps of 16).
      fence();
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk)
        wgmma_m64n64k16_ss<0, 0>(st, desc_k_major(sK + (kk / 4) * kKVPanel + wg * kWgRows + (kk % 4) * 32),
                                 desc_k_major(sQb + (kk / 4) * kQPanel + (kk % 4) * 32), kk > 0);
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk)
        wgmma_m64n64k16_ss<0, 0>(dpt, desc_k_major(sV + (kk / 4) * kKVPanel + wg * kWgRows + (kk % 4) * 32),
                                 desc_k_major(sdOb + (kk / 4) * kQPanel + (kk % 4) * 32), kk > 0);
      commit();
      wait<0>();
      fence_operand(st);
      fence_operand(dpt);

      // P^T and dS^T (masked entries 0 in both) as bf16 A fragments; dS^T also to shared memory.
#pragma unroll
      for (int j = 0; j < BR / 8; ++j) {
        float pv[4], dsv[4];
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int col = j * 8 + 2 * t + (e & 1);  // query within the tile
          const int query = q0 + col, key = n0 + key_a + (e < 2 ? 0 : 8);
          const bool ok = !needs_mask || (key <= query && query < T && key < T && (W == 0 || key > query - W));
          pv[e] = ok ? softmax_exp2<kFtz>(st[4 * j + e] * scale_log2 - lse_s[col]) : 0.f;
          dsv[e] = pv[e] * (dpt[4 * j + e] - delta_s[col]);
        }
        pa[j / 2][(j & 1) * 2 + 0] = pack_bf16(pv[0], pv[1]);
        pa[j / 2][(j & 1) * 2 + 1] = pack_bf16(pv[2], pv[3]);
        dsa[j / 2][(j & 1) * 2 + 0] = pack_bf16(dsv[0], dsv[1]);
        dsa[j / 2][(j & 1) * 2 + 1] = pack_bf16(dsv[2], dsv[3]);
        const int col = j * 8 + 2 * t;
        asm volatile("st.shared.b32 [%0], %1;\n" ::"r"(sdS + swz<BR>(key_a, col & ~7) + (col & 7) * 2),
                     "r"(dsa[j / 2][(j & 1) * 2 + 0]));
        asm volatile("st.shared.b32 [%0], %1;\n" ::"r"(sdS + swz<BR>(key_a + 8, col & ~7) + (col & 7) * 2),
                     "r"(dsa[j / 2][(j & 1) * 2 + 1]));
      }

      // dV += P^T dO, dK += dS^T Q (k = queries, 4 steps of 16 rows of the Q / dO tiles).
      fence();
#pragma unroll
      for (int pp = 0; pp < kPanels; ++pp)
#pragma unroll
        for (int kk = 0; kk < BR / 16; ++kk)
          wgmma_m64n64k16_rs<1>(dv_acc[pp], pa[kk], desc_mn_major(sdOb + pp * kQPanel + kk * 2048), 1);
#pragma unroll
      for (int pp = 0; pp < kPanels; ++pp)
#pragma unroll
        for (int kk = 0; kk < BR / 16; ++kk)
          wgmma_m64n64k16_rs<1>(dk_acc[pp], dsa[kk], desc_mn_major(sQb + pp * kQPanel + kk * 2048), 1);
      commit();

    }

    fence_proxy_async();  // dS^T stores are read by wgmma
    if constexpr (kKeySplit && kPipelined) {
      // Each warpgroup reads only its own 64 rows of dS^T: a warpgroup barrier, so the two
      // warpgroups need not meet here.
      if (wg == 0) asm volatile("bar.sync 1, 128;\n" ::: "memory");
      else asm volatile("bar.sync 2, 128;\n" ::: "memory");
    } else {
      __syncthreads();
    }

    // dQ = dS K (A = dS read M-major from the dS^T tile, B = K read N-major; k = keys).
    if constexpr (kKeySplit) {  // (hd 64)
#pragma unroll
      for (int kk = 0; kk < 4; ++kk)
        wgmma_m64n64k16_ss<1, 1>(dq, desc_mn_major(sdS + wg * kWgRows + kk * 2048),
                                 desc_mn_major(sK + wg * kWgRows + kk * 2048), kk > 0);
    } else if constexpr (D == 128) {  // the warpgroup's columns are panel wg of K
#pragma unroll
      for (int kk = 0; kk < BLOCK_N / 16; ++kk)
        wgmma_m64n64k16_ss<1, 1>(dq, desc_mn_major(sdS + kk * 2048), desc_mn_major(sK + wg * kKVPanel + kk * 2048), kk > 0);
    } else {
#pragma unroll
      for (int kk = 0; kk < BLOCK_N / 16; ++kk)
        wgmma_m64n32k16_ss<1, 1>(dq, desc_mn_major(sdS + kk * 2048), desc_mn_major(sK + kk * 2048 + wg * 64), kk > 0);
    }
    commit();
    wait<0>();
    keep_alive_fragments(pa);
    keep_alive_fragments(dsa);
    fence_accumulators(dv_acc);
    fence_accumulators(dk_acc);
    fence_operand(dq);

    // dQ into dq_accum. hd 64: 16-byte vector atomics (red.v4.f32): lanes t and t ^ 1 swap halves
    // so that the even lane adds 4 consecutive columns of row g (its 2t, 2t + 1 and the odd
    // lane's), the odd lane 4 of row g + 8: half the atomic instructions, 0.3-1.5% faster on an
    // H200. hd 128: one float2 per row and column pair (the swap's registers made ptxas spill at
    // 255 and measured 1-2.5% slower; docs/perf-notes.md).
    const int dq_col0 = kKeySplit ? 0 : wg * kDqCols;
    if constexpr (D == 64) {
      const bool odd = t & 1;
      const int query = q0 + wi * 16 + g + (odd ? 8 : 0);
      float* row = dq_accum + ((static_cast<int64_t>(b) * T + min(query, T - 1)) * H + h) * D + dq_col0 + 2 * (t & ~1);
#pragma unroll
      for (int j = 0; j < kDqCols / 8; ++j) {
        const float s0 = odd ? dq[4 * j + 0] : dq[4 * j + 2], s1 = odd ? dq[4 * j + 1] : dq[4 * j + 3];
        const float r0 = __shfl_xor_sync(0xffffffff, s0, 1), r1 = __shfl_xor_sync(0xffffffff, s1, 1);
        const float4 val =
            odd ? make_float4(r0, r1, dq[4 * j + 2], dq[4 * j + 3]) : make_float4(dq[4 * j + 0], dq[4 * j + 1], r0, r1);
        if (query < T) atomicAdd(reinterpret_cast<float4*>(row + j * 8), val);
      }
    } else {
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        const int query = q0 + wi * 16 + g + r * 8;
        if (query >= T) continue;
        float* row = dq_accum + ((static_cast<int64_t>(b) * T + query) * H + h) * D + dq_col0;
#pragma unroll
        for (int j = 0; j < kDqCols / 8; ++j)
          atomicAdd(reinterpret_cast<float2*>(row + j * 8 + 2 * t), make_float2(dq[4 * j + 2 * r], dq[4 * j + 2 * r + 1]));
      }
    }
  }

  // dK (scaled) and dV for this block's keys, (B, T, H, D) rows grad_row_stride apart.
  const int64_t grad_row = p.grad_row_stride ? p.grad_row_stride : static_cast<int64_t>(H) * D;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int key = n0 + key_a + r * 8;
    if (key >= T) continue;
    const int64_t off = (static_cast<int64_t>(b) * T + key) * grad_row + static_cast<int64_t>(h) * D;
#pragma unroll
    for (int pp = 0; pp < kPanels; ++pp)
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        const int col = pp * 64 + j * 8 + 2 * t;
        if (p.grad_kv_f32) {  // fp32, dK unscaled (flash_attention.h)
          *reinterpret_cast<float2*>(reinterpret_cast<float*>(dk) + off + col) =
              make_float2(dk_acc[pp][4 * j + 2 * r], dk_acc[pp][4 * j + 2 * r + 1]);
          *reinterpret_cast<float2*>(reinterpret_cast<float*>(dv) + off + col) =
              make_float2(dv_acc[pp][4 * j + 2 * r], dv_acc[pp][4 * j + 2 * r + 1]);
          continue;
        }
        *reinterpret_cast<uint32_t*>(dk + off + col) =
            pack_bf16(dk_acc[pp][4 * j + 2 * r] * p.softmax_scale, dk_acc[pp][4 * j + 2 * r + 1] * p.softmax_scale);
        *reinterpret_cast<uint32_t*>(dv + off + col) = pack_bf16(dv_acc[pp][4 * j + 2 * r], dv_acc[pp][4 * j + 2 * r + 1]);
      }
  }
#else
  (void)p, (void)dout, (void)ds, (void)lse, (void)delta, (void)dk, (void)dv, (void)dq_accum;
  __trap();  // launched only on compute capability 9.0, which runs the sm_90a code
#endif
}

template <int D, bool kKeySplit, bool kPipelined, bool kFtz = false>
int launch(const SkFlashParams& p, const void* dout, SkFlashStrides ds, const float* lse, const float* delta, void* dk,
           void* dv, float* dq_accum, cudaStream_t s) {
  auto* kernel = backward_kernel<D, kKeySplit, kPipelined, kFtz>;
  constexpr int smem = Smem<D>::kBytes;
  if (cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem) != cudaSuccess)
    return SK_KERNEL_LAUNCH_FAILED;
  dim3 grid((p.seq_len + BLOCK_N - 1) / BLOCK_N, p.heads, p.batch);
  kernel<<<grid, kThreads, smem, s>>>(p, static_cast<const __nv_bfloat16*>(dout), ds, lse, delta,
                                            static_cast<__nv_bfloat16*>(dk), static_cast<__nv_bfloat16*>(dv), dq_accum);
  return cudaGetLastError() == cudaSuccess ? SK_KERNEL_OK : SK_KERNEL_LAUNCH_FAILED;
}

}  // namespace sm90

int launch_backward_main_sm90(const SkFlashParams& p, const void* dout, SkFlashStrides ds, const float* lse,
                              const float* delta, void* dk, void* dv, float* dq_accum, bool key_split, bool pipelined,
                              cudaStream_t s) {
  if (p.head_dim == 128) {
    if (!pipelined || key_split) return SK_KERNEL_BAD_ARG;  // hd 128: the pipelined column split only
    return p.exp2_ftz ? sm90::launch<128, false, true, true>(p, dout, ds, lse, delta, dk, dv, dq_accum, s)
                      : sm90::launch<128, false, true>(p, dout, ds, lse, delta, dk, dv, dq_accum, s);
  }
  if (p.head_dim != 64) return SK_KERNEL_BAD_ARG;
  if (pipelined && !key_split && p.exp2_ftz)
    return sm90::launch<64, false, true, true>(p, dout, ds, lse, delta, dk, dv, dq_accum, s);
  if (pipelined)
    return key_split ? sm90::launch<64, true, true>(p, dout, ds, lse, delta, dk, dv, dq_accum, s)
                     : sm90::launch<64, false, true>(p, dout, ds, lse, delta, dk, dv, dq_accum, s);
  return key_split ? sm90::launch<64, true, false>(p, dout, ds, lse, delta, dk, dv, dq_accum, s)
                   : sm90::launch<64, false, false>(p, dout, ds, lse, delta, dk, dv, dq_accum, s);
}

}  // namespace sk_flash
