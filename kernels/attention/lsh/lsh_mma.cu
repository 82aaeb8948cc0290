// Tensor-core chunk kernels of LSH attention (lsh_mma.h): mma.sync m16n8k16 (bf16 in, fp32
// accumulate) with the flash kernels' tile helpers (flash_tile.cuh: swizzled shared-memory tiles,
// cp.async, ldmatrix).
//
// A block owns 64 rows (4 warps x 16) of one chunk of one (b, h) row of the sorted sequence and
// streams the other side in tiles of 64 entries, gathering each entry's row of q (and v or dout)
// from its original position with cp.async (rows of missing entries are zero-filled).
//   forward:        rows = query entries, streamed = the key slots of the previous chunk (cyclic)
//                   and of its own; S = Q Q_k^T then x kscale_j per column (k = q kscale is never
//                   rounded: q is bf16 exactly), masks by original position, online softmax
//                   (fp32; exp2 as one ex2.approx.ftz, as the flash kernels), O += P V with P in bf16.
//   backward (q):   rows = query entries; P = exp(S - lse), dP = dO V^T, dS = P w (dP - gout) on
//                   unmasked keys, dq += (dS kscale_j) Q_k.
//   backward (k):   rows = key slots, streamed = the queries of its own chunk and of the next one
//                   (cyclic); S^T = Q_k Q^T kscale_j, dP^T = V dO^T, dv += (P w)^T-rows dO,
//                   dk += dS Q.
// Every row's output is written once by the block owning it (no atomics).
#include "kernels/attention/lsh/lsh_mma.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>

#include "kernels/attention/flash_tile.cuh"

namespace {

using namespace sk_flash;
using bf16 = __nv_bfloat16;

constexpr int kM = 64;  // rows per block
constexpr int kN = 64;  // streamed entries per tile
constexpr int kWarps = kM / 16;
constexpr int kThr = kWarps * 32;
constexpr float kCausalM = -1e9f;
constexpr float kSelfM = -1e5f;

template <int D>
constexpr int tile_bytes() {
  return kM * D * 2;
}
static_assert(kM == kN, "tiles of streamed and owned rows share one size");
static_assert(4 * tile_bytes<128>() <= 227 * 1024, "backward shared memory (D 128)");

__device__ __forceinline__ const bf16* q_base(const SkLshParams& p, int bh) {
  return static_cast<const bf16*>(p.q) + int64_t(bh / p.H) * p.q_sb + int64_t(bh % p.H) * p.q_sh;
}
__device__ __forceinline__ const bf16* v_base(const SkLshParams& p, int bh) {
  return static_cast<const bf16*>(p.v) + int64_t(bh / p.H) * p.v_sb + int64_t(bh % p.H) * p.v_sh;
}

// Row r of a 64-row swizzled tile from base + pos[r] * stride; pos[r] < 0: a zero row.
template <int D>
__device__ __forceinline__ void gather_tile(uint32_t tile, const bf16* base, int64_t stride, const int* pos) {
  constexpr int kChunks = D / 8, kTotal = kM * kChunks;
  static_assert(kTotal % kThr == 0, "tile chunks divide evenly among threads");
#pragma unroll
  for (int i = 0; i < kTotal / kThr; ++i) {
    const int c = i * kThr + int(threadIdx.x);
    const int r = c / kChunks, cc = c % kChunks;
    const int pos_r = pos[r];
    const bool valid = pos_r >= 0;
    cp_async_16(tile + swz<D>(r, cc * 8), base + (valid ? int64_t(pos_r) * stride : 0) + cc * 8, valid);
  }
}

struct Geometry {
  int64_t E, nch, ca, cb, ra;  // entries, chunks, this chunk's slots [ca, cb), this block's first row slot
  bool ok;
};
__device__ __forceinline__ Geometry geometry(const SkLshParams& p) {
  Geometry G;
  G.E = int64_t(p.rounds) * p.T;
  G.nch = (G.E + p.chunk - 1) / p.chunk;
  const int tiles = (p.chunk + kM - 1) / kM;
  const int64_t c = blockIdx.x / tiles;
  G.ca = c * p.chunk;
  G.cb = G.ca + p.chunk < G.E ? G.ca + p.chunk : G.E;
  G.ra = G.ca + int64_t(blockIdx.x % tiles) * kM;
  G.ok = G.ra < G.cb;
  return G;
}
// Slots [a, b) of chunk (c + delta) mod nch, or empty without look-back.
__device__ __forceinline__ void other_chunk(const SkLshParams& p, const Geometry& G, int64_t delta, int64_t& a,
                                            int64_t& b) {
  a = b = 0;
  if (!p.look_back || G.nch <= 1) return;
  const int64_t c = (G.ca / p.chunk + G.nch + delta) % G.nch;
  a = c * p.chunk;
  b = a + p.chunk < G.E ? a + p.chunk : G.E;
}

// Packs C fragments s[2kk], s[2kk+1] (16 rows x 16 cols) into an A fragment.
__device__ __forceinline__ void pack_a(uint32_t (&a)[4], const float (&s0)[4], const float (&s1)[4]) {
  a[0] = pack_bf16(s0[0], s0[1]);
  a[1] = pack_bf16(s0[2], s0[3]);
  a[2] = pack_bf16(s1[0], s1[1]);
  a[3] = pack_bf16(s1[2], s1[3]);
}

// ---- forward -----------------------------------------------------------------------------------
template <int D>
__global__ void __launch_bounds__(kThr) forward_mma_kernel(const SkLshParams p, const float* __restrict__ kscale,
                                                           const int32_t* __restrict__ order, float* __restrict__ o_rounds,
                                                           float* __restrict__ lse_out) {
  extern __shared__ __align__(128) unsigned char smem[];
  __shared__ int qpos_s[kM], qent_s[kM], kpos_s[kN];
  __shared__ float kscl_s[kN];
  const Geometry G = geometry(p);
  if (!G.ok) return;
  const int bh = blockIdx.y, T = p.T, tid = threadIdx.x;
  int64_t pa, pb;
  other_chunk(p, G, -1, pa, pb);
  const int64_t nprev = pb - pa, ncols = nprev + (G.cb - G.ca);
  const int32_t* ord = order + int64_t(bh) * G.E;
  const float* ks = kscale + int64_t(bh) * T;
  const bf16 *qb = q_base(p, bh), *vb = v_base(p, bh);
  const uint32_t sQ = smem_u32(smem), sK = sQ + tile_bytes<D>(), sV = sK + tile_bytes<D>();
  const int warp = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3, r0 = warp * 16;
  if (tid < kM) {
    const int64_t slot = G.ra + tid;
    const int e = slot < G.cb ? ord[slot] : -1;
    qent_s[tid] = e;
    qpos_s[tid] = e >= 0 ? e % T : -1;
  }
  __syncthreads();
  gather_tile<D>(sQ, qb, p.q_st, qpos_s);
  cp_async_commit();
  const int qp[2] = {qpos_s[r0 + g], qpos_s[r0 + g + 8]};
  float o[D / 8][4];
#pragma unroll
  for (int i = 0; i < D / 8; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.f;
  float row_max[2] = {-INFINITY, -INFINITY}, row_sum[2] = {0.f, 0.f};
  uint32_t qf[D / 16][4];
  for (int64_t x0 = 0; x0 < ncols; x0 += kN) {
    __syncthreads();  // the previous tile's K/V and positions are no longer read
    if (tid < kN) {
      const int64_t x = x0 + tid;
      int kp = -1;
      float sc = 0.f;
      if (x < ncols) {
        kp = ord[x < nprev ? pa + x : G.ca + (x - nprev)] % T;
        sc = ks[kp];
      }
      kpos_s[tid] = kp;
      kscl_s[tid] = sc;
    }
    __syncthreads();
    gather_tile<D>(sK, qb, p.q_st, kpos_s);
    gather_tile<D>(sV, vb, p.v_st, kpos_s);
    cp_async_commit();
    cp_async_wait<0>();
    __syncthreads();
    if (x0 == 0) {
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk) load_a<D>(qf[kk], sQ, r0, kk * 16, lane);
    }
    float s[kN / 8][4];
#pragma unroll
    for (int j = 0; j < kN / 8; ++j) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.f;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
#pragma unroll
      for (int j = 0; j < kN / 16; ++j) {
        uint32_t bf[4];
        load_b<D>(bf, sK, j * 16, kk * 16, lane);
        mma_bf16(s[2 * j], qf[kk], bf[0], bf[1]);
        mma_bf16(s[2 * j + 1], qf[kk], bf[2], bf[3]);
      }
    }
    float tile_max[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int j = 0; j < kN / 8; ++j) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int col = j * 8 + 2 * t + (e & 1);
        const int kp = kpos_s[col], q_pos = qp[e >> 1];
        float a = s[j][e] * kscl_s[col];
        if (kp < 0) a = -INFINITY;
        else if (kp > q_pos) a = kCausalM;
        else if (kp == q_pos) a = kSelfM;
        s[j][e] = a;
        tile_max[e >> 1] = fmaxf(tile_max[e >> 1], a);
      }
    }
    float corr[2], m_use[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(0xffffffffu, tile_max[r], 1));
      tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(0xffffffffu, tile_max[r], 2));
      const float new_max = fmaxf(row_max[r], tile_max[r]);
      m_use[r] = new_max == -INFINITY ? 0.f : new_max;
      corr[r] = row_max[r] == -INFINITY ? 0.f : softmax_exp2<true>((row_max[r] - m_use[r]) * kLog2e);
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
    uint32_t pf[kN / 16][4];
#pragma unroll
    for (int j = 0; j < kN / 8; ++j) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        s[j][e] = softmax_exp2<true>((s[j][e] - m_use[e >> 1]) * kLog2e);
        row_sum[e >> 1] += s[j][e];
      }
    }
#pragma unroll
    for (int kk = 0; kk < kN / 16; ++kk) pack_a(pf[kk], s[2 * kk], s[2 * kk + 1]);
