// Fused causal attention backward (FlashAttention-2 style), three launches:
//   1. delta = rowsum(dout * out) per query (fp32), and dq_accum zeroed;
//   2. one block per (64-key tile, head, batch), 4 warps of 16 keys each, walking the 64-query
//      tiles that see those keys: recompute S^T = K Q^T and P^T = exp(S^T - lse) (from the
//      forward's log-sum-exp, no second softmax), dP^T = V dO^T, dS^T = P^T (dP^T - delta);
//      dV += P^T dO and dK += dS^T Q stay in registers; dQ += dS K goes through shared memory
//      (dS^T) and fp32 atomics into dq_accum (so dQ's summation order is not deterministic);
//   3. dq = bf16(scale * dq_accum).
// Q/dO tiles are double-buffered with cp.async; all products on mma.sync m16n8k16.
// Declared in flash_attention.h; tested in tests/attention/test_flash_attention.cpp.
#include <cuda_runtime.h>

#include <cmath>

#include "kernels/attention/flash_attention.h"
#include "kernels/attention/flash_tile.cuh"

namespace sk_flash {

constexpr int kBwdWarps = 4;
constexpr int kBwdThreads = kBwdWarps * 32;
constexpr int kBwdBlockN = kBwdWarps * 16;  // keys per block
constexpr int kBwdBlockM = 64;              // queries per step

template <int D>
constexpr int bwd_smem_bytes() {
  // K, V, 2 x (Q, dO), dS^T (64 x 64), 2 x (lse, delta) floats
  return (2 * kBwdBlockN + 4 * kBwdBlockM) * D * 2 + kBwdBlockN * kBwdBlockM * 2 + 4 * kBwdBlockM * 4;
}

// One warp per query row: delta = sum_d dout * out; dq_accum row zeroed.
template <int D>
__global__ void flash_backward_prepare_kernel(const __nv_bfloat16* __restrict__ dout, SkFlashStrides ds,
                                              const __nv_bfloat16* __restrict__ out, float* __restrict__ delta,
                                              float* __restrict__ dq_accum, int B, int H, int T) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * (blockDim.x / 32) + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (row >= static_cast<int64_t>(B) * H * T) return;
  const int i = static_cast<int>(row % T);
  const int h = static_cast<int>((row / T) % H);
  const int b = static_cast<int>(row / (static_cast<int64_t>(T) * H));
  const __nv_bfloat16* dr = dout + b * ds.batch + h * ds.head + i * ds.row;
  const int64_t orow = ((static_cast<int64_t>(b) * T + i) * H + h) * D;
  float acc = 0.f;
#pragma unroll
  for (int c = lane * 2; c < D; c += 64) {
    const float2 x = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(dr + c));
    const float2 y = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(out + orow + c));
    acc += x.x * y.x + x.y * y.y;
    *reinterpret_cast<float2*>(dq_accum + orow + c) = make_float2(0.f, 0.f);
  }
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) acc += __shfl_xor_sync(0xffffffff, acc, off);
  if (lane == 0) delta[(static_cast<int64_t>(b) * H + h) * T + i] = acc;
}

__global__ void flash_backward_finish_dq_kernel(const float* __restrict__ dq_accum, __nv_bfloat16* __restrict__ dq,
                                                int64_t n2, float scale) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n2;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float2 x = reinterpret_cast<const float2*>(dq_accum)[i];
    reinterpret_cast<__nv_bfloat162*>(dq)[i] = __floats2bfloat162_rn(x.x * scale, x.y * scale);
  }
}

