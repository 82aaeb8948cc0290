// Fused causal attention backward (FlashAttention-2 style), three launches:
//   1. delta = rowsum(dout * out) per query (fp32), and dq_accum zeroed;
//   2. one block per key tile (128 keys at hd 64, 64 at hd 128; BwdTile), head and batch, 4 warps
//      of 32 (hd 64) or 16 (hd 128) keys each, walking the query tiles (32 or 64 queries) that
//      see those keys: recompute S^T = K Q^T and P^T = exp(S^T - lse) (from the
//      forward's log-sum-exp, no second softmax), dP^T = V dO^T, dS^T = P^T (dP^T - delta);
//      dV += P^T dO and dK += dS^T Q stay in registers; dQ += dS K goes through shared memory
//      (dS^T) and fp32 atomics into dq_accum (so dQ's summation order is not deterministic);
//   3. dq = bf16(scale * dq_accum).
// Q/dO tiles are double-buffered with cp.async; all products on mma.sync m16n8k16. On compute
// capability 9.0, step 2 is flash_backward_sm90.cu's wgmma kernel instead
// (SkFlashParams::backward_kernel chooses).
// Declared in flash_attention.h; tested in tests/attention/test_flash_attention.cpp.
#include <cuda_runtime.h>

#include <cmath>

#include "kernels/attention/flash_attention.h"
#include "kernels/attention/flash_backward_block.cuh"
#include "kernels/attention/flash_backward_sm90.h"
#include "kernels/attention/flash_tile.cuh"
#include "kernels/attention/sm90_device.h"
#include "kernels/common/device_utils.cuh"

namespace sk_flash {

constexpr int kBwdWarps = 4;
constexpr int kBwdThreads = kBwdWarps * 32;

// Tile shape of the main backward kernel per head dim: each warp owns MT x 16 keys (a block owns
// kBwdWarps * MT * 16), and the block walks the queries BR at a time. More keys per warp means
// each Q/dO fragment read from shared memory serves more MMAs (the kernel is bound by those
// reads); registers allow MT = 2 only at hd 64.
template <int D>
struct BwdTile {
  static constexpr int MT = D == 64 ? 2 : 1;
  static constexpr int BR = D == 64 ? 32 : 64;
  static constexpr int BLOCK_N = kBwdWarps * 16 * MT;  // keys per block
};

template <int D>
constexpr int bwd_smem_bytes() {
  constexpr int N = BwdTile<D>::BLOCK_N, M = BwdTile<D>::BR;
  // K, V, 2 x (Q, dO), dS^T (N x M), 2 x (lse, delta) floats
  return (2 * N + 4 * M) * D * 2 + N * M * 2 + 4 * M * 4;
}

// delta = sum_d dout * out per query row, and the row of dq_accum zeroed. D / 8 lanes per row, each
// with one 16-byte load of dout and of out (8 bf16) and two 16-byte zero stores; every lane takes
// kPrepareRows rows (its loads all issued before the first use), so that enough bytes are in flight
// to keep HBM busy (one warp per row with 4-byte loads reached ~2 TB/s).
constexpr int kPrepareThreads = 256, kPrepareRows = 2;
template <int D>
constexpr int prepare_rows_per_block() {
  return kPrepareThreads / (D / 8) * kPrepareRows;
}
template <int D>
__global__ void __launch_bounds__(kPrepareThreads)
    flash_backward_prepare_kernel(const __nv_bfloat16* __restrict__ dout, SkFlashStrides ds,
                                  const __nv_bfloat16* __restrict__ out, float* __restrict__ delta,
                                  float* __restrict__ dq_accum, int B, int H, int T) {
  constexpr int G = D / 8;                        // lanes per row
  constexpr int kGroups = kPrepareThreads / G;    // row groups per block
  const int tid = static_cast<int>(threadIdx.x), c = (tid % G) * 8;
  const int64_t rows = static_cast<int64_t>(B) * H * T;
  int64_t row[kPrepareRows];
  uint4 x[kPrepareRows], y[kPrepareRows];
#pragma unroll
  for (int r = 0; r < kPrepareRows; ++r) {  // rows (b, h, i) in that order: delta's layout
    row[r] = (static_cast<int64_t>(blockIdx.x) * kPrepareRows + r) * kGroups + tid / G;
    x[r] = y[r] = make_uint4(0u, 0u, 0u, 0u);
    if (row[r] < rows) {
      const int i = static_cast<int>(row[r] % T);
      const int h = static_cast<int>((row[r] / T) % H);
      const int b = static_cast<int>(row[r] / (static_cast<int64_t>(T) * H));
      const int64_t orow = ((static_cast<int64_t>(b) * T + i) * H + h) * D;
      x[r] = *reinterpret_cast<const uint4*>(dout + b * ds.batch + h * ds.head + i * ds.row + c);
      y[r] = *reinterpret_cast<const uint4*>(out + orow + c);
      float4* z = reinterpret_cast<float4*>(dq_accum + orow + c);
      z[0] = z[1] = make_float4(0.f, 0.f, 0.f, 0.f);
    }
  }
#pragma unroll
  for (int r = 0; r < kPrepareRows; ++r) {
    const __nv_bfloat162* xa = reinterpret_cast<const __nv_bfloat162*>(&x[r]);
    const __nv_bfloat162* ya = reinterpret_cast<const __nv_bfloat162*>(&y[r]);
    float acc = 0.f;
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const float2 a = __bfloat1622float2(xa[e]), o = __bfloat1622float2(ya[e]);
      acc += a.x * o.x + a.y * o.y;
    }
    acc = sk_kern::group_sum<G>(acc);
    if (tid % G == 0 && row[r] < rows) delta[row[r]] = acc;
  }
}