#pragma unroll
    for (int kk = 0; kk < kN / 16; ++kk) {
#pragma unroll
      for (int i = 0; i < D / 16; ++i) {
        uint32_t bf[4];
        load_b_trans<D>(bf, sV, kk * 16, i * 16, lane);
        mma_bf16(o[2 * i], pf[kk], bf[0], bf[1]);
        mma_bf16(o[2 * i + 1], pf[kk], bf[2], bf[3]);
      }
    }
  }
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float sum = row_sum[r];
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
    sum += __shfl_xor_sync(0xffffffffu, sum, 2);
    const int e = qent_s[r0 + g + 8 * r];
    if (e < 0) continue;
    const float inv = 1.f / sum;
    float* orow = o_rounds + (int64_t(bh) * G.E + e) * D;
#pragma unroll
    for (int i = 0; i < D / 8; ++i)
      *reinterpret_cast<float2*>(orow + i * 8 + 2 * t) = make_float2(o[i][2 * r] * inv, o[i][2 * r + 1] * inv);
    if (t == 0) lse_out[int64_t(bh) * G.E + e] = row_max[r] + logf(sum);
  }
}

// ---- backward, query side ------------------------------------------------------------------------
template <int D>
__global__ void __launch_bounds__(kThr) backward_query_mma_kernel(const SkLshParams p, const float* __restrict__ kscale,
                                                                  const int32_t* __restrict__ order,
                                                                  const float* __restrict__ lse,
                                                                  const bf16* __restrict__ dout,
                                                                  const float* __restrict__ w,
                                                                  const float* __restrict__ gout,
                                                                  float* __restrict__ dq_e) {
  extern __shared__ __align__(128) unsigned char smem[];
  __shared__ int qpos_s[kM], qent_s[kM], kpos_s[kN];
  __shared__ float qlse_s[kM], qw_s[kM], qgo_s[kM], kscl_s[kN];
  const Geometry G = geometry(p);
  if (!G.ok) return;
  const int bh = blockIdx.y, T = p.T, tid = threadIdx.x;
  int64_t pa, pb;
  other_chunk(p, G, -1, pa, pb);
  const int64_t nprev = pb - pa, ncols = nprev + (G.cb - G.ca);
  const int32_t* ord = order + int64_t(bh) * G.E;
  const float* ks = kscale + int64_t(bh) * T;
  const bf16 *qb = q_base(p, bh), *vb = v_base(p, bh), *gb = dout + int64_t(bh) * T * D;
  const uint32_t sQ = smem_u32(smem), sG = sQ + tile_bytes<D>(), sK = sG + tile_bytes<D>(), sV = sK + tile_bytes<D>();
  const int warp = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3, r0 = warp * 16;
  if (tid < kM) {
    const int64_t slot = G.ra + tid;
    const int e = slot < G.cb ? ord[slot] : -1;
    const int pos = e >= 0 ? e % T : -1;
    qent_s[tid] = e;
    qpos_s[tid] = pos;
    qlse_s[tid] = e >= 0 ? lse[int64_t(bh) * G.E + e] : 0.f;
    qw_s[tid] = e >= 0 ? w[int64_t(bh) * G.E + e] : 0.f;
    qgo_s[tid] = e >= 0 ? gout[int64_t(bh) * T + pos] : 0.f;
  }
  __syncthreads();
  gather_tile<D>(sQ, qb, p.q_st, qpos_s);
  gather_tile<D>(sG, gb, D, qpos_s);
  cp_async_commit();
  int qp[2];
  float ql[2], qw[2], qg[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int row = r0 + g + 8 * r;
    qp[r] = qpos_s[row], ql[r] = qlse_s[row], qw[r] = qw_s[row], qg[r] = qgo_s[row];
  }
  float dq[D / 8][4];
#pragma unroll
  for (int i = 0; i < D / 8; ++i) dq[i][0] = dq[i][1] = dq[i][2] = dq[i][3] = 0.f;
  for (int64_t x0 = 0; x0 < ncols; x0 += kN) {
    __syncthreads();
    if (tid < kN) {
      const int64_t x = x0 + tid;
      int kp = -1;
      float sc = 0.f;
      if (x < ncols) {
        kp = ord[x < nprev ? pa + x : G.ca + (x - nprev)] % T;
        sc = ks[kp];
      }
      kpos_s[tid] = kp;
      kscl_s[tid] = sc;
    }
    __syncthreads();
    gather_tile<D>(sK, qb, p.q_st, kpos_s);
    gather_tile<D>(sV, vb, p.v_st, kpos_s);
    cp_async_commit();
    cp_async_wait<0>();
    __syncthreads();
    float s[kN / 8][4], dp[kN / 8][4];
#pragma unroll
    for (int j = 0; j < kN / 8; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) s[j][e] = dp[j][e] = 0.f;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      uint32_t qa[4], ga[4];
      load_a<D>(qa, sQ, r0, kk * 16, lane);
      load_a<D>(ga, sG, r0, kk * 16, lane);
#pragma unroll
      for (int j = 0; j < kN / 16; ++j) {
        uint32_t bk[4], bv[4];
        load_b<D>(bk, sK, j * 16, kk * 16, lane);
        load_b<D>(bv, sV, j * 16, kk * 16, lane);
        mma_bf16(s[2 * j], qa, bk[0], bk[1]);
        mma_bf16(s[2 * j + 1], qa, bk[2], bk[3]);
        mma_bf16(dp[2 * j], ga, bv[0], bv[1]);
        mma_bf16(dp[2 * j + 1], ga, bv[2], bv[3]);
      }
    }
    // dS' = P w (dP - gout) kscale_j on unmasked keys (masked logits are constants).
#pragma unroll
    for (int j = 0; j < kN / 8; ++j) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int col = j * 8 + 2 * t + (e & 1), r = e >> 1;
        const int kp = kpos_s[col];
        float ds = 0.f;
        if (kp >= 0 && kp < qp[r]) {
          const float sc = kscl_s[col];
          ds = __expf(s[j][e] * sc - ql[r]) * qw[r] * (dp[j][e] - qg[r]) * sc;
        }
        s[j][e] = ds;
      }
    }
    uint32_t dsf[kN / 16][4];
#pragma unroll
    for (int kk = 0; kk < kN / 16; ++kk) pack_a(dsf[kk], s[2 * kk], s[2 * kk + 1]);
#pragma unroll
    for (int kk = 0; kk < kN / 16; ++kk) {
#pragma unroll
      for (int i = 0; i < D / 16; ++i) {
        uint32_t bf[4];
        load_b_trans<D>(bf, sK, kk * 16, i * 16, lane);
        mma_bf16(dq[2 * i], dsf[kk], bf[0], bf[1]);
        mma_bf16(dq[2 * i + 1], dsf[kk], bf[2], bf[3]);
      }
    }
  }
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int e = qent_s[r0 + g + 8 * r];
    if (e < 0) continue;
    float* row = dq_e + (int64_t(bh) * G.E + e) * D;
#pragma unroll
    for (int i = 0; i < D / 8; ++i)
      *reinterpret_cast<float2*>(row + i * 8 + 2 * t) = make_float2(dq[i][2 * r], dq[i][2 * r + 1]);
  }
}

// ---- backward, key side --------------------------------------------------------------------------
template <int D>
__global__ void __launch_bounds__(kThr) backward_key_mma_kernel(const SkLshParams p, const float* __restrict__ kscale,
                                                                const int32_t* __restrict__ order,
                                                                const float* __restrict__ lse,
                                                                const bf16* __restrict__ dout,
                                                                const float* __restrict__ w,
                                                                const float* __restrict__ gout,
                                                                float* __restrict__ dk_e, float* __restrict__ dv_e) {
  extern __shared__ __align__(128) unsigned char smem[];
  __shared__ int kpos_s[kM], kent_s[kM], qpos_s[kN];
  __shared__ float kscl_s[kM], qlse_s[kN], qw_s[kN], qgo_s[kN];
  const Geometry G = geometry(p);
  if (!G.ok) return;
  const int bh = blockIdx.y, T = p.T, tid = threadIdx.x;
  int64_t na, nb;
  other_chunk(p, G, +1, na, nb);
  const int64_t nown = G.cb - G.ca, ncols = nown + (nb - na);
  const int32_t* ord = order + int64_t(bh) * G.E;
  const float* ks = kscale + int64_t(bh) * T;
  const bf16 *qb = q_base(p, bh), *vb = v_base(p, bh), *gb = dout + int64_t(bh) * T * D;
  const uint32_t sK = smem_u32(smem), sV = sK + tile_bytes<D>(), sQ = sV + tile_bytes<D>(), sG = sQ + tile_bytes<D>();
  const int warp = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3, r0 = warp * 16;
  if (tid < kM) {
    const int64_t slot = G.ra + tid;
    const int e = slot < G.cb ? ord[slot] : -1;
    const int pos = e >= 0 ? e % T : -1;
    kent_s[tid] = e;
    kpos_s[tid] = pos;
    kscl_s[tid] = e >= 0 ? ks[pos] : 0.f;
  }
  __syncthreads();
  gather_tile<D>(sK, qb, p.q_st, kpos_s);
  gather_tile<D>(sV, vb, p.v_st, kpos_s);
  cp_async_commit();
  int kp[2];
  float ksc[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) kp[r] = kpos_s[r0 + g + 8 * r], ksc[r] = kscl_s[r0 + g + 8 * r];
  float dk[D / 8][4], dv[D / 8][4];
#pragma unroll
  for (int i = 0; i < D / 8; ++i)
#pragma unroll
    for (int e = 0; e < 4; ++e) dk[i][e] = dv[i][e] = 0.f;
  for (int64_t x0 = 0; x0 < ncols; x0 += kN) {
    __syncthreads();
    if (tid < kN) {
      const int64_t x = x0 + tid;
      int qpos = -1;
      float l = 0.f, ww = 0.f, go = 0.f;
      if (x < ncols) {
        const int qe = ord[x < nown ? G.ca + x : na + (x - nown)];
        qpos = qe % T;
        l = lse[int64_t(bh) * G.E + qe];
        ww = w[int64_t(bh) * G.E + qe];
        go = gout[int64_t(bh) * T + qpos];
      }
      qpos_s[tid] = qpos;
      qlse_s[tid] = l;
      qw_s[tid] = ww;
      qgo_s[tid] = go;
    }
    __syncthreads();
    gather_tile<D>(sQ, qb, p.q_st, qpos_s);
    gather_tile<D>(sG, gb, D, qpos_s);
    cp_async_commit();
    cp_async_wait<0>();
    __syncthreads();
    float s[kN / 8][4], dp[kN / 8][4];
#pragma unroll
    for (int j = 0; j < kN / 8; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) s[j][e] = dp[j][e] = 0.f;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      uint32_t ka[4], va[4];
      load_a<D>(ka, sK, r0, kk * 16, lane);
      load_a<D>(va, sV, r0, kk * 16, lane);
#pragma unroll
      for (int j = 0; j < kN / 16; ++j) {
        uint32_t bq[4], bg[4];
        load_b<D>(bq, sQ, j * 16, kk * 16, lane);
        load_b<D>(bg, sG, j * 16, kk * 16, lane);
        mma_bf16(s[2 * j], ka, bq[0], bq[1]);
        mma_bf16(s[2 * j + 1], ka, bq[2], bq[3]);
        mma_bf16(dp[2 * j], va, bg[0], bg[1]);
        mma_bf16(dp[2 * j + 1], va, bg[2], bg[3]);
      }
    }
    // Row = key, column = query: PW = P w (every key slot, masked ones included, feeds dv);
    // dS = PW (dP - gout) on unmasked pairs (key position < query position).
#pragma unroll
    for (int j = 0; j < kN / 8; ++j) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int col = j * 8 + 2 * t + (e & 1), r = e >> 1;
        const int q_pos = qpos_s[col];
        float pw = 0.f, ds = 0.f;
        if (q_pos >= 0) {
          const float a = kp[r] > q_pos ? kCausalM : (kp[r] == q_pos ? kSelfM : s[j][e] * ksc[r]);
          pw = __expf(a - qlse_s[col]) * qw_s[col];
          if (kp[r] < q_pos) ds = pw * (dp[j][e] - qgo_s[col]);
        }
        s[j][e] = pw;
        dp[j][e] = ds;
      }
    }
    uint32_t pwf[kN / 16][4], dsf[kN / 16][4];
