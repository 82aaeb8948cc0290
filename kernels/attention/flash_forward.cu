// Fused causal attention forward (FlashAttention-2 style): one block per (128-query tile, head,
// batch): 4 warps of 32 query rows (hd 64) or 8 warps of 16 (hd 128). K/V tiles of 64 keys
// stream through double-buffered, swizzled shared memory (cp.async); S = Q K^T and O += P V run on mma.sync m16n8k16 (bf16 in,
// fp32 accumulate) with an online softmax in registers (base-2 exponentials, scale folded in).
// Only key tiles inside the causal band (and, for a sliding window, inside the window) are
// visited; element masks are applied only on the tiles that cross a band edge.
// On compute capability 9.0 flash_forward_sm90.cu's wgmma kernel runs instead (the default
// there, SkFlashParams::forward_kernel 0 or 2; 1 keeps this one). Declared in flash_attention.h; tested in tests/attention/test_flash_attention.cpp.
#include <cuda_runtime.h>

#include <cmath>

#include "kernels/attention/flash_attention.h"
#include "kernels/attention/flash_forward_sm90.h"
#include "kernels/attention/flash_tile.cuh"
#include "kernels/attention/sm90_device.h"

namespace sk_flash {

// Tile shape per head dim: each warp owns MT x 16 query rows; a block owns 128 rows. Two m-tiles
// per warp (hd 64) let each K/V fragment read from shared memory serve two MMAs; at hd 128 the
// O accumulators leave registers for one.
template <int D>
struct FwdTile {
  static constexpr int MT = D == 64 ? 2 : 1;
  static constexpr int WARPS = 8 / MT;
  static constexpr int THREADS = WARPS * 32;
  static constexpr int BLOCK_M = WARPS * 16 * MT;  // query rows per block (128)
};
constexpr int kFwdBlockM = 128;
constexpr int kFwdBlockN = 64;  // keys per tile

template <int D>
constexpr int fwd_smem_bytes() {
  return (kFwdBlockM + 4 * kFwdBlockN) * D * 2;  // Q + 2 x (K, V)
}

// kFtz: the softmax's exp2 as one ex2.approx.ftz (SkFlashParams::exp2_ftz; flash_tile.cuh).
template <int D, bool kFtz>
__global__ void __launch_bounds__(FwdTile<D>::THREADS, D == 64 ? 2 : 1)
    flash_forward_kernel(const SkFlashParams p, __nv_bfloat16* __restrict__ out, float* __restrict__ lse) {
  constexpr int MT = FwdTile<D>::MT, THREADS = FwdTile<D>::THREADS;
  static_assert(FwdTile<D>::BLOCK_M == kFwdBlockM, "block rows");
  extern __shared__ __align__(128) unsigned char smem[];
  const int m_block = static_cast<int>(gridDim.x - 1 - blockIdx.x);  // longest rows first
  const int h = blockIdx.y, b = blockIdx.z;
  const int T = p.seq_len, W = p.window, H = p.heads;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int g = lane >> 2, t = lane & 3;
  const int m0 = m_block * kFwdBlockM;

  const __nv_bfloat16* q = static_cast<const __nv_bfloat16*>(p.q) + b * p.q_stride.batch + h * p.q_stride.head;
  const __nv_bfloat16* k = static_cast<const __nv_bfloat16*>(p.k) + b * p.k_stride.batch + h * p.k_stride.head;
  const __nv_bfloat16* v = static_cast<const __nv_bfloat16*>(p.v) + b * p.v_stride.batch + h * p.v_stride.head;

  const uint32_t sQ = smem_u32(smem);
  // Buffer `buf` of K at sK + buf * kTile, of V at sV + buf * kTile (no run-time indexed arrays).
  constexpr uint32_t kTile = kFwdBlockN * D * 2;
  const uint32_t sK = sQ + kFwdBlockM * D * 2, sV = sK + 2 * kTile;

  // Key range of this query tile: [key_lo, key_hi).
  const int m_last = min(m0 + kFwdBlockM, T) - 1;
  const int key_lo = W > 0 ? max(0, m0 - W + 1) : 0;
  const int key_hi = m_last + 1;
  const int n_first = key_lo / kFwdBlockN, n_end = (key_hi + kFwdBlockN - 1) / kFwdBlockN;

  load_tile<kFwdBlockM, D, THREADS>(sQ, q, p.q_stride.row, m0, T);
  load_tile<kFwdBlockN, D, THREADS>(sK, k, p.k_stride.row, n_first * kFwdBlockN, T);
  load_tile<kFwdBlockN, D, THREADS>(sV, v, p.v_stride.row, n_first * kFwdBlockN, T);
  cp_async_commit();

  const float scale_log2 = p.softmax_scale * kLog2e;
  float o[MT][D / 8][4];
#pragma unroll
  for (int mt = 0; mt < MT; ++mt)
#pragma unroll
    for (int i = 0; i < D / 8; ++i) o[mt][i][0] = o[mt][i][1] = o[mt][i][2] = o[mt][i][3] = 0.f;
  float row_max[MT][2], row_sum[MT][2];
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) row_max[mt][0] = row_max[mt][1] = -INFINITY, row_sum[mt][0] = row_sum[mt][1] = 0.f;
  uint32_t qf[MT][D / 16][4];
  const int warp_row0 = warp * 16 * MT;  // first query row of this warp within the block

