// Fused SparseK attention forward (attention-spec.md 4.4; declared in sparsek_attention.h).
// One block per (tile of BQ = 64 or 128 queries, head, batch), one warp per 16 query rows. The block runs
// ONE online softmax (registers, base-2, fp32) over a sequence of 64-key chunks:
//   1. window chunks: the contiguous keys [q0 - w + 1, q_last] (w > 0), element mask
//      i - w < j <= i (skipped for chunks inside every row's window), weight 1;
//   2. candidate chunks: the tile's candidate list (candidates.cu), K/V rows GATHERED by index into
//      shared memory, so each gathered row serves all 64 queries of the tile; element mask
//      j in Sel_i (sel_from <= i < sel_to) with m_ij = 1 (saturated), sat(u_j - tau_i) (fractional;
//      fp32, tau_i rounded to fp32) or 0 (dead). The list starts with the tile's uniform keys
//      (cand_uniform): their chunks skip the membership and state tests (ChunkKeys::u_tile).
// The two sets are disjoint per query (window keys are > i - w, Sel_i keys <= i - w).
//   gate_values: logits a_ij; the softmax sum takes exp(a_ij - max), P V takes m_ij exp(a_ij - max);
//                lse over the raw logits.
//   log_mask:    logits a_ij + log m_ij; lse over the masked logits.
// K/V chunks are double buffered with cp.async (flash_tile.cuh helpers); the chunk's key
// positions and ranges are staged in shared memory with it. S = Q K^T and O += P V on mma.sync
// m16n8k16 (bf16 in, fp32 accumulate); P is rounded to bf16 for P V as in the flash kernels.
// kStaged (SkSparsekForwardParams::staged_meta 1 or 2; 11% faster than sync at 16k on an H100): the tile's candidate list
// is copied to shared memory once, so the gathers' row addresses need no global load, and chunk
// c + 1's key metadata (ranges, u) is loaded into registers while chunk c is computed and stored
// to shared memory after it; the sync path (staged_meta 0) issues those dependent global loads (cand, then the
// key's ranges) right before chunk c's compute, in the threads that compute it. Same arithmetic
// (the outputs are bitwise equal; tested). staged_meta 2 (SPARSEK_SPARSEK_FWD=staged3, the default):
// the staged kernel at hd 64 / 64-query tiles compiled for 3 blocks per SM (168 registers, ~100
// bytes of spills, against 191 and 2 blocks), for latency hiding: 1.97 -> 1.74 ms at 16k (H100,
// 2026-12-05); same arithmetic, bitwise equal (tested). (A key split as in the backward, two warps
// per 16 query rows over half a chunk's keys each, measured slower: 1.75 -> 1.90 ms at 16k on an
// H100, 2026-12-06, the per-chunk O rescale and softmax bookkeeping done twice; docs/perf-notes.md.)
// Tested in tests/attention/sparsek/test_sparsek_cuda.cpp against sparsek_attention_forward.
#include <cuda_runtime.h>

#include <cmath>

#include "kernels/attention/flash_tile.cuh"
#include "kernels/attention/sparsek/sparsek_attention.h"
#include "kernels/attention/sparsek/sparsek_tile.cuh"