// dq_accum is (rows, row2 pairs) contiguous; dq rows are dq_row2 pairs apart.
__global__ void flash_backward_finish_dq_kernel(const float* __restrict__ dq_accum, __nv_bfloat16* __restrict__ dq,
                                                int64_t n2, int64_t row2, int64_t dq_row2, float scale) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n2;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float2 x = reinterpret_cast<const float2*>(dq_accum)[i];
    const int64_t row = i / row2, col = i - row * row2;
    reinterpret_cast<__nv_bfloat162*>(dq)[row * dq_row2 + col] = __floats2bfloat162_rn(x.x * scale, x.y * scale);
  }
}

// kFtz: the softmax's exp2 as one ex2.approx.ftz (SkFlashParams::exp2_ftz; flash_tile.cuh).
template <int D, bool kFtz>
__global__ void __launch_bounds__(kBwdThreads, 1)
    flash_backward_kernel(const SkFlashParams p, const __nv_bfloat16* __restrict__ dout, const SkFlashStrides ds,
                          const float* __restrict__ lse, const float* __restrict__ delta,
                          __nv_bfloat16* __restrict__ dk, __nv_bfloat16* __restrict__ dv,
                          float* __restrict__ dq_accum) {
  constexpr int MT = BwdTile<D>::MT, BR = BwdTile<D>::BR, BLOCK_N = BwdTile<D>::BLOCK_N;
  extern __shared__ __align__(128) unsigned char smem[];
  const int n_block = static_cast<int>(gridDim.x - 1 - blockIdx.x);  // keys near the start see most queries
  const int h = blockIdx.y, b = blockIdx.z;
  const int T = p.seq_len, W = p.window, H = p.heads;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int g = lane >> 2, t = lane & 3;
  const int n0 = n_block * BLOCK_N;

  const BwdBlock blk = bwd_block<BR>(p, dout, ds, lse, delta, b, h, n0, BLOCK_N);
  const int m_first = blk.m_first, m_end = blk.m_end;

  // Shared memory: K, V (BLOCK_N x D); Q and dO (BR x D, two buffers each, buffer `buf` at
  // + buf * kTile); dS^T (BLOCK_N x BR); lse and delta (two buffers of BR floats each).
  constexpr uint32_t kTile = BR * D * 2;
  const uint32_t sK = smem_u32(smem);
  const uint32_t sV = sK + BLOCK_N * D * 2;
  const uint32_t sQ = sV + BLOCK_N * D * 2, sdO = sQ + 2 * kTile;
  const uint32_t sdS = sdO + 2 * kTile;
  float* s_lse = reinterpret_cast<float*>(smem + (2 * BLOCK_N + 4 * BR) * D * 2 + BLOCK_N * BR * 2);
  float* s_delta = s_lse + 2 * BR;

  load_tile<BLOCK_N, D, kBwdThreads>(sK, blk.k, p.k_stride.row, n0, T);
  load_tile<BLOCK_N, D, kBwdThreads>(sV, blk.v, p.v_stride.row, n0, T);
  if (m_first < m_end) load_query_tile<BR, D, kBwdThreads>(blk, p, ds, sQ, sdO, s_lse, s_delta, m_first, 0);
  cp_async_commit();

  const float scale_log2 = p.softmax_scale * kLog2e;
  float dk_acc[MT][D / 8][4], dv_acc[MT][D / 8][4];
#pragma unroll
  for (int mt = 0; mt < MT; ++mt)
#pragma unroll
    for (int i = 0; i < D / 8; ++i)
#pragma unroll
      for (int e = 0; e < 4; ++e) dk_acc[mt][i][e] = dv_acc[mt][i][e] = 0.f;
  const int warp_key0 = warp * 16 * MT;  // first key row of this warp within the block

  // dQ partition: warp -> (16-query m-tile, slice of D).
  constexpr int kQTiles = BR / 16, kDSplit = kBwdWarps / kQTiles, kDPart = D / kDSplit;
  static_assert(kBwdWarps % kQTiles == 0 && kDPart % 16 == 0, "dQ partition");
  const int dq_m = warp % kQTiles, dq_d0 = (warp / kQTiles) * kDPart;

  for (int m = m_first; m < m_end; ++m) {
    const int buf = (m - m_first) & 1;
    cp_async_wait<0>();
    __syncthreads();
    if (m + 1 < m_end) load_query_tile<BR, D, kBwdThreads>(blk, p, ds, sQ, sdO, s_lse, s_delta, m + 1, buf ^ 1);
    cp_async_commit();
    const int q0 = m * BR;
    const uint32_t sQb = sQ + buf * kTile, sdOb = sdO + buf * kTile;

    // S^T = K Q^T and dP^T = V dO^T for this warp's MT x 16 keys x BR queries.
    float st[MT][BR / 8][4], dpt[MT][BR / 8][4];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
      for (int j = 0; j < BR / 8; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) st[mt][j][e] = dpt[mt][j][e] = 0.f;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      uint32_t ka[MT][4], va[MT][4];
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) {
        load_a<D>(ka[mt], sK, warp_key0 + mt * 16, kk * 16, lane);
        load_a<D>(va[mt], sV, warp_key0 + mt * 16, kk * 16, lane);
      }
#pragma unroll
      for (int j = 0; j < BR / 16; ++j) {
        uint32_t qb[4], ob[4];
        load_b<D>(qb, sQb, j * 16, kk * 16, lane);
        load_b<D>(ob, sdOb, j * 16, kk * 16, lane);
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
          mma_bf16(st[mt][2 * j], ka[mt], qb[0], qb[1]);
          mma_bf16(st[mt][2 * j + 1], ka[mt], qb[2], qb[3]);
          mma_bf16(dpt[mt][2 * j], va[mt], ob[0], ob[1]);
          mma_bf16(dpt[mt][2 * j + 1], va[mt], ob[2], ob[3]);
        }
      }
    }

    // P^T and dS^T (masked entries are 0 in both); dS^T also to shared memory for dQ.
    const bool needs_mask = q0 < n0 + BLOCK_N - 1 || q0 + BR > T || n0 + BLOCK_N > T ||
                            (W > 0 && q0 + BR - 1 >= n0 + W);
    const float* lse_s = s_lse + buf * BR;
    const float* delta_s = s_delta + buf * BR;
    uint32_t pa[MT][BR / 16][4], dsa[MT][BR / 16][4];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
      const int ra = warp_key0 + mt * 16 + g, rb = ra + 8;  // key rows within the block