#pragma unroll
    for (int kk = 0; kk < kN / 16; ++kk) {
      pack_a(pwf[kk], s[2 * kk], s[2 * kk + 1]);
      pack_a(dsf[kk], dp[2 * kk], dp[2 * kk + 1]);
    }
#pragma unroll
    for (int kk = 0; kk < kN / 16; ++kk) {
#pragma unroll
      for (int i = 0; i < D / 16; ++i) {
        uint32_t bg[4], bq[4];
        load_b_trans<D>(bg, sG, kk * 16, i * 16, lane);
        load_b_trans<D>(bq, sQ, kk * 16, i * 16, lane);
        mma_bf16(dv[2 * i], pwf[kk], bg[0], bg[1]);
        mma_bf16(dv[2 * i + 1], pwf[kk], bg[2], bg[3]);
        mma_bf16(dk[2 * i], dsf[kk], bq[0], bq[1]);
        mma_bf16(dk[2 * i + 1], dsf[kk], bq[2], bq[3]);
      }
    }
  }
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int e = kent_s[r0 + g + 8 * r];
    if (e < 0) continue;
    float* krow = dk_e + (int64_t(bh) * G.E + e) * D;
    float* vrow = dv_e + (int64_t(bh) * G.E + e) * D;
#pragma unroll
    for (int i = 0; i < D / 8; ++i) {
      *reinterpret_cast<float2*>(krow + i * 8 + 2 * t) = make_float2(dk[i][2 * r], dk[i][2 * r + 1]);
      *reinterpret_cast<float2*>(vrow + i * 8 + 2 * t) = make_float2(dv[i][2 * r], dv[i][2 * r + 1]);
    }
  }
}


// ---- backward, fused (v2): one block per chunk -----------------------------------------------------
// Block (chunk c, bh): 128 query rows (8 warps x 16; the whole chunk, chunk <= 128) against the
// <= 256 key slots of chunk c-1 (cyclic) and c, streamed in 64-slot tiles (double-buffered
// cp.async gathers). Per tile: S = Q K^T (x kscale_j), dP = dO V^T, PW = P w, dS = PW (dP - gout)
// on unmasked pairs; dq += (dS kscale_j) K in registers; PW and dS go to shared memory (bf16) and
// the tile's dv = PW^T dO, dk = dS^T Q (complete over this block's queries) are written as this
// block's partial for those key entries (bf16: half the traffic of fp32 here and in the final
// pass): keys of chunk c into the "own" buffers, keys of chunk c-1 into the "next" ones (each key
// entry gets exactly one of each, from blocks c and c+1; no atomics, summed in a fixed order by
// the final pass). One recomputation of P instead of two.
constexpr int kBM = 128;             // query rows per fused block (a whole chunk)
constexpr int kBThr = (kBM / 16) * 32;  // 256
constexpr int kBCols = 2 * kBM;       // key slots per block at most
static_assert(kBThr == kBCols, "one thread per key slot when loading the key positions");
static_assert(kBThr / 32 == 2 * (kN / 16), "dk/dv phase: one (16-key x D) job of dv or dk per warp");

template <int D>
constexpr int fused_smem_bytes() {
  return 2 * kBM * D * 2 + 4 * kN * D * 2 + 2 * kBM * kN * 2;
}
static_assert(fused_smem_bytes<128>() + 4096 <= 227 * 1024, "fused backward shared memory (D 128)");

template <int ROWS, int D, int THREADS>
__device__ __forceinline__ void gather_rows(uint32_t tile, const bf16* base, int64_t stride, const int* pos) {
  constexpr int kChunks = D / 8, kTotal = ROWS * kChunks;
  static_assert(kTotal % THREADS == 0, "tile chunks divide evenly among threads");
#pragma unroll
  for (int i = 0; i < kTotal / THREADS; ++i) {
    const int c = i * THREADS + int(threadIdx.x);
    const int r = c / kChunks, cc = c % kChunks;
    const int pos_r = pos[r];
    const bool valid = pos_r >= 0;
    cp_async_16(tile + swz<D>(r, cc * 8), base + (valid ? int64_t(pos_r) * stride : 0) + cc * 8, valid);
  }
}

template <int D>
__global__ void __launch_bounds__(kBThr, D == 64 ? 2 : 1)
    backward_fused_mma_kernel(const SkLshParams p, const float* __restrict__ kscale, const int32_t* __restrict__ order,
                              const float* __restrict__ lse, const bf16* __restrict__ dout,
                              const bf16* __restrict__ out, bf16* __restrict__ dq_e,
                              bf16* __restrict__ dk_own, bf16* __restrict__ dv_own, bf16* __restrict__ dk_next,
                              bf16* __restrict__ dv_next) {
  extern __shared__ __align__(128) unsigned char smem[];
  __shared__ int qpos_s[kBM], qent_s[kBM], kent_s[kBCols];
  __shared__ float qlse_s[kBM], qw_s[kBM], qgo_s[kBM];
  __shared__ __align__(8) int kpos_s[kBCols];  // read as pairs (int2, float2) per thread
  __shared__ __align__(8) float kscl_s[kBCols];
  const int bh = blockIdx.y, T = p.T, tid = threadIdx.x;
  const int64_t E = int64_t(p.rounds) * T, nch = (E + p.chunk - 1) / p.chunk;
  const int64_t c = blockIdx.x, ca = c * p.chunk, cb = ca + p.chunk < E ? ca + p.chunk : E;
  int64_t pa = 0, pb = 0;
  if (p.look_back && nch > 1) {
    pa = ((c + nch - 1) % nch) * p.chunk;
    pb = pa + p.chunk < E ? pa + p.chunk : E;
  }
  const int nprev = int(pb - pa), ncols = nprev + int(cb - ca);
  const int32_t* ord = order + int64_t(bh) * E;
  const float* ks = kscale + int64_t(bh) * T;
  const bf16 *qb = q_base(p, bh), *vb = v_base(p, bh), *gb = dout + int64_t(bh) * T * D;
  constexpr int kRowTile = kBM * D * 2, kColTile = kN * D * 2, kPTile = kBM * kN * 2;
  const uint32_t sQ = smem_u32(smem), sG = sQ + kRowTile, sK0 = sG + kRowTile, sK1 = sK0 + kColTile,
                 sV0 = sK1 + kColTile, sV1 = sV0 + kColTile, sP = sV1 + kColTile, sDS = sP + kPTile;
  unsigned char* pP = smem + (sP - sQ);
  unsigned char* pDS = smem + (sDS - sQ);
  const int warp = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3, r0 = warp * 16;
  if (tid < kBM) {
    const int64_t slot = ca + tid;
    const int e = slot < cb ? ord[slot] : -1;
    const int pos = e >= 0 ? e % T : -1;
    qent_s[tid] = e;
    qpos_s[tid] = pos;
    float le = 0.f, we = 0.f;
    if (e >= 0) {  // the merge weight of the entry's round: exp(lse_e) / sum over the position's rounds
      const float* L = lse + int64_t(bh) * E + pos;
      le = L[e - pos];
      float m = -INFINITY;
      for (int r = 0; r < p.rounds; ++r) m = fmaxf(m, L[int64_t(r) * T]);
      float sum = 0.f;
      for (int r = 0; r < p.rounds; ++r) sum += expf(L[int64_t(r) * T] - m);
      we = expf(le - m) / sum;
    }
    qlse_s[tid] = le;
    qw_s[tid] = we;
  }
  {
    const int x = tid;  // kBThr == kBCols
    const int e = x < ncols ? ord[x < nprev ? pa + x : ca + (x - nprev)] : -1;
    const int pos = e >= 0 ? e % T : -1;
    kent_s[x] = e;
    kpos_s[x] = pos;
    kscl_s[x] = e >= 0 ? ks[pos] : 0.f;
  }
  __syncthreads();
  gather_rows<kBM, D, kBThr>(sQ, qb, p.q_st, qpos_s);
  gather_rows<kBM, D, kBThr>(sG, gb, D, qpos_s);
  gather_rows<kN, D, kBThr>(sK0, qb, p.q_st, kpos_s);
  gather_rows<kN, D, kBThr>(sV0, vb, p.v_st, kpos_s);
  cp_async_commit();
  {  // gout = dO . out of each query row's position (two threads per row, D / 2 elements each; the
     // rows' loads overlap the gathers in flight)
    constexpr int kHalf = D / 2;
    const int row = tid >> 1, half = tid & 1, pos = qpos_s[row];
    float go = 0.f;
    if (pos >= 0) {
      const bf16* gr = gb + int64_t(pos) * D + half * kHalf;
      const bf16* orow = out + (int64_t(bh) * T + pos) * D + half * kHalf;
#pragma unroll
      for (int i = 0; i < kHalf / 8; ++i) {
        const uint4 gv = *reinterpret_cast<const uint4*>(gr + i * 8), ov = *reinterpret_cast<const uint4*>(orow + i * 8);
        const __nv_bfloat162* g2 = reinterpret_cast<const __nv_bfloat162*>(&gv);
        const __nv_bfloat162* o2 = reinterpret_cast<const __nv_bfloat162*>(&ov);
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          const float2 a = __bfloat1622float2(g2[j]), b = __bfloat1622float2(o2[j]);
          go = fmaf(a.x, b.x, fmaf(a.y, b.y, go));
        }
      }
    }
    go += __shfl_xor_sync(0xffffffffu, go, 1);
    if (half == 0) qgo_s[row] = go;
  }
  __syncthreads();  // qgo_s
  int qp[2];
  float ql[2], lw2[2], qg[2];  // lw2: log2 of the merge weight (-inf for a missing query entry: P w = 0)
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int row = r0 + g + 8 * r;
    qp[r] = qpos_s[row], ql[r] = qlse_s[row], lw2[r] = log2f(qw_s[row]), qg[r] = qgo_s[row];
  }
  float dq[D / 8][4];