namespace sk_sparsek {

using namespace sk_flash;


template <int D, int BQ>
constexpr int fwd_smem_bytes() {
  return (BQ + 4 * kBN) * D * 2;  // Q + 2 x (K, V)
}

template <int D, int BQ, bool kStaged, int kMinBlocks>
__global__ void __launch_bounds__(threads_of<BQ>(), kMinBlocks) sparsek_forward_kernel(const SkSparsekForwardParams p,
                                                                           __nv_bfloat16* __restrict__ out,
                                                                           float* __restrict__ lse) {
  constexpr int kBQ = BQ, kThreads = threads_of<BQ>();
  extern __shared__ __align__(128) unsigned char smem[];
  __shared__ ChunkKeys meta[2];
  const SkFlashParams& a = p.attn;
  const int tile = static_cast<int>(gridDim.x - 1 - blockIdx.x);  // longest rows first
  const int h = blockIdx.y, b = blockIdx.z;
  const int T = a.seq_len, W = a.window, H = a.heads;
  const int n_tiles = gridDim.x;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int g = lane >> 2, t = lane & 3;
  const int q0 = tile * kBQ;
  const int q_last = min(q0 + kBQ, T) - 1;

  const int srow = b * p.score_heads + (p.score_heads == 1 ? 0 : h);
  const float* u = p.u + static_cast<int64_t>(srow) * T;
  const double* tau = p.tau + static_cast<int64_t>(srow) * T;
  const SkKeyRange* rg = p.ranges + static_cast<int64_t>(srow) * T;
  const int32_t* cand = p.cand + (static_cast<int64_t>(srow) * n_tiles + tile) * p.cand_cap;
  const int n_cand = min(p.cand_n[static_cast<int64_t>(srow) * n_tiles + tile], p.cand_cap);
  // Candidate chunks [0, n_uniform_chunks) hold uniform keys only (sparsek_attention.h).
  const int n_uniform_chunks = uniform_chunk_count(p, static_cast<int64_t>(srow) * n_tiles + tile, n_cand);

  const __nv_bfloat16* q = static_cast<const __nv_bfloat16*>(a.q) + b * a.q_stride.batch + h * a.q_stride.head;
  const __nv_bfloat16* k = static_cast<const __nv_bfloat16*>(a.k) + b * a.k_stride.batch + h * a.k_stride.head;
  const __nv_bfloat16* v = static_cast<const __nv_bfloat16*>(a.v) + b * a.v_stride.batch + h * a.v_stride.head;

  const uint32_t sQ = smem_u32(smem);
  constexpr uint32_t kTile = kBN * D * 2;
  const uint32_t sK = sQ + kBQ * D * 2, sV = sK + 2 * kTile;
  int32_t* s_cand = reinterpret_cast<int32_t*>(smem + fwd_smem_bytes<D, BQ>());  // kStaged: the tile's list
  if constexpr (kStaged) {
    for (int i = static_cast<int>(threadIdx.x); i < staged_cand_ints(n_cand); i += kThreads)
      s_cand[i] = i < n_cand ? cand[i] : -1;
    __syncthreads();
  }

  // Chunks: n_win window chunks starting at key_lo, then n_cc candidate chunks.
  const int key_lo = W > 0 ? max(0, q0 - W + 1) : 0;
  const int n_win = W > 0 ? (q_last + 1 - key_lo + kBN - 1) / kBN : 0;
  const int n_cc = (n_cand + kBN - 1) / kBN;
  const int n_chunks = n_win + n_cc;

  // Key position of slot r of chunk c (-1: padding).
  auto key_of_chunk = [&](int c, int r) -> int {
    if (c < n_win) {
      const int key = key_lo + c * kBN + r;
      return key <= q_last ? key : -1;
    }
    const int idx = (c - n_win) * kBN + r;
    if constexpr (kStaged) return s_cand[idx];  // padded with -1 (staged_cand_ints)
    return idx < n_cand ? cand[idx] : -1;
  };
  PendingKey pending;  // the metadata of the chunk being loaded, for thread r < kBN
  auto store_meta = [&](int buf) {
    if (threadIdx.x < kBN) pending.store(meta[buf], threadIdx.x, q0, q_last);
  };
  auto load_chunk = [&](int c, int buf) {
    gather_kv_tiles<D, kThreads>(sK + buf * kTile, sV + buf * kTile, k, a.k_stride.row, v, a.v_stride.row,
                                 [&](int r) { return key_of_chunk(c, r); });
    // The key metadata into registers; stored to shared memory now, or with kStaged by
    // store_meta(buf) after the current chunk's compute.
    if (threadIdx.x < kBN) pending.load(key_of_chunk(c, threadIdx.x), c >= n_win, rg, u);
    if constexpr (!kStaged) store_meta(buf);
  };

  load_tile<kBQ, D, kThreads>(sQ, q, a.q_stride.row, q0, T);
  if (n_chunks > 0) {
    load_chunk(0, 0);
    if constexpr (kStaged) store_meta(0);
  }
  cp_async_commit();

  const float scale_log2 = a.softmax_scale * kLog2e;
  const bool log_mask = p.log_mask != 0;
  // gate_values keeps the raw logits s (the scale is applied in the exponent's FMA, and to the
  // running max); log_mask scales them first (it adds log2 m_ij) and multiplies by 1 there.
  const float logit_scale = log_mask ? 1.f : scale_log2;
  float o[D / 8][4];
#pragma unroll
  for (int i = 0; i < D / 8; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.f;
  float row_max[2] = {-INFINITY, -INFINITY}, row_sum[2] = {0.f, 0.f};  // in scaled log2 units
  uint32_t qf[D / 16][4];
  const int row_a = q0 + warp * 16 + g, row_b = row_a + 8;  // this thread's two query rows
  const float tau_r[2] = {row_a < T ? static_cast<float>(tau[row_a]) : 0.f,
                          row_b < T ? static_cast<float>(tau[row_b]) : 0.f};

  if (n_chunks == 0) {  // cannot happen for valid rows (every query sees itself or Sel_i); still load Q
    cp_async_wait<0>();
    __syncthreads();
  }
  for (int c = 0; c < n_chunks; ++c) {
    const int buf = c & 1;
    cp_async_wait<0>();
    __syncthreads();
    if (c + 1 < n_chunks) load_chunk(c + 1, buf ^ 1);
    cp_async_commit();
    if (c == 0) {
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk) load_a<D>(qf[kk], sQ, warp * 16, kk * 16, lane);
    }
    const uint32_t sKb = sK + buf * kTile, sVb = sV + buf * kTile;
    const ChunkKeys& m = meta[buf];  // (kStaged: chunk c + 1's goes to meta[buf ^ 1] after the compute)
    const bool window_chunk = c < n_win;

    float s[kBN / 8][4];
#pragma unroll
    for (int j = 0; j < kBN / 8; ++j) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.f;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
#pragma unroll
      for (int j = 0; j < kBN / 16; ++j) {
        uint32_t bf[4];
        load_b<D>(bf, sKb, j * 16, kk * 16, lane);
        mma_bf16(s[2 * j], qf[kk], bf[0], bf[1]);
        mma_bf16(s[2 * j + 1], qf[kk], bf[2], bf[3]);
      }
    }

    // Logits with the element masks (gate_values: raw; log_mask: scaled base-2 plus log2 m_ij;
    // -inf outside); gate[] holds m_ij for gate_values. A window chunk inside every row's window
    // (keys in (q_last - W, q0]) needs no mask at all; a chunk of uniform candidate keys needs no
    // membership or state test (one saturated add per element).
    const int chunk_key0 = key_lo + c * kBN;
    const bool unmasked = window_chunk && chunk_key0 + kBN - 1 <= q0 && chunk_key0 > q_last - W;
    const bool uniform = !window_chunk && c - n_win < n_uniform_chunks;
    float gate[kBN / 8][4];
    if (unmasked) {
#pragma unroll
      for (int j = 0; j < kBN / 8; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          if (log_mask) s[j][e] *= scale_log2;
          gate[j][e] = 1.f;
        }
    } else if (uniform) {
#pragma unroll
      for (int j = 0; j < kBN / 8; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const float mw = __saturatef(m.u_tile[j * 8 + 2 * t + (e & 1)] - tau_r[e < 2 ? 0 : 1]);
          float z = s[j][e];
          if (log_mask) z = mw > 0.f ? __fadd_rn(z * scale_log2, log2f(mw)) : -INFINITY;  // _rn: no FMA contraction
          s[j][e] = z;
          gate[j][e] = log_mask ? 1.f : mw;
        }
    } else {
#pragma unroll
      for (int j = 0; j < kBN / 8; ++j) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int slot = j * 8 + 2 * t + (e & 1);
          const int row = e < 2 ? row_a : row_b;
          const int key = m.key[slot];
          float z = -INFINITY, mw = 0.f;
          if (key >= 0 && row < T) {
            if (window_chunk) {
              if (key <= row && key > row - W) z = log_mask ? s[j][e] * scale_log2 : s[j][e], mw = 1.f;
            } else if (m.sel_from[slot] <= row && row < m.sel_to[slot]) {
              mw = ranged_mask(m, slot, row, tau_r[e < 2 ? 0 : 1]);
              z = s[j][e];
              if (log_mask) z = mw > 0.f ? __fadd_rn(z * scale_log2, log2f(mw)) : -INFINITY;  // _rn: no FMA contraction
            }
          }
          s[j][e] = z;
          gate[j][e] = log_mask ? 1.f : mw;
        }
      }
    }

    // Online softmax: new running max, rescale O and the running sums.
    float tile_max[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int j = 0; j < kBN / 8; ++j) {
      tile_max[0] = fmaxf(tile_max[0], fmaxf(s[j][0], s[j][1]));
      tile_max[1] = fmaxf(tile_max[1], fmaxf(s[j][2], s[j][3]));
    }
    float corr[2], m_use[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(0xffffffff, tile_max[r], 1));
      tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(0xffffffff, tile_max[r], 2)) * logit_scale;
      const float new_max = fmaxf(row_max[r], tile_max[r]);
      m_use[r] = new_max == -INFINITY ? 0.f : new_max;
      corr[r] = softmax_exp2<true>(row_max[r] - m_use[r]);  // 0 while row_max = -inf
      row_max[r] = new_max;
      row_sum[r] *= corr[r];
    }
