// Fused causal attention forward on Hopper's warpgroup tensor cores (wgmma, sm_90a), head dims 64
// and 128:
// the same function as flash_forward.cu's kernel (out and the natural-log LSE, causal with an
// optional window), chosen by sk_cuda_flash_forward through SkFlashParams::forward_kernel.
//
// One block = 128 queries of one (batch, head): two warpgroups of 64 query rows; K/V tiles of 64
// keys stream through shared-memory buffers (cp.async, flash_tile.cuh's swz_panel layout: 64-column
// panels in the hardware's 128-byte swizzle, wgmma.cuh). Per tile and warpgroup:
//   S = Q K^T    wgmma 64 x 64 x D, A = the warpgroup's 64 Q rows and B = the K tile, both
//                K-major from shared memory (as the backward's S^T; FlashAttention-3's choice too);
//                at hd 128 k-steps 4-7 read the second panel;
//   online softmax in registers (base 2, scale folded in), O rescaled;
//   O += P V     wgmma 64 x 64 x 64 per 64-column panel of V (one at hd 64, two at 128), A = P
//                (bf16, registers), B = the V tile read N-major.
// Each tile's products complete before the next tile (leaving P V running into the next tile made
// ptxas serialise every wgmma of the kernel, warning C7515: the loop's register copies of the
// accumulators count as plain writes while the product is in flight); the overlap comes from two
// blocks (four warpgroups) per SM instead. Three K/V buffers: the tile read now and two in flight
// (each prefetched two tiles ahead, into the buffer the tile before last has just freed); at hd
// 128 two buffers (each prefetched one tile ahead), so that two blocks fit in shared memory. Only
// key tiles inside the causal band (and the window) are visited; element masks only on tiles that
// cross a band edge.
// The default forward on compute capability 9.0 (SPARSEK_FLASH_FWD=mma keeps the mma.sync
// kernel). Tested by tests/attention/test_flash_attention.cpp: parity with the CPU reference, and
// the test-only dump (forward_kernel<true>) of one block's operands and raw S tiles. Its first
// version failed on an H200: the compiler sank O's rescale below wgmma.fence (docs/perf-notes.md,
// "The wgmma forward, first GPU run"); this one (operands pinned before each fence, S as an SS
// product) passes - which of the two changes was needed alone was not tested.
#include <cuda_runtime.h>

#include <cmath>

#include "kernels/attention/flash_attention.h"
#include "kernels/attention/flash_forward_sm90.h"
#include "kernels/attention/flash_tile.cuh"
#include "kernels/attention/sm90_device.h"
#include "kernels/attention/wgmma.cuh"
#include "kernels/common/device_utils.cuh"