#pragma unroll
  for (int i = 0; i < D / 8; ++i) dq[i][0] = dq[i][1] = dq[i][2] = dq[i][3] = 0.f;
  const int ntiles = (ncols + kN - 1) / kN;
  for (int it = 0; it < ntiles; ++it) {
    const int x0 = it * kN;
    const uint32_t sK = (it & 1) ? sK1 : sK0, sV = (it & 1) ? sV1 : sV0;
    if (it + 1 < ntiles) {
      // The other buffers were last read (tile it-1) before the barrier that ended tile it-1's dq.
      gather_rows<kN, D, kBThr>((it & 1) ? sK0 : sK1, qb, p.q_st, kpos_s + x0 + kN);
      gather_rows<kN, D, kBThr>((it & 1) ? sV0 : sV1, vb, p.v_st, kpos_s + x0 + kN);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();  // tile it landed for every thread; sP, sDS of tile it-1 no longer read
    // Two halves of 32 key slots each (keeps S and dP at 32 registers: no spills at 2 blocks/SM).
#pragma unroll 1
    for (int hc = 0; hc < kN; hc += kN / 2) {
      constexpr int kH = kN / 2;
      float s[kH / 8][4], dp[kH / 8][4];
#pragma unroll
      for (int j = 0; j < kH / 8; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) s[j][e] = dp[j][e] = 0.f;
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk) {
        uint32_t qa[4], ga[4];
        load_a<D>(qa, sQ, r0, kk * 16, lane);
        load_a<D>(ga, sG, r0, kk * 16, lane);
#pragma unroll
        for (int j = 0; j < kH / 16; ++j) {
          uint32_t bk[4], bv[4];
          load_b<D>(bk, sK, hc + j * 16, kk * 16, lane);
          load_b<D>(bv, sV, hc + j * 16, kk * 16, lane);
          mma_bf16(s[2 * j], qa, bk[0], bk[1]);
          mma_bf16(s[2 * j + 1], qa, bk[2], bk[3]);
          mma_bf16(dp[2 * j], ga, bv[0], bv[1]);
          mma_bf16(dp[2 * j + 1], ga, bv[2], bv[3]);
        }
      }
      // PW = P w on every real (query, key) pair (masked logits are constants, so they feed dv
      // only); dS = PW (dP - gout) on unmasked pairs (key position < query position). Branch-free,
      // the column pair's positions and scales read once (8-byte loads), P w as one FFMA and one
      // ex2.approx.ftz (the weight as log2 w in the exponent; P w below 2^-126 becomes 0).
#pragma unroll
      for (int j = 0; j < kH / 8; ++j) {
        const int x = x0 + hc + j * 8 + 2 * t;  // even: the pair (x, x + 1) is 8-byte aligned
        const int2 kp2 = *reinterpret_cast<const int2*>(&kpos_s[x]);
        const float2 ksc = *reinterpret_cast<const float2*>(&kscl_s[x]);
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int r = e >> 1, kp = (e & 1) ? kp2.y : kp2.x;
          float a = s[j][e] * ((e & 1) ? ksc.y : ksc.x);
          a = kp == qp[r] ? kSelfM : a;
          a = kp > qp[r] ? kCausalM : a;
          float pw = softmax_exp2<true>(fmaf(a - ql[r], kLog2e, lw2[r]));  // P w = 2^((a - lse) log2e + log2 w)
          pw = kp >= 0 ? pw : 0.f;
          dp[j][e] = kp < qp[r] ? pw * (dp[j][e] - qg[r]) : 0.f;
          s[j][e] = pw;
        }
      }
#pragma unroll
      for (int j = 0; j < kH / 8; ++j) {
#pragma unroll
        for (int r = 0; r < 2; ++r) {
          const uint32_t off = swz<kN>(r0 + g + 8 * r, hc + j * 8) + uint32_t(t) * 4;
          *reinterpret_cast<uint32_t*>(pP + off) = pack_bf16(s[j][2 * r], s[j][2 * r + 1]);
          *reinterpret_cast<uint32_t*>(pDS + off) = pack_bf16(dp[j][2 * r], dp[j][2 * r + 1]);
        }
      }
      // dq += (dS kscale_j) K.
#pragma unroll
      for (int j = 0; j < kH / 8; ++j) {
        const float2 sc = *reinterpret_cast<const float2*>(&kscl_s[x0 + hc + j * 8 + 2 * t]);
        dp[j][0] *= sc.x, dp[j][1] *= sc.y, dp[j][2] *= sc.x, dp[j][3] *= sc.y;
      }
      uint32_t dsf[kH / 16][4];
#pragma unroll
      for (int kk = 0; kk < kH / 16; ++kk) pack_a(dsf[kk], dp[2 * kk], dp[2 * kk + 1]);
#pragma unroll
      for (int kk = 0; kk < kH / 16; ++kk) {
#pragma unroll
        for (int i = 0; i < D / 16; ++i) {
          uint32_t bf[4];
          load_b_trans<D>(bf, sK, hc + kk * 16, i * 16, lane);
          mma_bf16(dq[2 * i], dsf[kk], bf[0], bf[1]);
          mma_bf16(dq[2 * i + 1], dsf[kk], bf[2], bf[3]);
        }
      }
    }
    __syncthreads();  // sP, sDS complete
    // Warps 0-3: dv of keys x0 + 16 (warp % 4) .. +15 = PW^T dO; warps 4-7: dk = dS^T Q.
    {
      const bool is_dk = warp >= kBThr / 64;
      const int m0 = (warp % (kBThr / 64)) * 16;
      const uint32_t sA = is_dk ? sDS : sP, sB = is_dk ? sQ : sG;
      float acc[D / 8][4];
#pragma unroll
      for (int i = 0; i < D / 8; ++i) acc[i][0] = acc[i][1] = acc[i][2] = acc[i][3] = 0.f;
#pragma unroll
      for (int kk = 0; kk < kBM / 16; ++kk) {
        uint32_t a[4];
        load_a_trans<kN>(a, sA, m0, kk * 16, lane);
#pragma unroll
        for (int i = 0; i < D / 16; ++i) {
          uint32_t bf[4];
          load_b_trans<D>(bf, sB, kk * 16, i * 16, lane);
          mma_bf16(acc[2 * i], a, bf[0], bf[1]);
          mma_bf16(acc[2 * i + 1], a, bf[2], bf[3]);
        }
      }
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        const int x = x0 + m0 + g + 8 * r;
        const int e = kent_s[x];
        if (e < 0) continue;
        bf16* base = x < nprev ? (is_dk ? dk_next : dv_next) : (is_dk ? dk_own : dv_own);
        bf16* row = base + (int64_t(bh) * E + e) * D;
#pragma unroll
        for (int i = 0; i < D / 8; ++i)
          *reinterpret_cast<uint32_t*>(row + i * 8 + 2 * t) = pack_bf16(acc[i][2 * r], acc[i][2 * r + 1]);
      }
    }
  }
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int e = qent_s[r0 + g + 8 * r];
    if (e < 0) continue;
    bf16* row = dq_e + (int64_t(bh) * E + e) * D;
#pragma unroll
    for (int i = 0; i < D / 8; ++i)
      *reinterpret_cast<uint32_t*>(row + i * 8 + 2 * t) = pack_bf16(dq[i][2 * r], dq[i][2 * r + 1]);
  }
}