#pragma unroll
      for (int j = 0; j < BR / 8; ++j) {
        float pv[4], dsv[4];
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int col = j * 8 + 2 * t + (e & 1);  // query within the tile
          const int query = q0 + col, key = n0 + (e < 2 ? ra : rb);
          const bool ok = !needs_mask || (key <= query && query < T && key < T && (W == 0 || key > query - W));
          pv[e] = ok ? softmax_exp2<kFtz>(st[mt][j][e] * scale_log2 - lse_s[col]) : 0.f;
          dsv[e] = pv[e] * (dpt[mt][j][e] - delta_s[col]);
        }
        pa[mt][j / 2][(j & 1) * 2 + 0] = pack_bf16(pv[0], pv[1]);
        pa[mt][j / 2][(j & 1) * 2 + 1] = pack_bf16(pv[2], pv[3]);
        dsa[mt][j / 2][(j & 1) * 2 + 0] = pack_bf16(dsv[0], dsv[1]);
        dsa[mt][j / 2][(j & 1) * 2 + 1] = pack_bf16(dsv[2], dsv[3]);
        const int col = j * 8 + 2 * t;
        asm volatile("st.shared.b32 [%0], %1;\n" ::"r"(sdS + swz<BR>(ra, col & ~7) + (col & 7) * 2),
                     "r"(dsa[mt][j / 2][(j & 1) * 2 + 0]));
        asm volatile("st.shared.b32 [%0], %1;\n" ::"r"(sdS + swz<BR>(rb, col & ~7) + (col & 7) * 2),
                     "r"(dsa[mt][j / 2][(j & 1) * 2 + 1]));
      }
    }

    // dV += P^T dO, dK += dS^T Q (k = queries); each dO / Q fragment serves MT key tiles.