#pragma unroll
    for (int i = 0; i < D / 8; ++i) {
      o[i][0] *= corr[0];
      o[i][1] *= corr[0];
      o[i][2] *= corr[1];
      o[i][3] *= corr[1];
    }
    uint32_t pf[kBN / 16][4];
#pragma unroll
    for (int j = 0; j < kBN / 8; ++j) {
      const float p0 = softmax_exp2<true>(fmaf(s[j][0], logit_scale, -m_use[0]));
      const float p1 = softmax_exp2<true>(fmaf(s[j][1], logit_scale, -m_use[0]));
      const float p2 = softmax_exp2<true>(fmaf(s[j][2], logit_scale, -m_use[1]));
      const float p3 = softmax_exp2<true>(fmaf(s[j][3], logit_scale, -m_use[1]));
      row_sum[0] += p0 + p1;
      row_sum[1] += p2 + p3;
      pf[j / 2][(j & 1) * 2 + 0] = pack_bf16(p0 * gate[j][0], p1 * gate[j][1]);
      pf[j / 2][(j & 1) * 2 + 1] = pack_bf16(p2 * gate[j][2], p3 * gate[j][3]);
    }

    // O += P V.
#pragma unroll
    for (int kk = 0; kk < kBN / 16; ++kk) {
#pragma unroll
      for (int i = 0; i < D / 16; ++i) {
        uint32_t bf[4];
        load_b_trans<D>(bf, sVb, kk * 16, i * 16, lane);
        mma_bf16(o[2 * i], pf[kk], bf[0], bf[1]);
        mma_bf16(o[2 * i + 1], pf[kk], bf[2], bf[3]);
      }
    }
    if constexpr (kStaged) {
      if (c + 1 < n_chunks) store_meta(buf ^ 1);  // read after the next iteration's barrier
    }
  }

  // Normalise and write O ((B, T, H, D)) and the natural-log LSE ((B, H, T)).
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float sum = row_sum[r];
    sum += __shfl_xor_sync(0xffffffff, sum, 1);
    sum += __shfl_xor_sync(0xffffffff, sum, 2);
    const float inv = sum > 0.f ? 1.f / sum : 0.f;
    const int row = r == 0 ? row_a : row_b;
    if (row >= T) continue;
    __nv_bfloat16* orow = out + ((static_cast<int64_t>(b) * T + row) * H + h) * D;