// ---- forward v2: one block per chunk ---------------------------------------------------------------
// Block (chunk c, bh): 128 query rows (8 warps x 16; chunk <= 128) against the <= 256 key slots of
// chunks c-1 (cyclic) and c, in 64-slot tiles gathered with double-buffered cp.async: every key
// row is gathered once per chunk (v1: once per 64-row query tile, twice per chunk of 128), and
// the next tile's gather overlaps this tile's math. Same arithmetic per row as forward_mma_kernel.
template <int D>
constexpr int forward_v2_smem() {
  return kBM * D * 2 + 4 * kN * D * 2;
}
static_assert(forward_v2_smem<128>() + 4096 <= 227 * 1024, "forward v2 shared memory (D 128)");

template <int D>
__global__ void __launch_bounds__(kBThr, D == 64 ? 2 : 1)
    forward_v2_mma_kernel(const SkLshParams p, const float* __restrict__ kscale, const int32_t* __restrict__ order,
                          bf16* __restrict__ o_rounds, float* __restrict__ lse_out) {
  extern __shared__ __align__(128) unsigned char smem[];
  __shared__ int qpos_s[kBM], qent_s[kBM];
  __shared__ __align__(8) int kpos_s[kBCols];  // read as pairs (int2, float2) per thread
  __shared__ __align__(8) float kscl_s[kBCols];
  const int bh = blockIdx.y, T = p.T, tid = threadIdx.x;
  const int64_t E = int64_t(p.rounds) * T, nch = (E + p.chunk - 1) / p.chunk;
  const int64_t c = blockIdx.x, ca = c * p.chunk, cb = ca + p.chunk < E ? ca + p.chunk : E;
  int64_t pa = 0, pb = 0;
  if (p.look_back && nch > 1) {
    pa = ((c + nch - 1) % nch) * p.chunk;
    pb = pa + p.chunk < E ? pa + p.chunk : E;
  }
  const int nprev = int(pb - pa), ncols = nprev + int(cb - ca);
  const int32_t* ord = order + int64_t(bh) * E;
  const float* ks = kscale + int64_t(bh) * T;
  const bf16 *qb = q_base(p, bh), *vb = v_base(p, bh);
  constexpr int kColTile = kN * D * 2;
  const uint32_t sQ = smem_u32(smem), sK0 = sQ + kBM * D * 2, sK1 = sK0 + kColTile, sV0 = sK1 + kColTile,
                 sV1 = sV0 + kColTile;
  const int warp = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3, r0 = warp * 16;
  if (tid < kBM) {
    const int64_t slot = ca + tid;
    const int e = slot < cb ? ord[slot] : -1;
    qent_s[tid] = e;
    qpos_s[tid] = e >= 0 ? e % T : -1;
  }
  {
    const int x = tid;  // kBThr == kBCols
    const int e = x < ncols ? ord[x < nprev ? pa + x : ca + (x - nprev)] : -1;
    const int pos = e >= 0 ? e % T : -1;
    kpos_s[x] = pos;
    kscl_s[x] = e >= 0 ? ks[pos] : 0.f;
  }
  __syncthreads();
  gather_rows<kBM, D, kBThr>(sQ, qb, p.q_st, qpos_s);
  gather_rows<kN, D, kBThr>(sK0, qb, p.q_st, kpos_s);
  gather_rows<kN, D, kBThr>(sV0, vb, p.v_st, kpos_s);
  cp_async_commit();
  const int qp[2] = {qpos_s[r0 + g], qpos_s[r0 + g + 8]};
  float o[D / 8][4];
#pragma unroll
  for (int i = 0; i < D / 8; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.f;
  float row_max[2] = {-INFINITY, -INFINITY}, row_sum[2] = {0.f, 0.f};
  uint32_t qf[D / 16][4];
  const int ntiles = (ncols + kN - 1) / kN;
  for (int it = 0; it < ntiles; ++it) {
    const int x0 = it * kN;
    const uint32_t sK = (it & 1) ? sK1 : sK0, sV = (it & 1) ? sV1 : sV0;
    if (it + 1 < ntiles) {
      gather_rows<kN, D, kBThr>((it & 1) ? sK0 : sK1, qb, p.q_st, kpos_s + x0 + kN);
      gather_rows<kN, D, kBThr>((it & 1) ? sV0 : sV1, vb, p.v_st, kpos_s + x0 + kN);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    if (it == 0) {
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk) load_a<D>(qf[kk], sQ, r0, kk * 16, lane);
    }
    float s[kN / 8][4];
#pragma unroll
    for (int j = 0; j < kN / 8; ++j) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.f;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
#pragma unroll
      for (int j = 0; j < kN / 16; ++j) {
        uint32_t bf[4];
        load_b<D>(bf, sK, j * 16, kk * 16, lane);
        mma_bf16(s[2 * j], qf[kk], bf[0], bf[1]);
        mma_bf16(s[2 * j + 1], qf[kk], bf[2], bf[3]);
      }
    }
    float tile_max[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int j = 0; j < kN / 8; ++j) {
      const int x = x0 + j * 8 + 2 * t;  // even: the pair (x, x + 1) is 8-byte aligned
      const int2 kp2 = *reinterpret_cast<const int2*>(&kpos_s[x]);
      const float2 ks2 = *reinterpret_cast<const float2*>(&kscl_s[x]);
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int kp = (e & 1) ? kp2.y : kp2.x, q_pos = qp[e >> 1];
        float a = s[j][e] * ((e & 1) ? ks2.y : ks2.x);
        if (kp < 0) a = -INFINITY;
        else if (kp > q_pos) a = kCausalM;
        else if (kp == q_pos) a = kSelfM;
        s[j][e] = a;
        tile_max[e >> 1] = fmaxf(tile_max[e >> 1], a);
      }
    }
    float corr[2], m_use[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(0xffffffffu, tile_max[r], 1));
      tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(0xffffffffu, tile_max[r], 2));
      const float new_max = fmaxf(row_max[r], tile_max[r]);
      m_use[r] = new_max == -INFINITY ? 0.f : new_max;
      corr[r] = row_max[r] == -INFINITY ? 0.f : softmax_exp2<true>((row_max[r] - m_use[r]) * kLog2e);
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
    uint32_t pf[kN / 16][4];
    // exp(s - m) as 2^(s log2e - m log2e), one FFMA (as FlashAttention's scaled softmax; m log2e
    // rounded once per row: a relative error of ~1e-7 |m| in the exponent, which cancels in o's
    // normalisation and is far inside lse's tolerance even at the self-mask value).
    const float m2[2] = {m_use[0] * kLog2e, m_use[1] * kLog2e};
#pragma unroll
    for (int j = 0; j < kN / 8; ++j) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        s[j][e] = softmax_exp2<true>(fmaf(s[j][e], kLog2e, -m2[e >> 1]));
        row_sum[e >> 1] += s[j][e];
      }
    }
#pragma unroll
    for (int kk = 0; kk < kN / 16; ++kk) pack_a(pf[kk], s[2 * kk], s[2 * kk + 1]);
#pragma unroll
    for (int kk = 0; kk < kN / 16; ++kk) {
#pragma unroll
      for (int i = 0; i < D / 16; ++i) {
        uint32_t bf[4];
        load_b_trans<D>(bf, sV, kk * 16, i * 16, lane);
        mma_bf16(o[2 * i], pf[kk], bf[0], bf[1]);
        mma_bf16(o[2 * i + 1], pf[kk], bf[2], bf[3]);
      }
    }
    __syncthreads();  // this tile's K/V buffers are refilled by the next iteration's prefetch
  }
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float sum = row_sum[r];
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
    sum += __shfl_xor_sync(0xffffffffu, sum, 2);
    const int e = qent_s[r0 + g + 8 * r];
    if (e < 0) continue;
    const float inv = 1.f / sum;
    bf16* orow = o_rounds + (int64_t(bh) * E + e) * D;  // bf16: the merge's fp32 sum rounds once more
#pragma unroll
    for (int i = 0; i < D / 8; ++i)
      *reinterpret_cast<uint32_t*>(orow + i * 8 + 2 * t) = pack_bf16(o[i][2 * r] * inv, o[i][2 * r + 1] * inv);
    if (t == 0) lse_out[int64_t(bh) * E + e] = row_max[r] + logf(sum);
  }
}

// ---- hashing ---------------------------------------------------------------------------------------
// Block (64 positions, bh, round): y = q R_r on tensor cores with R split into three bf16 terms
// (hi + mid + lo carry R's 24 significant bits; q is bf16 exactly, so every product is exact and
// only the fp32 accumulation order differs from the CPU's sequential sum: the argmax can differ
// from lsh_hash's only where two candidates are within a few ulps), then the first argmax over
// [y, -y] per position.
constexpr int kHashCols = 64;  // rotation columns per shared-memory tile

__device__ __forceinline__ bool better(float v2, int i2, float v, int i) { return v2 > v || (v2 == v && i2 < i); }