namespace sk_flash {
namespace sm90_fwd {

constexpr int kThreads = 256;  // two warpgroups
constexpr int BLOCK_M = 128;   // queries per block, 64 per warpgroup
constexpr int BLOCK_N = 64;    // keys per tile
// Shared memory per head dim, from a 1024-byte aligned base: Q, K x kStages, V x kStages.
template <int D>
struct Smem {
  static constexpr uint32_t kQBytes = BLOCK_M * D * 2;                         // 16 KB (hd 64), 32 KB (hd 128)
  static constexpr uint32_t kKVTile = BLOCK_N * D * 2;                         // 8 KB, 16 KB
  // Two blocks per SM at both head dims (hd 128: the 128-register cap costs ptxas 72 bytes of
  // spills; one block without spills measured 1-7% slower, docs/perf-notes.md). Three K/V buffers
  // at hd 64, two at 128 (2 x 98 KB, 2 x 97 KB of shared memory).
  static constexpr int kStages = D == 64 ? 3 : 2;
  static constexpr int kBytes = static_cast<int>(kQBytes + 2 * kStages * kKVTile) + 1024;  // + alignment slack
};

#if SK_HAS_WGMMA
constexpr uint32_t kQPanel = BLOCK_M * 128, kKVPanel = BLOCK_N * 128;  // bytes per 64-column panel
constexpr int D = 64;  // the head dim of the test-only dump

// Reads element (row, col) of a swizzled tile of rows of D bf16 at shared address `tile`.
__device__ __forceinline__ float tile_element(const unsigned char* smem_raw, uint32_t raw, uint32_t tile, int row, int col) {
  const unsigned char* at = smem_raw + (tile - raw) + swz<D>(row, col & ~7) + (col & 7) * 2;
  return __bfloat162float(*reinterpret_cast<const __nv_bfloat16*>(at));
}
// The test-only dump of forward_kernel<true> for tile number `tile` (0 = the block's first):
// S (BLOCK_M x BLOCK_N, rows of the block), the K tile (BLOCK_N x D) and, with the first tile, Q.
__device__ void write_dump(const SkFlashForwardDump& dump, const unsigned char* smem_raw, uint32_t raw, uint32_t sQ,
                           uint32_t sKb, const float (&s)[32], int tile, bool first) {
  const int tid = static_cast<int>(threadIdx.x), wg = tid >> 7, wi = (tid >> 5) & 3, g = (tid & 31) >> 2, t = tid & 3;
  float* sd = dump.s + static_cast<int64_t>(tile) * BLOCK_M * BLOCK_N;
  for (int j = 0; j < BLOCK_N / 8; ++j)
    for (int e = 0; e < 4; ++e) sd[(wg * 64 + wi * 16 + g + (e < 2 ? 0 : 8)) * BLOCK_N + j * 8 + 2 * t + (e & 1)] = s[4 * j + e];
  float* kd = dump.k + static_cast<int64_t>(tile) * BLOCK_N * D;
  for (int i = tid; i < BLOCK_N * D; i += kThreads) kd[i] = tile_element(smem_raw, raw, sKb, i / D, i % D);
  if (first)
    for (int i = tid; i < BLOCK_M * D; i += kThreads) dump.q[i] = tile_element(smem_raw, raw, sQ, i / D, i % D);
}
#endif

#if SK_HAS_WGMMA
// The steps of one K/V tile for the calling warpgroup's 64 query rows (this thread's rows row_a
// and row_a + 8; t its column pair in each group of 8 keys), in forward_kernel's order.

// Issues S = Q K^T (k = head dim; sQwg: the warpgroup's Q rows in panel 0, sKb: the K tile) as one
// wgmma group.
template <int HD>
__device__ __forceinline__ void issue_scores(float (&s)[32], uint32_t sQwg, uint32_t sKb) {
  using namespace sk_wgmma;
  fence_operand(s);  // the register writes a product reads come before its wgmma.fence
  fence();
#pragma unroll
  for (int kk = 0; kk < HD / 16; ++kk)
    wgmma_m64n64k16_ss<0, 0>(s, desc_k_major(sQwg + (kk / 4) * kQPanel + (kk % 4) * 32),
                             desc_k_major(sKb + (kk / 4) * kKVPanel + (kk % 4) * 32), kk > 0);
  commit();
}

// Issues O += P V (k = keys; P in bf16 registers, sVb: the V tile read N-major) as one wgmma group.
// O's rescale and P's packing must come before wgmma.fence: without these pins the compiler sank
// the 32 O multiplications below the fence (the PTX of the first GPU run), so the product could
// read O unscaled.
template <int P>
__device__ __forceinline__ void issue_pv(float (&o)[P][32], uint32_t (&pf)[BLOCK_N / 16][4], uint32_t sVb) {
  using namespace sk_wgmma;
  fence_accumulators(o);
  keep_alive_fragments(pf);
  fence();
#pragma unroll
  for (int pp = 0; pp < P; ++pp)
#pragma unroll
    for (int kk = 0; kk < BLOCK_N / 16; ++kk)
      wgmma_m64n64k16_rs<1>(o[pp], pf[kk], desc_mn_major(sVb + pp * kKVPanel + kk * 2048), 1);
  commit();
}

// The online softmax of tile n (keys n * BLOCK_N on) from its finished S: the causal / window /
// end-of-sequence mask where the tile crosses an edge, the new running max (row_max), the factor
// corr that rescales what came before, row_sum rescaled and increased, P = exp2(S * scale - max)
// packed to bf16 in pf. Reads s, writes pf; O is rescaled by the caller (rescale_output).
template <bool kFtz>
__device__ __forceinline__ void softmax_tile(float (&s)[32], int n, int m0, int m_last, int row_a, int t, int T, int W,
                                             float scale_log2, uint32_t (&pf)[BLOCK_N / 16][4], float (&row_max)[2],
                                             float (&row_sum)[2], float (&corr)[2]) {
  const int n0 = n * BLOCK_N;
  const bool needs_mask = n0 + BLOCK_N - 1 > m0 || n0 + BLOCK_N > T || (W > 0 && n0 < m_last - W + 1);
  if (needs_mask) {
#pragma unroll
    for (int j = 0; j < BLOCK_N / 8; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int key = n0 + j * 8 + 2 * t + (e & 1);
        const int row = e < 2 ? row_a : row_a + 8;
        const bool ok = key <= row && key < T && (W == 0 || key > row - W);
        if (!ok) s[4 * j + e] = -INFINITY;
      }
  }
  float tile_max[2] = {-INFINITY, -INFINITY};
#pragma unroll
  for (int j = 0; j < BLOCK_N / 8; ++j) {
    tile_max[0] = fmaxf(tile_max[0], fmaxf(s[4 * j + 0], s[4 * j + 1]));
    tile_max[1] = fmaxf(tile_max[1], fmaxf(s[4 * j + 2], s[4 * j + 3]));
  }
  float m_scaled[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(0xffffffff, tile_max[r], 1));
    tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(0xffffffff, tile_max[r], 2));
    const float new_max = fmaxf(row_max[r], tile_max[r]);
    m_scaled[r] = new_max == -INFINITY ? 0.f : new_max * scale_log2;
    corr[r] = row_max[r] == -INFINITY ? 0.f : softmax_exp2<kFtz>(row_max[r] * scale_log2 - m_scaled[r]);
    row_max[r] = new_max;
    row_sum[r] *= corr[r];
  }
#pragma unroll
  for (int j = 0; j < BLOCK_N / 8; ++j) {
    const float p0 = softmax_exp2<kFtz>(s[4 * j + 0] * scale_log2 - m_scaled[0]);
    const float p1 = softmax_exp2<kFtz>(s[4 * j + 1] * scale_log2 - m_scaled[0]);
    const float p2 = softmax_exp2<kFtz>(s[4 * j + 2] * scale_log2 - m_scaled[1]);
    const float p3 = softmax_exp2<kFtz>(s[4 * j + 3] * scale_log2 - m_scaled[1]);
    row_sum[0] += p0 + p1;
    row_sum[1] += p2 + p3;
    pf[j / 2][(j & 1) * 2 + 0] = pack_bf16(p0, p1);
    pf[j / 2][(j & 1) * 2 + 1] = pack_bf16(p2, p3);
  }
}