#pragma unroll
    for (int i = 0; i < D / 8; ++i)
      *reinterpret_cast<uint32_t*>(orow + i * 8 + 2 * t) = pack_bf16(o[i][2 * r] * inv, o[i][2 * r + 1] * inv);
    if (t == 0)
      lse[(static_cast<int64_t>(b) * H + h) * T + row] = sum > 0.f ? (row_max[r] + log2f(sum)) / kLog2e : -INFINITY;
  }
}

// kMinBlocks: blocks per SM the registers must allow (3: <= 168 per thread at 128 threads).
template <int D, int BQ, bool kStaged, int kMinBlocks = 1>
int launch_forward(const SkSparsekForwardParams& p, void* out, float* lse, cudaStream_t s) {
  // kStaged: + the candidate list (cand_cap ints) after the tiles.
  const int smem = fwd_smem_bytes<D, BQ>() + (kStaged ? staged_cand_ints(p.cand_cap) * 4 : 0);
  auto* kernel = sparsek_forward_kernel<D, BQ, kStaged, kMinBlocks>;
  if (cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem) != cudaSuccess)
    return SK_KERNEL_LAUNCH_FAILED;
  dim3 grid((p.attn.seq_len + BQ - 1) / BQ, p.attn.heads, p.attn.batch);
  kernel<<<grid, threads_of<BQ>(), smem, s>>>(p, static_cast<__nv_bfloat16*>(out), lse);
  return cudaGetLastError() == cudaSuccess ? SK_KERNEL_OK : SK_KERNEL_LAUNCH_FAILED;
}