#pragma unroll
    for (int kk = 0; kk < BR / 16; ++kk) {
#pragma unroll
      for (int i = 0; i < D / 16; ++i) {
        uint32_t ob[4], qb[4];
        load_b_trans<D>(ob, sdOb, kk * 16, i * 16, lane);
        load_b_trans<D>(qb, sQb, kk * 16, i * 16, lane);
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
          mma_bf16(dv_acc[mt][2 * i], pa[mt][kk], ob[0], ob[1]);
          mma_bf16(dv_acc[mt][2 * i + 1], pa[mt][kk], ob[2], ob[3]);
          mma_bf16(dk_acc[mt][2 * i], dsa[mt][kk], qb[0], qb[1]);
          mma_bf16(dk_acc[mt][2 * i + 1], dsa[mt][kk], qb[2], qb[3]);
        }
      }
    }
    __syncthreads();  // dS^T complete

    // dQ (16 queries x kDPart dims of this tile) += dS K over the block's keys, into dq_accum.
    float dq[kDPart / 8][4];
#pragma unroll
    for (int i = 0; i < kDPart / 8; ++i) dq[i][0] = dq[i][1] = dq[i][2] = dq[i][3] = 0.f;
#pragma unroll
    for (int kk = 0; kk < BLOCK_N / 16; ++kk) {
      uint32_t a[4];
      load_a_trans<BR>(a, sdS, dq_m * 16, kk * 16, lane);
#pragma unroll
      for (int i = 0; i < kDPart / 16; ++i) {
        uint32_t kb[4];
        load_b_trans<D>(kb, sK, kk * 16, dq_d0 + i * 16, lane);
        mma_bf16(dq[2 * i], a, kb[0], kb[1]);
        mma_bf16(dq[2 * i + 1], a, kb[2], kb[3]);
      }
    }
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int query = q0 + dq_m * 16 + g + r * 8;
      if (query >= T) continue;
      float* row = dq_accum + ((static_cast<int64_t>(b) * T + query) * H + h) * D + dq_d0;