// O *= corr, row by row.
template <int P>
__device__ __forceinline__ void rescale_output(float (&o)[P][32], const float (&corr)[2]) {
#pragma unroll
  for (int pp = 0; pp < P; ++pp)
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      o[pp][4 * i + 0] *= corr[0];
      o[pp][4 * i + 1] *= corr[0];
      o[pp][4 * i + 2] *= corr[1];
      o[pp][4 * i + 3] *= corr[1];
    }
}
#endif

// One block's 128 queries, per tile and warpgroup: S = Q K^T, wait, softmax, O += P V, wait (the
// softmax overlaps other warpgroups' products only; issuing tile n's S with tile n - 1's P V, so
// that the softmax runs while a product is in flight, measured 1-3% slower: docs/perf-notes.md).
// kFtz: the softmax's exp2 without denormal handling (SkFlashParams::exp2_ftz; flash_tile.cuh).
// kDump (test-only, sk_cuda_flash_forward_sm90_dump): block `dump.block` of (batch 0, head 0) also
// writes its Q tile and each visited K tile as they sit in shared memory, and each S tile as the
// product left it (before the mask), so a test can tell a wrong operand from a wrong product.
template <int HD, bool kDump, bool kFtz>
__global__ void __launch_bounds__(kThreads, 2)
    forward_kernel(const SkFlashParams p, __nv_bfloat16* __restrict__ out, float* __restrict__ lse,
                   const SkFlashForwardDump dump) {
#if SK_HAS_WGMMA
  using namespace sk_wgmma;
  static_assert(!kDump || HD == D, "the test-only dump is written at hd 64");
  using L = Smem<HD>;
  constexpr int kStages = L::kStages, kPanels = HD / 64;
  constexpr uint32_t kKVTile = L::kKVTile;
  extern __shared__ unsigned char smem_raw[];
  const uint32_t raw = smem_u32(smem_raw);
  const uint32_t sQ = (raw + 1023u) & ~1023u;
  const uint32_t sK = sQ + L::kQBytes, sV = sK + kStages * kKVTile;  // buffer `buf` at + buf * kKVTile

  const int m_block = static_cast<int>(gridDim.x - 1 - blockIdx.x);  // longest rows first
  const int h = blockIdx.y, b = blockIdx.z;
  const int T = p.seq_len, W = p.window, H = p.heads;
  const int tid = static_cast<int>(threadIdx.x);
  const int wg = tid >> 7, wi = (tid >> 5) & 3;  // warpgroup (64 rows), warp within it (16 rows)
  const int lane = tid & 31, g = lane >> 2, t = lane & 3;
  const int m0 = m_block * BLOCK_M;

  const __nv_bfloat16* q = static_cast<const __nv_bfloat16*>(p.q) + b * p.q_stride.batch + h * p.q_stride.head;
  const __nv_bfloat16* k = static_cast<const __nv_bfloat16*>(p.k) + b * p.k_stride.batch + h * p.k_stride.head;
  const __nv_bfloat16* v = static_cast<const __nv_bfloat16*>(p.v) + b * p.v_stride.batch + h * p.v_stride.head;

  // Key range of this query tile: [key_lo, key_hi).
  const int m_last = min(m0 + BLOCK_M, T) - 1;
  const int key_lo = W > 0 ? max(0, m0 - W + 1) : 0;
  const int key_hi = m_last + 1;
  const int n_first = key_lo / BLOCK_N, n_end = (key_hi + BLOCK_N - 1) / BLOCK_N;

  // kStages - 1 tiles in flight ahead of the one being read: Q and the first K/V tile (one
  // cp.async group), with three stages the second K/V tile (the next group; empty when there is none).
  load_tile<BLOCK_M, HD, kThreads, true>(sQ, q, p.q_stride.row, m0, T);
  load_tile<BLOCK_N, HD, kThreads, true>(sK, k, p.k_stride.row, n_first * BLOCK_N, T);
  load_tile<BLOCK_N, HD, kThreads, true>(sV, v, p.v_stride.row, n_first * BLOCK_N, T);
  cp_async_commit();
  if constexpr (kStages == 3) {
    if (n_first + 1 < n_end) {
      load_tile<BLOCK_N, HD, kThreads, true>(sK + kKVTile, k, p.k_stride.row, (n_first + 1) * BLOCK_N, T);
      load_tile<BLOCK_N, HD, kThreads, true>(sV + kKVTile, v, p.v_stride.row, (n_first + 1) * BLOCK_N, T);
    }
    cp_async_commit();
  }

  const float scale_log2 = p.softmax_scale * kLog2e;
  float o[kPanels][32], s[32];
#pragma unroll
  for (int i = 0; i < 32; ++i) s[i] = 0.f;
#pragma unroll
  for (int pp = 0; pp < kPanels; ++pp)
#pragma unroll
    for (int i = 0; i < 32; ++i) o[pp][i] = 0.f;
  float row_max[2] = {-INFINITY, -INFINITY}, row_sum[2] = {0.f, 0.f}, corr[2];
  uint32_t pf[BLOCK_N / 16][4];
#pragma unroll
  for (int i = 0; i < BLOCK_N / 16; ++i) pf[i][0] = pf[i][1] = pf[i][2] = pf[i][3] = 0u;
  const int row_a = m0 + wg * 64 + wi * 16 + g;  // this thread's rows: row_a, row_a + 8
  const uint32_t sQwg = sQ + wg * 64 * 128;  // the warpgroup's rows in Q's first panel (of kQPanel bytes)

  // Waits for tile n (every cp.async group but the kStages - 2 newest is complete) and, once every
  // warpgroup is past the products that read buffer `ahead`, prefetches tile n + kStages - 1 into it.
  auto next_tile = [&](int n) {
    const int ahead_n = n + kStages - 1, ahead = (ahead_n - n_first) % kStages;
    cp_async_wait<kStages - 2>();
    fence_proxy_async();  // the cp.async writes are read by wgmma
    __syncthreads();
    if (ahead_n < n_end) {
      load_tile<BLOCK_N, HD, kThreads, true>(sK + ahead * kKVTile, k, p.k_stride.row, ahead_n * BLOCK_N, T);
      load_tile<BLOCK_N, HD, kThreads, true>(sV + ahead * kKVTile, v, p.v_stride.row, ahead_n * BLOCK_N, T);
    }
    cp_async_commit();
  };
  auto k_tile = [&](int n) { return sK + ((n - n_first) % kStages) * kKVTile; };
  auto v_tile = [&](int n) { return sV + ((n - n_first) % kStages) * kKVTile; };

  for (int n = n_first; n < n_end; ++n) {
    next_tile(n);
    issue_scores<HD>(s, sQwg, k_tile(n));
    wait<0>();
    fence_operand(s);
    fence_accumulators(o);
    if constexpr (kDump) {
      if (m_block == dump.block && b == 0 && h == 0) write_dump(dump, smem_raw, raw, sQ, k_tile(n), s, n - n_first, n == n_first);
    }
    softmax_tile<kFtz>(s, n, m0, m_last, row_a, t, T, W, scale_log2, pf, row_max, row_sum, corr);
    rescale_output(o, corr);
    issue_pv(o, pf, v_tile(n));
    wait<0>();
    keep_alive_fragments(pf);
    fence_accumulators(o);
  }

  // Normalise and write O ((B, T, H, D)) and the natural-log LSE ((B, H, T)).
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float sum = row_sum[r];
    sum += __shfl_xor_sync(0xffffffff, sum, 1);
    sum += __shfl_xor_sync(0xffffffff, sum, 2);
    const float inv = sum > 0.f ? 1.f / sum : 0.f;
    const int row = row_a + r * 8;
    if (row >= T) continue;
    __nv_bfloat16* orow = out + ((static_cast<int64_t>(b) * T + row) * H + h) * HD;
#pragma unroll
    for (int pp = 0; pp < kPanels; ++pp)
#pragma unroll
      for (int i = 0; i < 8; ++i)
        *reinterpret_cast<uint32_t*>(orow + pp * 64 + i * 8 + 2 * t) =
            pack_bf16(o[pp][4 * i + 2 * r] * inv, o[pp][4 * i + 2 * r + 1] * inv);
    if (t == 0) {
      lse[(static_cast<int64_t>(b) * H + h) * T + row] =
          sum > 0.f ? (row_max[r] * scale_log2 + log2f(sum)) / kLog2e : -INFINITY;
    }
  }