  for (int n = n_first; n < n_end; ++n) {
    const int buf = (n - n_first) & 1;
    cp_async_wait<0>();
    __syncthreads();
    if (n + 1 < n_end) {  // prefetch the next K/V tile into the other buffer
      load_tile<kFwdBlockN, D, THREADS>(sK + (buf ^ 1) * kTile, k, p.k_stride.row, (n + 1) * kFwdBlockN, T);
      load_tile<kFwdBlockN, D, THREADS>(sV + (buf ^ 1) * kTile, v, p.v_stride.row, (n + 1) * kFwdBlockN, T);
    }
    cp_async_commit();
    if (n == n_first) {
#pragma unroll
      for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int kk = 0; kk < D / 16; ++kk) load_a<D>(qf[mt][kk], sQ, warp_row0 + mt * 16, kk * 16, lane);
    }
    const uint32_t sKb = sK + buf * kTile, sVb = sV + buf * kTile;

    // S = Q K^T for this warp's MT x 16 rows x 64 keys; each K fragment serves MT MMAs.
    float s[MT][kFwdBlockN / 8][4];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
      for (int j = 0; j < kFwdBlockN / 8; ++j) s[mt][j][0] = s[mt][j][1] = s[mt][j][2] = s[mt][j][3] = 0.f;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
#pragma unroll
      for (int j = 0; j < kFwdBlockN / 16; ++j) {
        uint32_t bf[4];
        load_b<D>(bf, sKb, j * 16, kk * 16, lane);
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
          mma_bf16(s[mt][2 * j], qf[mt][kk], bf[0], bf[1]);
          mma_bf16(s[mt][2 * j + 1], qf[mt][kk], bf[2], bf[3]);
        }
      }
    }

    // Mask the tiles that cross the diagonal, the window's lower edge or the end of the sequence.
    const int n0 = n * kFwdBlockN;
    const bool needs_mask = n0 + kFwdBlockN - 1 > m0 || n0 + kFwdBlockN > T || (W > 0 && n0 < m_last - W + 1);
    uint32_t pf[MT][kFwdBlockN / 16][4];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
      const int row_a = m0 + warp_row0 + mt * 16 + g, row_b = row_a + 8;  // this thread's two rows
      if (needs_mask) {
#pragma unroll
        for (int j = 0; j < kFwdBlockN / 8; ++j) {
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const int key = n0 + j * 8 + 2 * t + (e & 1);
            const int row = e < 2 ? row_a : row_b;
            const bool ok = key <= row && key < T && (W == 0 || key > row - W);
            if (!ok) s[mt][j][e] = -INFINITY;
          }
        }
      }
      // Online softmax (base 2): new running max, rescale O and the running sums.
      float tile_max[2] = {-INFINITY, -INFINITY};
#pragma unroll
      for (int j = 0; j < kFwdBlockN / 8; ++j) {
        tile_max[0] = fmaxf(tile_max[0], fmaxf(s[mt][j][0], s[mt][j][1]));
        tile_max[1] = fmaxf(tile_max[1], fmaxf(s[mt][j][2], s[mt][j][3]));
      }
      float corr[2], m_scaled[2];
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(0xffffffff, tile_max[r], 1));
        tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(0xffffffff, tile_max[r], 2));
        const float new_max = fmaxf(row_max[mt][r], tile_max[r]);
        m_scaled[r] = new_max == -INFINITY ? 0.f : new_max * scale_log2;
        corr[r] = row_max[mt][r] == -INFINITY ? 0.f : softmax_exp2<kFtz>(row_max[mt][r] * scale_log2 - m_scaled[r]);
        row_max[mt][r] = new_max;
        row_sum[mt][r] *= corr[r];
      }
#pragma unroll
      for (int i = 0; i < D / 8; ++i) {
        o[mt][i][0] *= corr[0];
        o[mt][i][1] *= corr[0];
        o[mt][i][2] *= corr[1];
        o[mt][i][3] *= corr[1];
      }