#pragma unroll
      for (int i = 0; i < kDPart / 8; ++i)
        atomicAdd(reinterpret_cast<float2*>(row + i * 8 + 2 * t), make_float2(dq[i][2 * r], dq[i][2 * r + 1]));
    }
  }

  // Write dK (scaled) and dV for this block's keys, (B, T, H, D) with row stride grad_row_stride.
  const int64_t grad_row = p.grad_row_stride ? p.grad_row_stride : static_cast<int64_t>(H) * D;
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int key = n0 + warp_key0 + mt * 16 + g + r * 8;
      if (key >= T) continue;
      const int64_t off = (static_cast<int64_t>(b) * T + key) * grad_row + static_cast<int64_t>(h) * D;
#pragma unroll
      for (int i = 0; i < D / 8; ++i) {
        if (p.grad_kv_f32) {  // fp32, dK unscaled (flash_attention.h)
          *reinterpret_cast<float2*>(reinterpret_cast<float*>(dk) + off + i * 8 + 2 * t) =
              make_float2(dk_acc[mt][i][2 * r], dk_acc[mt][i][2 * r + 1]);
          *reinterpret_cast<float2*>(reinterpret_cast<float*>(dv) + off + i * 8 + 2 * t) =
              make_float2(dv_acc[mt][i][2 * r], dv_acc[mt][i][2 * r + 1]);
          continue;
        }
        *reinterpret_cast<uint32_t*>(dk + off + i * 8 + 2 * t) =
            pack_bf16(dk_acc[mt][i][2 * r] * p.softmax_scale, dk_acc[mt][i][2 * r + 1] * p.softmax_scale);
        *reinterpret_cast<uint32_t*>(dv + off + i * 8 + 2 * t) =
            pack_bf16(dv_acc[mt][i][2 * r], dv_acc[mt][i][2 * r + 1]);
      }
    }
  }
}

template <int D>
int launch_backward_main(const SkFlashParams& p, const void* dout, SkFlashStrides ds, const float* lse,
                         const float* delta, void* dk, void* dv, float* dq_accum, cudaStream_t s);

template <int D>
int launch_backward(const SkFlashParams& p, const void* dout, SkFlashStrides ds, const void* out, const float* lse,
                    void* dq, void* dk, void* dv, float* delta, float* dq_accum, cudaStream_t s) {
  const int64_t rows = static_cast<int64_t>(p.batch) * p.heads * p.seq_len;
  constexpr int prep_rows = prepare_rows_per_block<D>();
  flash_backward_prepare_kernel<D><<<static_cast<unsigned>((rows + prep_rows - 1) / prep_rows), kPrepareThreads, 0, s>>>(
      static_cast<const __nv_bfloat16*>(dout), ds, static_cast<const __nv_bfloat16*>(out), delta, dq_accum, p.batch,
      p.heads, p.seq_len);
  // Hopper: the wgmma main kernel (flash_backward_sm90.cu; by default its pipelined schedule,
  // measured fastest at every T on H200 on 2026-12-03, the only one at hd 128) unless mma.sync is
  // asked for.
  const bool wgmma = p.backward_kernel != 1 && device_runs_sm90a() && (D == 64 || p.backward_kernel == 0 || p.backward_kernel == 4);
  if (p.backward_kernel >= 2 && !wgmma) return SK_KERNEL_BAD_ARG;  // asked for wgmma where it cannot run
  int status = SK_KERNEL_OK;
  if (wgmma) {
    const int k = p.backward_kernel == 0 ? 4 : p.backward_kernel;  // default: the pipelined schedule
    status = launch_backward_main_sm90(p, dout, ds, lse, delta, dk, dv, dq_accum, k == 3 || k == 5, k == 4 || k == 5, s);
  } else {
    status = launch_backward_main<D>(p, dout, ds, lse, delta, dk, dv, dq_accum, s);
  }
  if (status != SK_KERNEL_OK) return status;
  if (!dq) return cudaGetLastError() == cudaSuccess ? SK_KERNEL_OK : SK_KERNEL_LAUNCH_FAILED;  // dQ stays in dq_accum
  const int64_t n2 = rows * D / 2, row2 = static_cast<int64_t>(p.heads) * D / 2;
  const int64_t dq_row2 = p.grad_row_stride ? p.grad_row_stride / 2 : row2;
  flash_backward_finish_dq_kernel<<<static_cast<unsigned>(std::min<int64_t>((n2 + 255) / 256, 65535)), 256, 0, s>>>(
      dq_accum, static_cast<__nv_bfloat16*>(dq), n2, row2, dq_row2, p.softmax_scale);
  return cudaGetLastError() == cudaSuccess ? SK_KERNEL_OK : SK_KERNEL_LAUNCH_FAILED;
}