template <int D>
__global__ void __launch_bounds__(kBwdThreads, 1)
    flash_backward_kernel(const SkFlashParams p, const __nv_bfloat16* __restrict__ dout, const SkFlashStrides ds,
                          const float* __restrict__ lse, const float* __restrict__ delta,
                          __nv_bfloat16* __restrict__ dk, __nv_bfloat16* __restrict__ dv,
                          float* __restrict__ dq_accum) {
  extern __shared__ __align__(128) unsigned char smem[];
  const int n_block = static_cast<int>(gridDim.x - 1 - blockIdx.x);  // keys near the start see most queries
  const int h = blockIdx.y, b = blockIdx.z;
  const int T = p.seq_len, W = p.window, H = p.heads;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int g = lane >> 2, t = lane & 3;
  const int n0 = n_block * kBwdBlockN;

  const __nv_bfloat16* q = static_cast<const __nv_bfloat16*>(p.q) + b * p.q_stride.batch + h * p.q_stride.head;
  const __nv_bfloat16* k = static_cast<const __nv_bfloat16*>(p.k) + b * p.k_stride.batch + h * p.k_stride.head;
  const __nv_bfloat16* v = static_cast<const __nv_bfloat16*>(p.v) + b * p.v_stride.batch + h * p.v_stride.head;
  const __nv_bfloat16* dO = dout + b * ds.batch + h * ds.head;
  const float* lse_bh = lse + (static_cast<int64_t>(b) * H + h) * T;
  const float* delta_bh = delta + (static_cast<int64_t>(b) * H + h) * T;

  const uint32_t sK = smem_u32(smem);
  const uint32_t sV = sK + kBwdBlockN * D * 2;
  // Buffer `buf` of Q at sQ + buf * kTile, of dO at sdO + buf * kTile.
  constexpr uint32_t kTile = kBwdBlockM * D * 2;
  const uint32_t sQ = sV + kBwdBlockN * D * 2, sdO = sQ + 2 * kTile;
  const uint32_t sdS = sV + (kBwdBlockN + 4 * kBwdBlockM) * D * 2;
  float* s_lse = reinterpret_cast<float*>(smem + (2 * kBwdBlockN + 4 * kBwdBlockM) * D * 2 + kBwdBlockN * kBwdBlockM * 2);
  float* s_delta = s_lse + 2 * kBwdBlockM;

  // Query tiles that see keys [n0, n0 + 64): from the diagonal to the end (or the window's reach).
  const int m_first = n0 / kBwdBlockM;
  const int q_end = W > 0 ? min(T, n0 + kBwdBlockN - 1 + W) : T;
  const int m_end = (q_end + kBwdBlockM - 1) / kBwdBlockM;

  auto load_row_stats = [&](int m, int buf) {  // lse (in log2 units) and delta of query tile m
    const int idx = threadIdx.x & (kBwdBlockM - 1);
    const int row = m * kBwdBlockM + idx;
    if (threadIdx.x < kBwdBlockM)
      s_lse[buf * kBwdBlockM + idx] = row < T ? lse_bh[row] * kLog2e : INFINITY;
    else
      s_delta[buf * kBwdBlockM + idx] = row < T ? delta_bh[row] : 0.f;
  };

  load_tile<kBwdBlockN, D, kBwdThreads>(sK, k, p.k_stride.row, n0, T);
  load_tile<kBwdBlockN, D, kBwdThreads>(sV, v, p.v_stride.row, n0, T);
  if (m_first < m_end) {
    load_tile<kBwdBlockM, D, kBwdThreads>(sQ, q, p.q_stride.row, m_first * kBwdBlockM, T);
    load_tile<kBwdBlockM, D, kBwdThreads>(sdO, dO, ds.row, m_first * kBwdBlockM, T);
    load_row_stats(m_first, 0);
  }
  cp_async_commit();

  const float scale_log2 = p.softmax_scale * kLog2e;
  float dk_acc[D / 8][4], dv_acc[D / 8][4];
#pragma unroll
  for (int i = 0; i < D / 8; ++i)
#pragma unroll
    for (int e = 0; e < 4; ++e) dk_acc[i][e] = dv_acc[i][e] = 0.f;
  const int key_a = n0 + warp * 16 + g, key_b = key_a + 8;  // this thread's two key rows

  for (int m = m_first; m < m_end; ++m) {
    const int buf = (m - m_first) & 1;
    cp_async_wait<0>();
    __syncthreads();
    if (m + 1 < m_end) {
      load_tile<kBwdBlockM, D, kBwdThreads>(sQ + (buf ^ 1) * kTile, q, p.q_stride.row, (m + 1) * kBwdBlockM, T);
      load_tile<kBwdBlockM, D, kBwdThreads>(sdO + (buf ^ 1) * kTile, dO, ds.row, (m + 1) * kBwdBlockM, T);
      load_row_stats(m + 1, buf ^ 1);
    }
    cp_async_commit();
    const int q0 = m * kBwdBlockM;

    // S^T = K Q^T and dP^T = V dO^T for this warp's 16 keys x 64 queries.
    float st[kBwdBlockM / 8][4], dpt[kBwdBlockM / 8][4];
#pragma unroll
    for (int j = 0; j < kBwdBlockM / 8; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) st[j][e] = dpt[j][e] = 0.f;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      uint32_t ka[4], va[4];
      load_a<D>(ka, sK, warp * 16, kk * 16, lane);
      load_a<D>(va, sV, warp * 16, kk * 16, lane);
#pragma unroll
      for (int j = 0; j < kBwdBlockM / 16; ++j) {
        uint32_t qb[4], ob[4];
        load_b<D>(qb, (sQ + buf * kTile), j * 16, kk * 16, lane);
        load_b<D>(ob, (sdO + buf * kTile), j * 16, kk * 16, lane);
        mma_bf16(st[2 * j], ka, qb[0], qb[1]);
        mma_bf16(st[2 * j + 1], ka, qb[2], qb[3]);
        mma_bf16(dpt[2 * j], va, ob[0], ob[1]);
        mma_bf16(dpt[2 * j + 1], va, ob[2], ob[3]);
      }
    }

    // P^T and dS^T (masked entries are 0 in both).
    const bool needs_mask = q0 < n0 + kBwdBlockN - 1 || q0 + kBwdBlockM > T || n0 + kBwdBlockN > T ||
                            (W > 0 && q0 + kBwdBlockM - 1 >= n0 + W);
    const float* lse_s = s_lse + buf * kBwdBlockM;
    const float* delta_s = s_delta + buf * kBwdBlockM;
    uint32_t pa[kBwdBlockM / 16][4], dsa[kBwdBlockM / 16][4];
#pragma unroll
    for (int j = 0; j < kBwdBlockM / 8; ++j) {
      float pv[4], dsv[4];
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int col = j * 8 + 2 * t + (e & 1);  // query within the tile
        const int query = q0 + col, key = e < 2 ? key_a : key_b;
        const bool ok = !needs_mask || (key <= query && query < T && key < T && (W == 0 || key > query - W));
        pv[e] = ok ? exp2f(st[j][e] * scale_log2 - lse_s[col]) : 0.f;
        dsv[e] = pv[e] * (dpt[j][e] - delta_s[col]);
      }
      pa[j / 2][(j & 1) * 2 + 0] = pack_bf16(pv[0], pv[1]);
      pa[j / 2][(j & 1) * 2 + 1] = pack_bf16(pv[2], pv[3]);
      dsa[j / 2][(j & 1) * 2 + 0] = pack_bf16(dsv[0], dsv[1]);
      dsa[j / 2][(j & 1) * 2 + 1] = pack_bf16(dsv[2], dsv[3]);
      // dS^T to shared memory for the dQ product: rows = keys, cols = queries.
      const int col = j * 8 + 2 * t;
      const int ra = warp * 16 + g, rb = ra + 8;
      asm volatile("st.shared.b32 [%0], %1;\n" ::"r"(sdS + swz<kBwdBlockM>(ra, col & ~7) + (col & 7) * 2),
                   "r"(dsa[j / 2][(j & 1) * 2 + 0]));
      asm volatile("st.shared.b32 [%0], %1;\n" ::"r"(sdS + swz<kBwdBlockM>(rb, col & ~7) + (col & 7) * 2),
                   "r"(dsa[j / 2][(j & 1) * 2 + 1]));
    }

    // dV += P^T dO, dK += dS^T Q (k = queries).