template <int BQ>
int launch_forward_tile(const SkSparsekForwardParams& p, void* out, float* lse, cudaStream_t s) {
  if (p.staged_meta && p.cand_cap <= kMaxStagedCand) {  // else the default (shared memory)
    if (p.attn.head_dim != 64) return launch_forward<128, BQ, true>(p, out, lse, s);
    if constexpr (BQ == 64) {
      if (p.staged_meta == 2) return launch_forward<64, BQ, true, 3>(p, out, lse, s);  // staged3
    }
    return launch_forward<64, BQ, true>(p, out, lse, s);
  }
  return p.attn.head_dim == 64 ? launch_forward<64, BQ, false>(p, out, lse, s)
                               : launch_forward<128, BQ, false>(p, out, lse, s);
}

}  // namespace sk_sparsek

extern "C" int sk_cuda_sparsek_forward(const SkSparsekForwardParams* p, void* out, float* lse, cudaStream_t s) {
  if (!p || !sk_flash::params_ok(&p->attn) || !out || !lse) return SK_KERNEL_BAD_ARG;
  if (p->attn.batch == 0 || p->attn.seq_len == 0) return SK_KERNEL_OK;
  if (!p->u || !p->tau || !p->ranges || !p->cand || !p->cand_n || p->cand_cap < 1 || p->k < 1) return SK_KERNEL_BAD_ARG;
  if (p->score_heads != 1 && p->score_heads != p->attn.heads) return SK_KERNEL_BAD_ARG;
  if (!sk_sparsek::gather_strides_ok(p->attn)) return SK_KERNEL_BAD_ARG;
  if (p->tile_q == SK_SPARSEK_TILE_Q) return sk_sparsek::launch_forward_tile<SK_SPARSEK_TILE_Q>(*p, out, lse, s);
  if (p->tile_q == SK_SPARSEK_TILE_Q_WIDE) return sk_sparsek::launch_forward_tile<SK_SPARSEK_TILE_Q_WIDE>(*p, out, lse, s);
  return SK_KERNEL_BAD_ARG;
}