#pragma unroll
      for (int j = 0; j < kFwdBlockN / 8; ++j) {
        const float p0 = softmax_exp2<kFtz>(s[mt][j][0] * scale_log2 - m_scaled[0]);
        const float p1 = softmax_exp2<kFtz>(s[mt][j][1] * scale_log2 - m_scaled[0]);
        const float p2 = softmax_exp2<kFtz>(s[mt][j][2] * scale_log2 - m_scaled[1]);
        const float p3 = softmax_exp2<kFtz>(s[mt][j][3] * scale_log2 - m_scaled[1]);
        row_sum[mt][0] += p0 + p1;
        row_sum[mt][1] += p2 + p3;
        pf[mt][j / 2][(j & 1) * 2 + 0] = pack_bf16(p0, p1);
        pf[mt][j / 2][(j & 1) * 2 + 1] = pack_bf16(p2, p3);
      }
    }

    // O += P V; each V fragment serves MT MMAs.
#pragma unroll
    for (int kk = 0; kk < kFwdBlockN / 16; ++kk) {
#pragma unroll
      for (int i = 0; i < D / 16; ++i) {
        uint32_t bf[4];
        load_b_trans<D>(bf, sVb, kk * 16, i * 16, lane);
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
          mma_bf16(o[mt][2 * i], pf[mt][kk], bf[0], bf[1]);
          mma_bf16(o[mt][2 * i + 1], pf[mt][kk], bf[2], bf[3]);
        }
      }
    }
  }

  // Normalise and write O ((B, T, H, D)) and the natural-log LSE ((B, H, T)).
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      float sum = row_sum[mt][r];
      sum += __shfl_xor_sync(0xffffffff, sum, 1);
      sum += __shfl_xor_sync(0xffffffff, sum, 2);
      const float inv = sum > 0.f ? 1.f / sum : 0.f;
      const int row = m0 + warp_row0 + mt * 16 + g + r * 8;
      if (row >= T) continue;
      __nv_bfloat16* orow = out + ((static_cast<int64_t>(b) * T + row) * H + h) * D;
#pragma unroll
      for (int i = 0; i < D / 8; ++i)
        *reinterpret_cast<uint32_t*>(orow + i * 8 + 2 * t) = pack_bf16(o[mt][i][2 * r] * inv, o[mt][i][2 * r + 1] * inv);
      if (t == 0) {
        lse[(static_cast<int64_t>(b) * H + h) * T + row] =
            sum > 0.f ? (row_max[mt][r] * scale_log2 + log2f(sum)) / kLog2e : -INFINITY;
      }
    }
  }
}

template <int D, bool kFtz>
int launch_forward(const SkFlashParams& p, void* out, float* lse, cudaStream_t s) {
  constexpr int smem = fwd_smem_bytes<D>();
  auto* kernel = flash_forward_kernel<D, kFtz>;
  // Opt in to more than 48 KB of shared memory and ask for the largest shared-memory carveout, so
  // that as many blocks fit on an SM as registers allow.
  if (cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem) != cudaSuccess ||
      cudaFuncSetAttribute(kernel, cudaFuncAttributePreferredSharedMemoryCarveout,
                           cudaSharedmemCarveoutMaxShared) != cudaSuccess)
    return SK_KERNEL_LAUNCH_FAILED;
  dim3 grid((p.seq_len + kFwdBlockM - 1) / kFwdBlockM, p.heads, p.batch);
  kernel<<<grid, FwdTile<D>::THREADS, smem, s>>>(p, static_cast<__nv_bfloat16*>(out), lse);
  return cudaGetLastError() == cudaSuccess ? SK_KERNEL_OK : SK_KERNEL_LAUNCH_FAILED;
}

}  // namespace sk_flash

extern "C" int sk_cuda_flash_forward(const SkFlashParams* p, void* out, float* lse, cudaStream_t s) {
  if (!sk_flash::params_ok(p) || !out || !lse || p->forward_kernel < 0 || p->forward_kernel > 2) return SK_KERNEL_BAD_ARG;
  if (p->batch == 0 || p->seq_len == 0) return SK_KERNEL_OK;
  const bool wgmma_runs = sk_flash::device_runs_sm90a();
  if (p->forward_kernel >= 2 && !wgmma_runs) return SK_KERNEL_BAD_ARG;  // wgmma: compute capability 9.0 only
  if (p->forward_kernel == 2 || (p->forward_kernel == 0 && wgmma_runs)) return sk_flash::launch_forward_sm90(*p, out, lse, s);
  if (p->exp2_ftz)
    return p->head_dim == 64 ? sk_flash::launch_forward<64, true>(*p, out, lse, s)
                             : sk_flash::launch_forward<128, true>(*p, out, lse, s);
  return p->head_dim == 64 ? sk_flash::launch_forward<64, false>(*p, out, lse, s)
                           : sk_flash::launch_forward<128, false>(*p, out, lse, s);
}