#else
  (void)p, (void)out, (void)lse, (void)dump;
  __trap();  // launched only on compute capability 9.0, which runs the sm_90a code
#endif
}

}  // namespace sm90_fwd

namespace {
template <int HD, bool kDump, bool kFtz>
int launch(const SkFlashParams& p, void* out, float* lse, const SkFlashForwardDump& dump, cudaStream_t s) {
  using namespace sm90_fwd;
  if (p.head_dim != HD) return SK_KERNEL_BAD_ARG;
  auto* kernel = forward_kernel<HD, kDump, kFtz>;
  constexpr int kSmemBytes = Smem<HD>::kBytes;
  if (cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmemBytes) != cudaSuccess ||
      cudaFuncSetAttribute(kernel, cudaFuncAttributePreferredSharedMemoryCarveout, cudaSharedmemCarveoutMaxShared) !=
          cudaSuccess)
    return SK_KERNEL_LAUNCH_FAILED;
  dim3 grid((p.seq_len + BLOCK_M - 1) / BLOCK_M, p.heads, p.batch);
  kernel<<<grid, kThreads, kSmemBytes, s>>>(p, static_cast<__nv_bfloat16*>(out), lse, dump);
  return cudaGetLastError() == cudaSuccess ? SK_KERNEL_OK : SK_KERNEL_LAUNCH_FAILED;
}
}  // namespace

int launch_forward_sm90(const SkFlashParams& p, void* out, float* lse, cudaStream_t s) {
  if (p.head_dim == 128)
    return p.exp2_ftz ? launch<128, false, true>(p, out, lse, SkFlashForwardDump{}, s)
                      : launch<128, false, false>(p, out, lse, SkFlashForwardDump{}, s);
  return p.exp2_ftz ? launch<64, false, true>(p, out, lse, SkFlashForwardDump{}, s)
                    : launch<64, false, false>(p, out, lse, SkFlashForwardDump{}, s);
}

}  // namespace sk_flash

extern "C" int sk_cuda_flash_forward_sm90_dump(const SkFlashParams* p, void* out, float* lse, SkFlashForwardDump dump,
                                               cudaStream_t s) {
  if (!sk_flash::params_ok(p) || !out || !lse || !dump.s || !dump.k || !dump.q) return SK_KERNEL_BAD_ARG;
  if (p->head_dim != 64 || !sk_flash::device_runs_sm90a()) return SK_KERNEL_BAD_ARG;
  return sk_flash::launch<64, true, false>(*p, out, lse, dump, s);
}