#pragma unroll
    for (int kk = 0; kk < kBwdBlockM / 16; ++kk) {
#pragma unroll
      for (int i = 0; i < D / 16; ++i) {
        uint32_t ob[4], qb[4];
        load_b_trans<D>(ob, (sdO + buf * kTile), kk * 16, i * 16, lane);
        load_b_trans<D>(qb, (sQ + buf * kTile), kk * 16, i * 16, lane);
        mma_bf16(dv_acc[2 * i], pa[kk], ob[0], ob[1]);
        mma_bf16(dv_acc[2 * i + 1], pa[kk], ob[2], ob[3]);
        mma_bf16(dk_acc[2 * i], dsa[kk], qb[0], qb[1]);
        mma_bf16(dk_acc[2 * i + 1], dsa[kk], qb[2], qb[3]);
      }
    }
    __syncthreads();  // dS^T complete

    // dQ (queries 16 warp .. +15 of this tile) += dS K over the 64 keys, into dq_accum.
    float dq[D / 8][4];
#pragma unroll
    for (int i = 0; i < D / 8; ++i) dq[i][0] = dq[i][1] = dq[i][2] = dq[i][3] = 0.f;
#pragma unroll
    for (int kk = 0; kk < kBwdBlockN / 16; ++kk) {
      uint32_t a[4];
      load_a_trans<kBwdBlockM>(a, sdS, warp * 16, kk * 16, lane);
#pragma unroll
      for (int i = 0; i < D / 16; ++i) {
        uint32_t kb[4];
        load_b_trans<D>(kb, sK, kk * 16, i * 16, lane);
        mma_bf16(dq[2 * i], a, kb[0], kb[1]);
        mma_bf16(dq[2 * i + 1], a, kb[2], kb[3]);
      }
    }
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int query = q0 + warp * 16 + g + r * 8;
      if (query >= T) continue;
      float* row = dq_accum + ((static_cast<int64_t>(b) * T + query) * H + h) * D;