template <int D>
__global__ void __launch_bounds__(kThr) hash_mma_kernel(const SkLshParams p, int32_t* __restrict__ buckets,
                                                        uint32_t* __restrict__ keys, int32_t* __restrict__ vals) {
  extern __shared__ __align__(128) unsigned char smem[];
  __shared__ int pos_s[kM];
  const int bh = blockIdx.y, r = blockIdx.z, T = p.T, tid = threadIdx.x;
  const int R = p.rounds, half = p.n_buckets / 2, h = bh % p.H, j0 = blockIdx.x * kM;
  constexpr int kRotTile = D * kHashCols * 2;  // bytes of one (D x 64) bf16 tile
  const uint32_t sQ = smem_u32(smem), sR = sQ + tile_bytes<D>();
  unsigned char* rot_tiles = smem + tile_bytes<D>();
  const int warp = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3, r0 = warp * 16;
  if (tid < kM) pos_s[tid] = j0 + tid < T ? j0 + tid : -1;
  __syncthreads();
  gather_tile<D>(sQ, q_base(p, bh), p.q_st, pos_s);
  cp_async_commit();
  cp_async_wait<0>();
  __syncthreads();
  uint32_t qf[D / 16][4];
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) load_a<D>(qf[kk], sQ, r0, kk * 16, lane);
  float best_v[2] = {-INFINITY, -INFINITY};
  int best_i[2] = {0x7fffffff, 0x7fffffff};
  // rot element (h, d, r, col) at ((h D + d) R + r) half + col
  const float* rot = p.rot + (int64_t(h) * D * R + r) * half;
  const int64_t rot_d = int64_t(R) * half;
  for (int c0 = 0; c0 < half; c0 += kHashCols) {
    __syncthreads();  // the previous column tile is no longer read
    for (int idx = tid; idx < D * kHashCols; idx += kThr) {
      const int d = idx / kHashCols, col = idx % kHashCols;
      const float x = c0 + col < half ? rot[d * rot_d + c0 + col] : 0.f;
      const __nv_bfloat16 hi = __float2bfloat16_rn(x);
      const float rest = x - __bfloat162float(hi);
      const __nv_bfloat16 mid = __float2bfloat16_rn(rest);
      const __nv_bfloat16 lo = __float2bfloat16_rn(rest - __bfloat162float(mid));
      const uint32_t off = swz<kHashCols>(d, col & ~7) + (col & 7) * 2;
      *reinterpret_cast<__nv_bfloat16*>(rot_tiles + off) = hi;
      *reinterpret_cast<__nv_bfloat16*>(rot_tiles + kRotTile + off) = mid;
      *reinterpret_cast<__nv_bfloat16*>(rot_tiles + 2 * kRotTile + off) = lo;
    }
    __syncthreads();
    float y[kHashCols / 8][4];
#pragma unroll
    for (int j = 0; j < kHashCols / 8; ++j) y[j][0] = y[j][1] = y[j][2] = y[j][3] = 0.f;
#pragma unroll
    for (int part = 0; part < 3; ++part) {
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk) {
#pragma unroll
        for (int j = 0; j < kHashCols / 16; ++j) {
          uint32_t bf[4];
          load_b_trans<kHashCols>(bf, sR + part * kRotTile, kk * 16, j * 16, lane);
          mma_bf16(y[2 * j], qf[kk], bf[0], bf[1]);
          mma_bf16(y[2 * j + 1], qf[kk], bf[2], bf[3]);
        }
      }
    }
#pragma unroll
    for (int j = 0; j < kHashCols / 8; ++j) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int col = c0 + j * 8 + 2 * t + (e & 1), rr = e >> 1;
        if (col < half) {
          if (better(y[j][e], col, best_v[rr], best_i[rr])) best_v[rr] = y[j][e], best_i[rr] = col;
          if (better(-y[j][e], half + col, best_v[rr], best_i[rr])) best_v[rr] = -y[j][e], best_i[rr] = half + col;
        }
      }
    }
  }
#pragma unroll
  for (int rr = 0; rr < 2; ++rr) {
#pragma unroll
    for (int off = 1; off <= 2; off <<= 1) {
      const float v2 = __shfl_xor_sync(0xffffffffu, best_v[rr], off);
      const int i2 = __shfl_xor_sync(0xffffffffu, best_i[rr], off);
      if (better(v2, i2, best_v[rr], best_i[rr])) best_v[rr] = v2, best_i[rr] = i2;
    }
    const int j = j0 + r0 + g + 8 * rr;
    if (t == 0 && j < T) {
      const int64_t ent = (int64_t(bh) * R + r) * T + j;
      buckets[ent] = best_i[rr];
      keys[ent] = uint32_t((int64_t(bh) * R + r) * p.n_buckets + best_i[rr]);
      vals[ent] = r * T + j;
    }
  }
}

// ---- hashing v2 --------------------------------------------------------------------------------------
// q R on fp16 tensor cores with R split into TWO fp16 terms (hi + lo: 22 significant bits) instead
// of v1's three bf16 terms (24 bits): two thirds of the MMAs and of the rotation tiles. Exactness
// comes from power-of-two scales, which leave every row's argmax unchanged: each round's rotations
// are scaled by 2^k (max |R| in [2^14, 2^15): rot_max_kernel, rot_exponent) before the split, and each q row
// by 2^s (max |q| in [2^14, 2^15)), so q (bf16: 8 significant bits) is exact in fp16 except for
// components below ~2^-38 of the row's largest, and every product is exact in fp32; only the fp32
// accumulation order and R's bits past the 22nd differ from the CPU's lsh_hash (the argmax can
// differ only at near ties, as with v1). The split is done once per call (split_rotations_kernel,
// into (H, R, 2, D, halfp) with halfp = NB/2 rounded up to 64, zero-padded); blocks of 128
// positions (8 warps) stream the split tiles with three-stage cp.async. The argmax is tracked
// as a first maximum and a first minimum of y (the same index as a scan of [y, -y]).
constexpr int kHBM = 128;
constexpr int kHThr = (kHBM / 16) * 32;
constexpr int kRotParts = 2;
// Bytes of the per-(h, r) maxima ahead of the split in the scratch (keeps the split 256-byte aligned).
__host__ __device__ inline int64_t rot_exp_bytes(const SkLshParams& p) {
  return (int64_t(p.H) * p.rounds * 4 + 255) / 256 * 256;
}

__host__ __device__ inline int hash_halfp(int half) { return (half + kHashCols - 1) / kHashCols * kHashCols; }

__device__ __forceinline__ float pow2f(int k) { return __int_as_float((127 + k) << 23); }  // k in [-126, 127]

// max |R| of each (h, r) as float bits (non-negative floats order as their int bits, so atomicMax
// on the bits is the float max, independent of the order: deterministic). Grid (H R, kRotMaxSlices);
// rmax zeroed before. Eight independent loads in flight per thread.
constexpr int kRotMaxSlices = 16;
__global__ void __launch_bounds__(256) rot_max_kernel(const SkLshParams p, int* __restrict__ rmax) {
  const int half = p.n_buckets / 2, R = p.rounds, D = p.D, hr = blockIdx.x, h = hr / R, r = hr % R;
  const int n = D * half, stride = int(gridDim.y * blockDim.x);
  float m = 0.f;
  for (int i0 = int(blockIdx.y * blockDim.x + threadIdx.x); i0 < n; i0 += 8 * stride) {
    float v[8];
#pragma unroll
    for (int u = 0; u < 8; ++u) {
      const int i = i0 + u * stride;
      v[u] = i < n ? fabsf(p.rot[((int64_t(h) * D + i / half) * R + r) * half + i % half]) : 0.f;
    }
#pragma unroll
    for (int u = 0; u < 8; ++u) m = fmaxf(m, v[u]);
  }
  for (int off = 16; off > 0; off >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, off));
  if ((threadIdx.x & 31) == 0 && m > 0.f) atomicMax(rmax + hr, __float_as_int(m));  // (NaN bits > inf: k 0)
}

// The power of two k that brings a round's max |R| into [2^14, 2^15); 0 for an all-zero or
// non-finite round.
__device__ __forceinline__ int rot_exponent(int max_bits) {
  const float m = __int_as_float(max_bits);
  int e = 0;
  if (!(m > 0.f && isfinite(m))) return 0;
  frexpf(m, &e);  // m = f 2^e, f in [0.5, 1)
  return min(127, max(-126, 15 - e));
}

__global__ void split_rotations_kernel(const SkLshParams p, const int* __restrict__ rmax, __half* __restrict__ split,
                                       int halfp) {
  const int half = p.n_buckets / 2, R = p.rounds, D = p.D;
  const int64_t total = int64_t(p.H) * R * D * halfp;
  for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int col = int(idx % halfp), d = int((idx / halfp) % D);
    const int64_t hr = idx / (int64_t(halfp) * D);
    const int h = int(hr / R), r = int(hr % R);
    const float x = col < half ? p.rot[((int64_t(h) * D + d) * R + r) * half + col] * pow2f(rot_exponent(rmax[hr])) : 0.f;
    const __half hi = __float2half_rn(x);
    const __half lo = __float2half_rn(x - __half2float(hi));  // x - hi is exact in fp32
    __half* o = split + (hr * kRotParts * D + d) * halfp + col;  // part stride D * halfp
    o[0] = hi;
    o[int64_t(D) * halfp] = lo;
  }
}

// Two bf16 of q (one 32-bit A-fragment register) times 2^s as two fp16 (exact: see above).
__device__ __forceinline__ uint32_t bf16x2_to_scaled_f16x2(uint32_t v, float scale) {
  const float2 f = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&v));
  const __half2 h = __floats2half2_rn(f.x * scale, f.y * scale);
  return *reinterpret_cast<const uint32_t*>(&h);
}

template <int D>
__device__ __forceinline__ void load_rot_tiles(uint32_t tile, const __half* rs, int halfp, int c0) {
  constexpr int kRotTile = D * kHashCols * 2, kChunks = kRotParts * D * (kHashCols / 8);
  static_assert(kChunks % kHThr == 0, "rotation tile chunks divide evenly among threads");
#pragma unroll
  for (int i = 0; i < kChunks / kHThr; ++i) {
    const int c = i * kHThr + int(threadIdx.x);
    const int part = c / (D * (kHashCols / 8)), rem = c % (D * (kHashCols / 8));
    const int d = rem / (kHashCols / 8), cc = rem % (kHashCols / 8);
    cp_async_16(tile + part * kRotTile + swz<kHashCols>(d, cc * 8),
                rs + (int64_t(part) * D + d) * halfp + c0 + cc * 8, true);
  }
}

constexpr int kHashStages = 3;  // rotation tiles in flight: the tile of step i + 2 loads during step i
template <int D>
constexpr int hash_v2_smem() {
  return kHBM * D * 2 + kHashStages * kRotParts * D * kHashCols * 2;
}
static_assert(hash_v2_smem<128>() + 1024 <= 227 * 1024, "hash v2 shared memory (D 128)");