// The mma.sync main kernel (every head dim and device).
template <int D>
int launch_backward_main(const SkFlashParams& p, const void* dout, SkFlashStrides ds, const float* lse,
                         const float* delta, void* dk, void* dv, float* dq_accum, cudaStream_t s) {
  constexpr int smem = bwd_smem_bytes<D>();
  auto* kernel = p.exp2_ftz ? flash_backward_kernel<D, true> : flash_backward_kernel<D, false>;
  // Opt in to more than 48 KB of shared memory and ask for the largest shared-memory carveout, so
  // that as many blocks fit on an SM as registers allow.
  if (cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem) != cudaSuccess ||
      cudaFuncSetAttribute(kernel, cudaFuncAttributePreferredSharedMemoryCarveout,
                           cudaSharedmemCarveoutMaxShared) != cudaSuccess)
    return SK_KERNEL_LAUNCH_FAILED;
  dim3 grid((p.seq_len + BwdTile<D>::BLOCK_N - 1) / BwdTile<D>::BLOCK_N, p.heads, p.batch);
  kernel<<<grid, kBwdThreads, smem, s>>>(p, static_cast<const __nv_bfloat16*>(dout), ds, lse, delta,
                                         static_cast<__nv_bfloat16*>(dk), static_cast<__nv_bfloat16*>(dv), dq_accum);
  return cudaGetLastError() == cudaSuccess ? SK_KERNEL_OK : SK_KERNEL_LAUNCH_FAILED;
}

}  // namespace sk_flash

extern "C" int sk_cuda_flash_backward(const SkFlashParams* p, const void* dout, SkFlashStrides dout_stride,
                                      const void* out, const float* lse, void* dq, void* dk, void* dv, float* delta,
                                      float* dq_accum, cudaStream_t s) {
  if (!sk_flash::params_ok(p) || !dout || !out || !lse || !dk || !dv || !delta || !dq_accum)
    return SK_KERNEL_BAD_ARG;
  if (reinterpret_cast<uintptr_t>(dout) % 16 || dout_stride.batch % 8 || dout_stride.head % 8 || dout_stride.row % 8)
    return SK_KERNEL_MISALIGNED;
  if (reinterpret_cast<uintptr_t>(out) % 16 || reinterpret_cast<uintptr_t>(dq_accum) % 16) return SK_KERNEL_MISALIGNED;
  if (p->backward_kernel < 0 || p->backward_kernel > 5) return SK_KERNEL_BAD_ARG;
  if (p->grad_row_stride < 0 || p->grad_row_stride % 2 ||
      (p->grad_row_stride > 0 && p->grad_row_stride < static_cast<int64_t>(p->heads) * p->head_dim))
    return SK_KERNEL_BAD_ARG;
  const uintptr_t kv_align = p->grad_kv_f32 ? 8 : 4;
  if (reinterpret_cast<uintptr_t>(dq) % 4 || reinterpret_cast<uintptr_t>(dk) % kv_align ||
      reinterpret_cast<uintptr_t>(dv) % kv_align)
    return SK_KERNEL_MISALIGNED;
  if (p->batch == 0 || p->seq_len == 0) return SK_KERNEL_OK;
  return p->head_dim == 64
             ? sk_flash::launch_backward<64>(*p, dout, dout_stride, out, lse, dq, dk, dv, delta, dq_accum, s)
             : sk_flash::launch_backward<128>(*p, dout, dout_stride, out, lse, dq, dk, dv, delta, dq_accum, s);
}