#pragma unroll
      for (int i = 0; i < D / 8; ++i)
        atomicAdd(reinterpret_cast<float2*>(row + i * 8 + 2 * t), make_float2(dq[i][2 * r], dq[i][2 * r + 1]));
    }
  }

  // Write dK (scaled) and dV for this block's keys, (B, T, H, D).
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int key = r == 0 ? key_a : key_b;
    if (key >= T) continue;
    const int64_t off = ((static_cast<int64_t>(b) * T + key) * H + h) * D;
#pragma unroll
    for (int i = 0; i < D / 8; ++i) {
      *reinterpret_cast<uint32_t*>(dk + off + i * 8 + 2 * t) =
          pack_bf16(dk_acc[i][2 * r] * p.softmax_scale, dk_acc[i][2 * r + 1] * p.softmax_scale);
      *reinterpret_cast<uint32_t*>(dv + off + i * 8 + 2 * t) = pack_bf16(dv_acc[i][2 * r], dv_acc[i][2 * r + 1]);
    }
  }
}

template <int D>
int launch_backward(const SkFlashParams& p, const void* dout, SkFlashStrides ds, const void* out, const float* lse,
                    void* dq, void* dk, void* dv, float* delta, float* dq_accum, cudaStream_t s) {
  const int64_t rows = static_cast<int64_t>(p.batch) * p.heads * p.seq_len;
  flash_backward_prepare_kernel<D><<<static_cast<unsigned>((rows + 7) / 8), 256, 0, s>>>(
      static_cast<const __nv_bfloat16*>(dout), ds, static_cast<const __nv_bfloat16*>(out), delta, dq_accum, p.batch,
      p.heads, p.seq_len);
  constexpr int smem = bwd_smem_bytes<D>();
  // Opt in to more than 48 KB of shared memory and ask for the largest shared-memory carveout, so
  // that as many blocks fit on an SM as registers allow.
  if (cudaFuncSetAttribute(flash_backward_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem) != cudaSuccess ||
      cudaFuncSetAttribute(flash_backward_kernel<D>, cudaFuncAttributePreferredSharedMemoryCarveout,
                           cudaSharedmemCarveoutMaxShared) != cudaSuccess)
    return SK_KERNEL_LAUNCH_FAILED;
  dim3 grid((p.seq_len + kBwdBlockN - 1) / kBwdBlockN, p.heads, p.batch);
  flash_backward_kernel<D><<<grid, kBwdThreads, smem, s>>>(p, static_cast<const __nv_bfloat16*>(dout), ds, lse, delta,
                                                           static_cast<__nv_bfloat16*>(dk),
                                                           static_cast<__nv_bfloat16*>(dv), dq_accum);
  const int64_t n2 = rows * D / 2;
  flash_backward_finish_dq_kernel<<<static_cast<unsigned>(std::min<int64_t>((n2 + 255) / 256, 65535)), 256, 0, s>>>(
      dq_accum, static_cast<__nv_bfloat16*>(dq), n2, p.softmax_scale);
  return cudaGetLastError() == cudaSuccess ? SK_KERNEL_OK : SK_KERNEL_LAUNCH_FAILED;
}

}  // namespace sk_flash

extern "C" int sk_cuda_flash_backward(const SkFlashParams* p, const void* dout, SkFlashStrides dout_stride,
                                      const void* out, const float* lse, void* dq, void* dk, void* dv, float* delta,
                                      float* dq_accum, cudaStream_t s) {
  if (!sk_flash::params_ok(p) || !dout || !out || !lse || !dq || !dk || !dv || !delta || !dq_accum)
    return SK_KERNEL_BAD_ARG;
  if (reinterpret_cast<uintptr_t>(dout) % 16 || dout_stride.batch % 8 || dout_stride.head % 8 || dout_stride.row % 8)
    return SK_KERNEL_MISALIGNED;
  if (p->batch == 0 || p->seq_len == 0) return SK_KERNEL_OK;
  return p->head_dim == 64
             ? sk_flash::launch_backward<64>(*p, dout, dout_stride, out, lse, dq, dk, dv, delta, dq_accum, s)
             : sk_flash::launch_backward<128>(*p, dout, dout_stride, out, lse, dq, dk, dv, delta, dq_accum, s);
}