// Block (128 positions, bh): both rounds' products from one gather of the q rows (the rounds'
// rotation tiles stream through the same double buffer, round after round); two blocks per SM at
// D 64 (127 registers with the two parts unrolled, no spills).
template <int D>
__global__ void __launch_bounds__(kHThr, D == 64 ? 2 : 1)
    hash_v2_kernel(const SkLshParams p, const __half* __restrict__ split, int halfp, float* __restrict__ kscale,
                   int32_t* __restrict__ buckets, uint32_t* __restrict__ keys, int32_t* __restrict__ vals) {
  extern __shared__ __align__(128) unsigned char smem[];
  __shared__ int pos_s[kHBM];
  const int bh = blockIdx.y, T = p.T, tid = threadIdx.x;
  const int R = p.rounds, half = p.n_buckets / 2, h = bh % p.H, j0 = blockIdx.x * kHBM;
  constexpr int kRotTile = D * kHashCols * 2;
  const uint32_t sQ = smem_u32(smem), sR0 = sQ + kHBM * D * 2;  // kHashStages rotation buffers follow
  // Round r's split rotations: (2, D, halfp) fp16.
  auto rot_of = [&](int r) { return split + (int64_t(h) * R + r) * kRotParts * D * halfp; };
  const int warp = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3, r0 = warp * 16;
  if (tid < kHBM) pos_s[tid] = j0 + tid < T ? j0 + tid : -1;
  __syncthreads();
  const int ntiles = halfp / kHashCols, steps = R * ntiles;
  // Step i's tiles: round i / ntiles, columns (i % ntiles) * 64 .., into buffer i % kHashStages.
  auto load_step = [&](int i) {
    const int ri = i / ntiles;
    load_rot_tiles<D>(sR0 + (i % kHashStages) * kRotParts * kRotTile, rot_of(ri), halfp, (i - ri * ntiles) * kHashCols);
  };
  gather_rows<kHBM, D, kHThr>(sQ, q_base(p, bh), p.q_st, pos_s);
  load_step(0);
  cp_async_commit();
  if (steps > 1) {
    load_step(1);
    cp_async_commit();
  }
  uint32_t qf[D / 16][4];
  // Per row of the thread's two: the first maximum of y (hi_v at column hi_i) and the first minimum
  // (lo_v at lo_i) over the columns seen, which a thread visits in increasing order (tiles, then
  // j, then e & 1), so strict comparisons keep the first one. The argmax over [y, -y] is then hi_i
  // when hi_v >= -lo_v, else half + lo_i: the first maximum over the concatenation, as better()
  // over both halves did (three instructions per candidate instead of ~7).
  float hi_v[2] = {-INFINITY, -INFINITY}, lo_v[2] = {INFINITY, INFINITY};
  int hi_i[2] = {0x7fffffff, 0x7fffffff}, lo_i[2] = {0x7fffffff, 0x7fffffff};
  for (int step = 0; step < steps; ++step) {
    const int r = step / ntiles, c0 = (step - r * ntiles) * kHashCols;
    const uint32_t sR = sR0 + (step % kHashStages) * kRotParts * kRotTile;
    if (step + 2 < steps) {  // (its buffer was last read in step - 1, before that step's final barrier)
      load_step(step + 2);
      cp_async_commit();
      cp_async_wait<2>();
    } else if (step + 1 < steps) {
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    if (step == 0) {
      // Per gathered row (two threads per row, D / 2 elements each; row = tid / 2 lies in this
      // warp's 16 rows): the key scale 1 / sqrt(mean(q^2) + eps) / sqrt(D) (as key_scale_rows_kernel)
      // and the power of two 2^s that brings max |q| into [2^14, 2^15) for the fp16 products.
      const int row = tid >> 1, hf = tid & 1;
      float ms = 0.f, mx = 0.f;
#pragma unroll
      for (int cc = hf * (D / 16); cc < (hf + 1) * (D / 16); ++cc) {
        const uint4 v = *reinterpret_cast<const uint4*>(smem + swz<D>(row, cc * 8));
        const __nv_bfloat162* v2 = reinterpret_cast<const __nv_bfloat162*>(&v);
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const float2 f = __bfloat1622float2(v2[i]);
          ms = fmaf(f.x, f.x, fmaf(f.y, f.y, ms));
          mx = fmaxf(mx, fmaxf(fabsf(f.x), fabsf(f.y)));
        }
      }
      ms += __shfl_xor_sync(0xffffffffu, ms, 1);
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      if (hf == 0 && pos_s[row] >= 0)
        kscale[int64_t(bh) * T + pos_s[row]] = 1.0f / sqrtf(ms / float(D) + 1e-6f) / sqrtf(float(D));
      int e = 0;
      if (mx > 0.f && isfinite(mx)) frexpf(mx, &e);
      const float my_scale = pow2f(min(127, max(-126, 15 - e)));
      // A fragments: registers 0, 2 hold row g of the warp's 16, registers 1, 3 row g + 8 (owned by
      // lanes 2 g and 2 (g + 8)).
      const float sc_lo = __shfl_sync(0xffffffffu, my_scale, 2 * g), sc_hi = __shfl_sync(0xffffffffu, my_scale, 2 * g + 16);
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk) {
        load_a<D>(qf[kk], sQ, r0, kk * 16, lane);
        qf[kk][0] = bf16x2_to_scaled_f16x2(qf[kk][0], sc_lo);
        qf[kk][1] = bf16x2_to_scaled_f16x2(qf[kk][1], sc_hi);
        qf[kk][2] = bf16x2_to_scaled_f16x2(qf[kk][2], sc_lo);
        qf[kk][3] = bf16x2_to_scaled_f16x2(qf[kk][3], sc_hi);
      }
    }
    float y[kHashCols / 8][4];
#pragma unroll
    for (int j = 0; j < kHashCols / 8; ++j) y[j][0] = y[j][1] = y[j][2] = y[j][3] = 0.f;
#pragma unroll
    for (int part = 0; part < kRotParts; ++part) {
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk) {
#pragma unroll
        for (int j = 0; j < kHashCols / 16; ++j) {
          uint32_t bf[4];
          load_b_trans<kHashCols>(bf, sR + part * kRotTile, kk * 16, j * 16, lane);
          mma_f16(y[2 * j], qf[kk], bf[0], bf[1]);
          mma_f16(y[2 * j + 1], qf[kk], bf[2], bf[3]);
        }
      }
    }
    auto track = [&](float v, int col, int rr) {
      if (v > hi_v[rr]) hi_v[rr] = v, hi_i[rr] = col;
      if (v < lo_v[rr]) lo_v[rr] = v, lo_i[rr] = col;
    };
    if (c0 + kHashCols <= half) {  // a full tile: no padded columns
#pragma unroll
      for (int j = 0; j < kHashCols / 8; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) track(y[j][e], c0 + j * 8 + 2 * t + (e & 1), e >> 1);
    } else {
#pragma unroll
      for (int j = 0; j < kHashCols / 8; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int col = c0 + j * 8 + 2 * t + (e & 1);
          if (col < half) track(y[j][e], col, e >> 1);
        }
    }
    if (c0 + kHashCols == ntiles * kHashCols) {  // round r's last tile: reduce over the quad, write, reset
#pragma unroll
      for (int rr = 0; rr < 2; ++rr) {
#pragma unroll
        for (int off = 1; off <= 2; off <<= 1) {
          const float hv = __shfl_xor_sync(0xffffffffu, hi_v[rr], off), lv = __shfl_xor_sync(0xffffffffu, lo_v[rr], off);
          const int hk = __shfl_xor_sync(0xffffffffu, hi_i[rr], off), lk = __shfl_xor_sync(0xffffffffu, lo_i[rr], off);
          if (better(hv, hk, hi_v[rr], hi_i[rr])) hi_v[rr] = hv, hi_i[rr] = hk;
          if (better(-lv, lk, -lo_v[rr], lo_i[rr])) lo_v[rr] = lv, lo_i[rr] = lk;
        }
        const int best = hi_v[rr] >= -lo_v[rr] ? hi_i[rr] : half + lo_i[rr];
        const int j = j0 + r0 + g + 8 * rr;
        if (t == 0 && j < T) {
          const int64_t ent = (int64_t(bh) * R + r) * T + j;
          buckets[ent] = best;
          keys[ent] = uint32_t((int64_t(bh) * R + r) * p.n_buckets + best);
          vals[ent] = r * T + j;
        }
        hi_v[rr] = -INFINITY, lo_v[rr] = INFINITY;
        hi_i[rr] = lo_i[rr] = 0x7fffffff;
      }
    }
    __syncthreads();  // this tile's buffer is refilled by the next step's prefetch
  }
}

template <class K>
bool set_smem(K kernel, int bytes) {
  return cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes) == cudaSuccess;
}

dim3 grid_of(const SkLshParams* p) {
  const int64_t E = int64_t(p->rounds) * p->T, nch = (E + p->chunk - 1) / p->chunk;
  const int64_t tiles = (p->chunk + kM - 1) / kM;
  return dim3(unsigned(nch * tiles), unsigned(int64_t(p->B) * p->H));
}

template <int D>
int forward_launch(const SkLshParams* p, const float* kscale, const int32_t* order, float* o_rounds, float* lse,
                   cudaStream_t s) {
  constexpr int smem = 3 * tile_bytes<D>();
  if (!set_smem(forward_mma_kernel<D>, smem)) return SK_KERNEL_LAUNCH_FAILED;
  forward_mma_kernel<D><<<grid_of(p), kThr, smem, s>>>(*p, kscale, order, o_rounds, lse);
  return cudaGetLastError() == cudaSuccess ? SK_KERNEL_OK : SK_KERNEL_LAUNCH_FAILED;
}

template <int D>
int backward_launch(const SkLshParams* p, const float* kscale, const int32_t* order, const float* lse,
                    const void* dout, const float* w, const float* gout, float* dq_e, float* dk_e, float* dv_e,
                    cudaStream_t s) {
  constexpr int smem = 4 * tile_bytes<D>();
  if (!set_smem(backward_query_mma_kernel<D>, smem) || !set_smem(backward_key_mma_kernel<D>, smem))
    return SK_KERNEL_LAUNCH_FAILED;
  const bf16* g = static_cast<const bf16*>(dout);
  backward_query_mma_kernel<D><<<grid_of(p), kThr, smem, s>>>(*p, kscale, order, lse, g, w, gout, dq_e);
  backward_key_mma_kernel<D><<<grid_of(p), kThr, smem, s>>>(*p, kscale, order, lse, g, w, gout, dk_e, dv_e);
  return cudaGetLastError() == cudaSuccess ? SK_KERNEL_OK : SK_KERNEL_LAUNCH_FAILED;
}

template <int D>
int backward_fused_launch(const SkLshParams* p, const float* kscale, const int32_t* order, const float* lse,
                          const void* dout, const void* out, void* dq_e, void* dk_e, void* dv_e, void* dk2_e,
                          void* dv2_e, cudaStream_t s) {
  constexpr int smem = fused_smem_bytes<D>();
  if (!set_smem(backward_fused_mma_kernel<D>, smem)) return SK_KERNEL_LAUNCH_FAILED;
  const int64_t E = int64_t(p->rounds) * p->T, nch = (E + p->chunk - 1) / p->chunk;
  const dim3 grid(unsigned(nch), unsigned(int64_t(p->B) * p->H));
  backward_fused_mma_kernel<D><<<grid, kBThr, smem, s>>>(
      *p, kscale, order, lse, static_cast<const bf16*>(dout), static_cast<const bf16*>(out), static_cast<bf16*>(dq_e),
      static_cast<bf16*>(dk_e), static_cast<bf16*>(dv_e), static_cast<bf16*>(dk2_e), static_cast<bf16*>(dv2_e));
  return cudaGetLastError() == cudaSuccess ? SK_KERNEL_OK : SK_KERNEL_LAUNCH_FAILED;
}

template <int D>
int forward_v2_launch(const SkLshParams* p, const float* kscale, const int32_t* order, bf16* o_rounds, float* lse,
                      cudaStream_t s) {
  constexpr int smem = forward_v2_smem<D>();
  if (!set_smem(forward_v2_mma_kernel<D>, smem)) return SK_KERNEL_LAUNCH_FAILED;
  const int64_t E = int64_t(p->rounds) * p->T, nch = (E + p->chunk - 1) / p->chunk;
  const dim3 grid(unsigned(nch), unsigned(int64_t(p->B) * p->H));
  forward_v2_mma_kernel<D><<<grid, kBThr, smem, s>>>(*p, kscale, order, o_rounds, lse);
  return cudaGetLastError() == cudaSuccess ? SK_KERNEL_OK : SK_KERNEL_LAUNCH_FAILED;
}

template <int D>
int hash_launch(const SkLshParams* p, int32_t* buckets, uint32_t* keys, int32_t* vals, cudaStream_t s) {
  constexpr int smem = tile_bytes<D>() + 3 * D * kHashCols * 2;
  if (!set_smem(hash_mma_kernel<D>, smem)) return SK_KERNEL_LAUNCH_FAILED;
  const dim3 grid(unsigned((p->T + kM - 1) / kM), unsigned(int64_t(p->B) * p->H), unsigned(p->rounds));
  hash_mma_kernel<D><<<grid, kThr, smem, s>>>(*p, buckets, keys, vals);
  return cudaGetLastError() == cudaSuccess ? SK_KERNEL_OK : SK_KERNEL_LAUNCH_FAILED;
}

template <int D>
int hash_v2_launch(const SkLshParams* p, void* scratch, float* kscale, int32_t* buckets, uint32_t* keys,
                   int32_t* vals, cudaStream_t s) {
  constexpr int smem = hash_v2_smem<D>();
  if (!set_smem(hash_v2_kernel<D>, smem)) return SK_KERNEL_LAUNCH_FAILED;
  const int halfp = hash_halfp(p->n_buckets / 2);
  int* rmax = static_cast<int*>(scratch);
  __half* split = reinterpret_cast<__half*>(static_cast<char*>(scratch) + rot_exp_bytes(*p));
  if (cudaMemsetAsync(rmax, 0, size_t(p->H) * p->rounds * sizeof(int), s) != cudaSuccess) return SK_KERNEL_LAUNCH_FAILED;
  rot_max_kernel<<<dim3(unsigned(p->H * p->rounds), kRotMaxSlices), 256, 0, s>>>(*p, rmax);
  const int64_t total = int64_t(p->H) * p->rounds * D * halfp;
  const int64_t blocks = (total + 255) / 256;
  split_rotations_kernel<<<unsigned(blocks < 4096 ? blocks : 4096), 256, 0, s>>>(*p, rmax, split, halfp);
  const dim3 grid(unsigned((p->T + kHBM - 1) / kHBM), unsigned(int64_t(p->B) * p->H));
  hash_v2_kernel<D><<<grid, kHThr, smem, s>>>(*p, split, halfp, kscale, buckets, keys, vals);
  return cudaGetLastError() == cudaSuccess ? SK_KERNEL_OK : SK_KERNEL_LAUNCH_FAILED;
}

}  // namespace

int sk_lsh_mma_hash(const SkLshParams* p, int32_t* buckets, uint32_t* keys, int32_t* vals, cudaStream_t s) {
  if (!sk_lsh_mma_supported(p) || !p->rot || p->n_buckets < 2) return SK_KERNEL_BAD_ARG;
  return p->D == 64 ? hash_launch<64>(p, buckets, keys, vals, s) : hash_launch<128>(p, buckets, keys, vals, s);
}

int sk_lsh_mma_supported(const SkLshParams* p) {
  if (!p || p->dtype != SK_KDT_BF16 || (p->D != 64 && p->D != 128)) return 0;
  if (reinterpret_cast<uintptr_t>(p->q) % 16 || reinterpret_cast<uintptr_t>(p->v) % 16) return 0;
  if (p->q_sb % 8 || p->q_sh % 8 || p->q_st % 8 || p->v_sb % 8 || p->v_sh % 8 || p->v_st % 8) return 0;
  return 1;
}

int sk_lsh_mma_forward_chunks(const SkLshParams* p, const float* kscale, const int32_t* order, float* o_rounds,
                              float* lse, cudaStream_t s) {
  if (!sk_lsh_mma_supported(p)) return SK_KERNEL_BAD_ARG;
  return p->D == 64 ? forward_launch<64>(p, kscale, order, o_rounds, lse, s)
                    : forward_launch<128>(p, kscale, order, o_rounds, lse, s);
}

int sk_lsh_mma_backward_chunks(const SkLshParams* p, const float* kscale, const int32_t* order, const float* lse,
                               const void* dout, const float* w, const float* gout, float* dq_e, float* dk_e,
                               float* dv_e, cudaStream_t s) {
  if (!sk_lsh_mma_supported(p) || reinterpret_cast<uintptr_t>(dout) % 16) return SK_KERNEL_BAD_ARG;
  return p->D == 64 ? backward_launch<64>(p, kscale, order, lse, dout, w, gout, dq_e, dk_e, dv_e, s)
                    : backward_launch<128>(p, kscale, order, lse, dout, w, gout, dq_e, dk_e, dv_e, s);
}


int sk_lsh_mma_fused_backward_ok(const SkLshParams* p) {
  return sk_lsh_mma_supported(p) && p->chunk >= 1 && p->chunk <= kBM ? 1 : 0;
}

int sk_lsh_mma_backward_fused(const SkLshParams* p, const float* kscale, const int32_t* order, const float* lse,
                              const void* dout, const void* out, void* dq_e, void* dk_e, void* dv_e, void* dk2_e,
                              void* dv2_e, cudaStream_t s) {
  if (!sk_lsh_mma_fused_backward_ok(p) || reinterpret_cast<uintptr_t>(dout) % 16 ||
      reinterpret_cast<uintptr_t>(out) % 16)
    return SK_KERNEL_BAD_ARG;
  return p->D == 64 ? backward_fused_launch<64>(p, kscale, order, lse, dout, out, dq_e, dk_e, dv_e, dk2_e, dv2_e, s)
                    : backward_fused_launch<128>(p, kscale, order, lse, dout, out, dq_e, dk_e, dv_e, dk2_e, dv2_e, s);
}

int64_t sk_lsh_mma_hash_scratch_bytes(const SkLshParams* p) {
  if (!sk_lsh_mma_supported(p) || p->n_buckets < 2) return 0;
  return rot_exp_bytes(*p) + int64_t(p->H) * p->rounds * kRotParts * p->D * hash_halfp(p->n_buckets / 2) * 2;
}

int sk_lsh_mma_hash_v2(const SkLshParams* p, void* scratch, float* kscale, int32_t* buckets, uint32_t* keys,
                       int32_t* vals, cudaStream_t s) {
  if (!sk_lsh_mma_supported(p) || !p->rot || p->n_buckets < 2 || !scratch || !kscale ||
      reinterpret_cast<uintptr_t>(scratch) % 16)
    return SK_KERNEL_BAD_ARG;
  return p->D == 64 ? hash_v2_launch<64>(p, scratch, kscale, buckets, keys, vals, s)
                    : hash_v2_launch<128>(p, scratch, kscale, buckets, keys, vals, s);
}

int sk_lsh_mma_forward_v2_ok(const SkLshParams* p) {
  return sk_lsh_mma_fused_backward_ok(p) && p->chunk > kM ? 1 : 0;
}

int sk_lsh_mma_forward_chunks_v2(const SkLshParams* p, const float* kscale, const int32_t* order, void* o_rounds,
                                 float* lse, cudaStream_t s) {
  if (!sk_lsh_mma_forward_v2_ok(p)) return SK_KERNEL_BAD_ARG;
  bf16* o = static_cast<bf16*>(o_rounds);
  return p->D == 64 ? forward_v2_launch<64>(p, kscale, order, o, lse, s)
                    : forward_v2_launch<128>(p, kscale, order, o, lse, s);
}
