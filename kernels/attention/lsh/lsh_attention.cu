// LSH attention kernels (lsh_attention.h): key scales, hashing, the stable sort (cub radix sort of
// (row, round, bucket) keys), the chunked attention forward, the merge over rounds, and the
// backward (query-side and key-side recomputation kernels writing per-entry partial gradients, then
// one pass summing the rounds and applying the key-normalisation backward).
//
// The chunk kernels here are SIMT (fp32 FMA, no tensor cores; used for f32, or when asked): a block owns one chunk of one (b, h)
// row; kG = 8 threads share one row (query or key entry), each holding D / 8 of its dims
// (interleaved: dim i * 8 + g, so the 8 threads of a row read 8 consecutive shared-memory words),
// and stream the other side (keys, or queries in the key-side backward) through shared memory in
// tiles of kTile entries; dots are finished with 3 xor shuffles. Online softmax in fp32.
//
// The SIMT hash runs in fp32 with unfused multiply and add in the order d = 0 .. D-1 (__fmul_rn /
// __fadd_rn), the same operations as the CPU reference lsh_hash on f32 inputs, so its buckets
// equal the CPU's bit for bit on the same f32 values. With the tensor-core kernels (impl 2; bf16)
// the hash and the chunk attention run in lsh_mma.cu instead.
#include "kernels/attention/lsh/lsh_attention.h"

#include "kernels/attention/lsh/lsh_mma.h"
#include "kernels/common/device_utils.cuh"

#include <cuda_bf16.h>

#include <cfloat>
#include <climits>
#include <cstdint>
#include <cub/device/device_radix_sort.cuh>
#include <type_traits>

namespace {

constexpr float kCausal = -1e9f;
constexpr float kSelf = -1e5f;
constexpr float kEps = 1e-6f;
constexpr unsigned kFull = 0xffffffffu;

constexpr int kMaxD = 256;         // key-scale / hash / final kernels (any D <= kMaxD)
constexpr int kHashPos = 32;       // positions per hash block
constexpr int kHashThreads = 256;  // hash block: columns of the rotation spread over threads
constexpr int kG = 8;              // threads per row in the chunk kernels
constexpr int kRows = 32;          // rows per pass of a chunk block
constexpr int kThreads = kRows * kG;
constexpr int kTile = 32;          // streamed entries per shared-memory tile

static_assert(kThreads == 256, "chunk blocks are 256 threads");
static_assert(32 % kG == 0, "a row's threads lie within one warp");
static_assert(sizeof(float) * kHashPos * kMaxD + 2 * 4 * 8 * kHashPos <= 48 * 1024, "hash shared memory");
static_assert(sizeof(float) * 2 * kTile * 128 + 4 * 4 * kTile <= 48 * 1024, "chunk shared memory (D 128)");

__device__ __forceinline__ float ld(const float* p) { return *p; }
__device__ __forceinline__ float ld(const __nv_bfloat16* p) { return __bfloat162float(*p); }
__device__ __forceinline__ void st(float* p, float x) { *p = x; }
__device__ __forceinline__ void st(__nv_bfloat16* p, float x) { *p = __float2bfloat16_rn(x); }

template <class TIn>
__device__ __forceinline__ const TIn* q_row_base(const SkLshParams& p, int bh) {
  return static_cast<const TIn*>(p.q) + int64_t(bh / p.H) * p.q_sb + int64_t(bh % p.H) * p.q_sh;
}
template <class TIn>
__device__ __forceinline__ const TIn* v_row_base(const SkLshParams& p, int bh) {
  return static_cast<const TIn*>(p.v) + int64_t(bh / p.H) * p.v_sb + int64_t(bh % p.H) * p.v_sh;
}

using sk_kern::group_sum;
using sk_kern::warp_sum;
// Sum over the kG threads of one row (consecutive lanes).
__device__ __forceinline__ float row_sum(float x) { return group_sum<kG>(x); }

__device__ __forceinline__ bool better(float v2, int i2, float v, int i) { return v2 > v || (v2 == v && i2 < i); }

// Slots [a, b) of chunk c of a row of E sorted entries.
__device__ __forceinline__ void chunk_range(int64_t c, int chunk, int64_t E, int64_t& a, int64_t& b) {
  a = c * chunk;
  b = a + chunk < E ? a + chunk : E;
}

// ---- key scales: one warp per (bh, j) -----------------------------------------------------------
template <class TIn>
__global__ void key_scale_kernel(SkLshParams p, float* kscale) {
  const int64_t w = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const int lane = threadIdx.x & 31;
  if (w >= int64_t(p.B) * p.H * p.T) return;  // uniform per warp
  const int bh = int(w / p.T), j = int(w % p.T);
  const TIn* q = q_row_base<TIn>(p, bh) + int64_t(j) * p.q_st;
  float ms = 0;
  for (int d = lane; d < p.D; d += 32) {
    const float x = ld(q + d);
    ms += x * x;
  }
  ms = warp_sum(ms);
  if (lane == 0) kscale[w] = 1.0f / sqrtf(ms / float(p.D) + kEps) / sqrtf(float(p.D));
}

// ---- hashing: block (32 positions, bh, round) ---------------------------------------------------
template <class TIn>
__global__ __launch_bounds__(kHashThreads) void hash_kernel(SkLshParams p, int32_t* buckets, uint32_t* keys,
                                                            int32_t* vals) {
  __shared__ float qs[kHashPos * kMaxD];
  __shared__ float bv_s[kHashThreads / 32][kHashPos];
  __shared__ int bi_s[kHashThreads / 32][kHashPos];
  const int bh = blockIdx.y, r = blockIdx.z, j0 = blockIdx.x * kHashPos;
  const int D = p.D, half = p.n_buckets / 2, R = p.rounds, T = p.T, h = bh % p.H;
  const TIn* qb = q_row_base<TIn>(p, bh);
  for (int idx = threadIdx.x; idx < kHashPos * D; idx += blockDim.x) {
    const int pp = idx / D, d = idx % D;
    const int j = j0 + pp < T ? j0 + pp : T - 1;
    qs[pp * D + d] = ld(qb + int64_t(j) * p.q_st + d);
  }
  __syncthreads();
  float best_v[kHashPos];
  int best_i[kHashPos];
#pragma unroll
  for (int pp = 0; pp < kHashPos; ++pp) best_v[pp] = -INFINITY, best_i[pp] = INT_MAX;
  // rot element (h, d, r, k) at ((h D + d) R + r) half + k
  const float* rot = p.rot + (int64_t(h) * D * R + r) * half;
  const int64_t rot_d = int64_t(R) * half;
  for (int k = threadIdx.x; k < half; k += blockDim.x) {
    float acc[kHashPos];
#pragma unroll
    for (int pp = 0; pp < kHashPos; ++pp) acc[pp] = 0.0f;
    for (int d = 0; d < D; ++d) {
      const float rv = __ldg(rot + d * rot_d + k);
#pragma unroll
      for (int pp = 0; pp < kHashPos; ++pp) acc[pp] = __fadd_rn(acc[pp], __fmul_rn(qs[pp * D + d], rv));
    }
#pragma unroll
    for (int pp = 0; pp < kHashPos; ++pp) {
      if (better(acc[pp], k, best_v[pp], best_i[pp])) best_v[pp] = acc[pp], best_i[pp] = k;
      if (better(-acc[pp], half + k, best_v[pp], best_i[pp])) best_v[pp] = -acc[pp], best_i[pp] = half + k;
    }
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
  for (int pp = 0; pp < kHashPos; ++pp) {
    float v = best_v[pp];
    int i = best_i[pp];
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) {
      const float v2 = __shfl_xor_sync(kFull, v, off);
      const int i2 = __shfl_xor_sync(kFull, i, off);
      if (better(v2, i2, v, i)) v = v2, i = i2;
    }
    if (lane == 0) bv_s[warp][pp] = v, bi_s[warp][pp] = i;
  }
  __syncthreads();
  if (threadIdx.x < kHashPos) {
    const int pp = threadIdx.x;
    float v = bv_s[0][pp];
    int i = bi_s[0][pp];
    for (int w = 1; w < kHashThreads / 32; ++w)
      if (better(bv_s[w][pp], bi_s[w][pp], v, i)) v = bv_s[w][pp], i = bi_s[w][pp];
    const int j = j0 + pp;
    if (j < T) {
      const int64_t ent = (int64_t(bh) * R + r) * T + j;  // = bh * E + (r T + j)
      buckets[ent] = i;
      keys[ent] = uint32_t((int64_t(bh) * R + r) * p.n_buckets + i);
      vals[ent] = r * T + j;
    }
  }
}

__global__ void iota_kernel(int64_t rows, int T, int32_t* order) {
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx < rows * T) order[idx] = int32_t(idx % T);
}

// ---- forward: block (chunk, bh) ---------------------------------------------------------------
template <class TIn, int D>
__global__ __launch_bounds__(kThreads) void forward_chunk_kernel(SkLshParams p, const float* kscale,
                                                                 const int32_t* order, float* o_rounds,
                                                                 float* lse_out) {
  constexpr int DPT = D / kG;
  __shared__ float sk[kTile][D];
  __shared__ float sv[kTile][D];
  __shared__ int spos[kTile];
  const int bh = blockIdx.y, T = p.T;
  const int64_t c = blockIdx.x, E = int64_t(p.rounds) * T;
  const int64_t nch = (E + p.chunk - 1) / p.chunk;
  const int32_t* ord = order + int64_t(bh) * E;
  const float* ks = kscale + int64_t(bh) * T;
  int64_t ca, cb, pa = 0, pb = 0;
  chunk_range(c, p.chunk, E, ca, cb);
  if (p.look_back && nch > 1) chunk_range((c + nch - 1) % nch, p.chunk, E, pa, pb);
  const int64_t nprev = pb - pa, ncols = nprev + (cb - ca);
  const int g = threadIdx.x % kG, rloc = threadIdx.x / kG;
  const TIn* qb = q_row_base<TIn>(p, bh);
  const TIn* vb = v_row_base<TIn>(p, bh);
  for (int64_t rb = ca; rb < cb; rb += kRows) {
    const bool active = rb + rloc < cb;
    const int64_t slot = active ? rb + rloc : cb - 1;
    const int e = ord[slot], qpos = e % T;
    float qv[DPT], o[DPT];
#pragma unroll
    for (int i = 0; i < DPT; ++i) qv[i] = ld(qb + int64_t(qpos) * p.q_st + i * kG + g), o[i] = 0.0f;
    float m = -INFINITY, l = 0.0f;
    for (int64_t x0 = 0; x0 < ncols; x0 += kTile) {
      const int nt = int(ncols - x0 < kTile ? ncols - x0 : kTile);
      __syncthreads();
      for (int idx = threadIdx.x; idx < nt * D; idx += kThreads) {
        const int cc = idx / D, d = idx % D;
        const int64_t x = x0 + cc, s = x < nprev ? pa + x : ca + (x - nprev);
        const int kp = ord[s] % T;
        sk[cc][d] = ld(qb + int64_t(kp) * p.q_st + d) * ks[kp];
        sv[cc][d] = ld(vb + int64_t(kp) * p.v_st + d);
        if (d == 0) spos[cc] = kp;
      }
      __syncthreads();
      for (int cc = 0; cc < nt; ++cc) {
        float dot = 0.0f;
#pragma unroll
        for (int i = 0; i < DPT; ++i) dot = fmaf(qv[i], sk[cc][i * kG + g], dot);
        dot = row_sum(dot);
        const int kp = spos[cc];
        const float a = kp > qpos ? kCausal : (kp == qpos ? kSelf : dot);
        const float mn = fmaxf(m, a);
        const float corr = __expf(m - mn), pr = __expf(a - mn);
        l = l * corr + pr;
#pragma unroll
        for (int i = 0; i < DPT; ++i) o[i] = fmaf(pr, sv[cc][i * kG + g], o[i] * corr);
        m = mn;
      }
    }
    if (active) {
      const float inv = 1.0f / l;
      float* op = o_rounds + (int64_t(bh) * E + e) * D;
#pragma unroll
      for (int i = 0; i < DPT; ++i) op[i * kG + g] = o[i] * inv;
      if (g == 0) lse_out[int64_t(bh) * E + e] = m + logf(l);
    }
  }
}

// out_i = sum_r softmax_r(lse_i^r) o_i^r: one thread per output element.
template <class TOut, class TO>
__global__ void merge_kernel(SkLshParams p, const TO* o_rounds, const float* lse, TOut* out) {
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t total = int64_t(p.B) * p.H * p.T * p.D;
  if (idx >= total) return;
  const int D = p.D, T = p.T, R = p.rounds;
  const int d = int(idx % D);
  const int t = int((idx / D) % T);
  const int64_t bh = idx / (int64_t(D) * T), E = int64_t(R) * T;
  const float* L = lse + bh * E;
  float m = -INFINITY;
  for (int r = 0; r < R; ++r) m = fmaxf(m, L[int64_t(r) * T + t]);
  float sum = 0.0f, acc = 0.0f;
  for (int r = 0; r < R; ++r) {
    const float w = expf(L[int64_t(r) * T + t] - m);
    sum += w;
    acc = fmaf(w, ld(o_rounds + (bh * E + int64_t(r) * T + t) * D + d), acc);
  }
  st(out + idx, acc / sum);
}

// ---- backward ---------------------------------------------------------------------------------
// Per (bh, i), one warp: the merge weights w_ir (from the R lse values) and gout_i = dout_i . out_i
// (the merged output as stored, q's dtype; FlashAttention's D_i = dO_i . O_i). With dO_ir = w_ir g_i
// and dlse_ir = w_ir (g_i . o_ir - gout_i), the softmax backward of entry e = (r, i) reduces to
// dv_j += P_ej w_e g_i and da_ej = P_ej w_e (g_i . v_j - gout_i).
template <class TIn>
__global__ void backward_prep_kernel(SkLshParams p, const TIn* out, const float* lse, const TIn* dout, float* w,
                                     float* gout) {
  const int64_t wid = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const int lane = threadIdx.x & 31;
  if (wid >= int64_t(p.B) * p.H * p.T) return;
  const int D = p.D, T = p.T, R = p.rounds;
  const int64_t bh = wid / T, E = int64_t(R) * T;
  const int t = int(wid % T);
  const float* L = lse + bh * E;
  float m = -INFINITY;
  for (int r = 0; r < R; ++r) m = fmaxf(m, L[int64_t(r) * T + t]);
  float sum = 0.0f;
  for (int r = 0; r < R; ++r) sum += expf(L[int64_t(r) * T + t] - m);
  float go = 0.0f;
  for (int d = lane; d < D; d += 32) go = fmaf(ld(dout + wid * D + d), ld(out + wid * D + d), go);
  go = warp_sum(go);
  if (lane == 0) gout[wid] = go;
  for (int r = lane; r < R; r += 32) w[bh * E + int64_t(r) * T + t] = expf(L[int64_t(r) * T + t] - m) / sum;
}

// Query side: block (chunk, bh), rows = the chunk's query entries, streamed = their key slots.
template <class TIn, int D>
__global__ __launch_bounds__(kThreads) void backward_query_kernel(SkLshParams p, const float* kscale,
                                                                  const int32_t* order, const float* lse,
                                                                  const TIn* dout, const float* w,
                                                                  const float* gout, float* dq_e) {
  constexpr int DPT = D / kG;
  __shared__ float sk[kTile][D];
  __shared__ float sv[kTile][D];
  __shared__ int spos[kTile];
  const int bh = blockIdx.y, T = p.T;
  const int64_t c = blockIdx.x, E = int64_t(p.rounds) * T;
  const int64_t nch = (E + p.chunk - 1) / p.chunk;
  const int32_t* ord = order + int64_t(bh) * E;
  const float* ks = kscale + int64_t(bh) * T;
  int64_t ca, cb, pa = 0, pb = 0;
  chunk_range(c, p.chunk, E, ca, cb);
  if (p.look_back && nch > 1) chunk_range((c + nch - 1) % nch, p.chunk, E, pa, pb);
  const int64_t nprev = pb - pa, ncols = nprev + (cb - ca);
  const int g = threadIdx.x % kG, rloc = threadIdx.x / kG;
  const TIn* qb = q_row_base<TIn>(p, bh);
  const TIn* vb = v_row_base<TIn>(p, bh);
  for (int64_t rb = ca; rb < cb; rb += kRows) {
    const bool active = rb + rloc < cb;
    const int64_t slot = active ? rb + rloc : cb - 1;
    const int e = ord[slot], qpos = e % T;
    const float lse_e = lse[int64_t(bh) * E + e], w_e = w[int64_t(bh) * E + e];
    const float go = gout[int64_t(bh) * T + qpos];
    float qv[DPT], gv[DPT], dq[DPT];
#pragma unroll
    for (int i = 0; i < DPT; ++i) {
      qv[i] = ld(qb + int64_t(qpos) * p.q_st + i * kG + g);
      gv[i] = ld(dout + (int64_t(bh) * T + qpos) * D + i * kG + g);
      dq[i] = 0.0f;
    }
    for (int64_t x0 = 0; x0 < ncols; x0 += kTile) {
      const int nt = int(ncols - x0 < kTile ? ncols - x0 : kTile);
      __syncthreads();
      for (int idx = threadIdx.x; idx < nt * D; idx += kThreads) {
        const int cc = idx / D, d = idx % D;
        const int64_t x = x0 + cc, s = x < nprev ? pa + x : ca + (x - nprev);
        const int kp = ord[s] % T;
        sk[cc][d] = ld(qb + int64_t(kp) * p.q_st + d) * ks[kp];
        sv[cc][d] = ld(vb + int64_t(kp) * p.v_st + d);
        if (d == 0) spos[cc] = kp;
      }
      __syncthreads();
      for (int cc = 0; cc < nt; ++cc) {
        float dot = 0.0f, dp = 0.0f;
#pragma unroll
        for (int i = 0; i < DPT; ++i) {
          dot = fmaf(qv[i], sk[cc][i * kG + g], dot);
          dp = fmaf(gv[i], sv[cc][i * kG + g], dp);
        }
        dot = row_sum(dot);
        dp = row_sum(dp);
        const int kp = spos[cc];
        if (kp < qpos) {  // masked logits are constants: no gradient
          const float da = __expf(dot - lse_e) * w_e * (dp - go);
#pragma unroll
          for (int i = 0; i < DPT; ++i) dq[i] = fmaf(da, sk[cc][i * kG + g], dq[i]);
        }
      }
    }
    if (active) {
      float* dp = dq_e + (int64_t(bh) * E + e) * D;
#pragma unroll
      for (int i = 0; i < DPT; ++i) dp[i * kG + g] = dq[i];
    }
  }
}

// Key side: block (chunk, bh), rows = the chunk's key slots, streamed = the queries that see them
// (this chunk's and, with look-back, the next chunk's, cyclically).
template <class TIn, int D>
__global__ __launch_bounds__(kThreads) void backward_key_kernel(SkLshParams p, const float* kscale,
                                                                const int32_t* order, const float* lse,
                                                                const TIn* dout, const float* w,
                                                                const float* gout, float* dk_e, float* dv_e) {
  constexpr int DPT = D / kG;
  __shared__ float sq[kTile][D];
  __shared__ float sg[kTile][D];
  __shared__ int spos[kTile];
  __shared__ float slse[kTile], sw[kTile], sgo[kTile];
  const int bh = blockIdx.y, T = p.T;
  const int64_t c = blockIdx.x, E = int64_t(p.rounds) * T;
  const int64_t nch = (E + p.chunk - 1) / p.chunk;
  const int32_t* ord = order + int64_t(bh) * E;
  const float* ks = kscale + int64_t(bh) * T;
  int64_t ca, cb, na = 0, nb = 0;
  chunk_range(c, p.chunk, E, ca, cb);
  if (p.look_back && nch > 1) chunk_range((c + 1) % nch, p.chunk, E, na, nb);
  const int64_t nown = cb - ca, ncols = nown + (nb - na);
  const int g = threadIdx.x % kG, rloc = threadIdx.x / kG;
  const TIn* qb = q_row_base<TIn>(p, bh);
  const TIn* vb = v_row_base<TIn>(p, bh);
  const TIn* gb = dout + int64_t(bh) * T * D;
  for (int64_t rb = ca; rb < cb; rb += kRows) {
    const bool active = rb + rloc < cb;
    const int64_t slot = active ? rb + rloc : cb - 1;
    const int e = ord[slot], kpos = e % T;
    const float kscl = ks[kpos];
    float kv[DPT], vv[DPT], dk[DPT], dv[DPT];
#pragma unroll
    for (int i = 0; i < DPT; ++i) {
      kv[i] = ld(qb + int64_t(kpos) * p.q_st + i * kG + g) * kscl;
      vv[i] = ld(vb + int64_t(kpos) * p.v_st + i * kG + g);
      dk[i] = 0.0f;
      dv[i] = 0.0f;
    }
    for (int64_t x0 = 0; x0 < ncols; x0 += kTile) {
      const int nt = int(ncols - x0 < kTile ? ncols - x0 : kTile);
      __syncthreads();
      for (int idx = threadIdx.x; idx < nt * D; idx += kThreads) {
        const int cc = idx / D, d = idx % D;
        const int64_t x = x0 + cc, s = x < nown ? ca + x : na + (x - nown);
        const int qe = ord[s], qp = qe % T;
        sq[cc][d] = ld(qb + int64_t(qp) * p.q_st + d);
        sg[cc][d] = ld(gb + int64_t(qp) * D + d);
        if (d == 0) {
          spos[cc] = qp;
          slse[cc] = lse[int64_t(bh) * E + qe];
          sw[cc] = w[int64_t(bh) * E + qe];
          sgo[cc] = gout[int64_t(bh) * T + qp];
        }
      }
      __syncthreads();
      for (int cc = 0; cc < nt; ++cc) {
        float dot = 0.0f, dp = 0.0f;
#pragma unroll
        for (int i = 0; i < DPT; ++i) {
          dot = fmaf(sq[cc][i * kG + g], kv[i], dot);
          dp = fmaf(sg[cc][i * kG + g], vv[i], dp);
        }
        dot = row_sum(dot);
        dp = row_sum(dp);
        const int qp = spos[cc];
        const float a = kpos > qp ? kCausal : (kpos == qp ? kSelf : dot);
        const float pw = __expf(a - slse[cc]) * sw[cc];
#pragma unroll
        for (int i = 0; i < DPT; ++i) dv[i] = fmaf(pw, sg[cc][i * kG + g], dv[i]);
        if (kpos < qp) {
          const float da = pw * (dp - sgo[cc]);
#pragma unroll
          for (int i = 0; i < DPT; ++i) dk[i] = fmaf(da, sq[cc][i * kG + g], dk[i]);
        }
      }
    }
    if (active) {
      float* kp_out = dk_e + (int64_t(bh) * E + e) * D;
      float* vp_out = dv_e + (int64_t(bh) * E + e) * D;
#pragma unroll
      for (int i = 0; i < DPT; ++i) kp_out[i * kG + g] = dk[i], vp_out[i * kG + g] = dv[i];
    }
  }
}

// Per (bh, j), one warp: sum the rounds' partial gradients, then the key normalisation
// k = q s c: dq += c (s dk - s^3 / D q (q . dk)).
// dk2_e, dv2_e (null unless the fused tensor-core backward ran with look-back): the second partial
// of every key entry (from the next chunk's block), added after the first.
template <class TIn>
__global__ void backward_final_kernel(SkLshParams p, const float* dq_e, const float* dk_e, const float* dv_e,
                                      const float* dk2_e, const float* dv2_e, TIn* dq, TIn* dv) {
  constexpr int kPer = kMaxD / 32;
  const int64_t wid = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const int lane = threadIdx.x & 31;
  if (wid >= int64_t(p.B) * p.H * p.T) return;
  const int D = p.D, T = p.T, R = p.rounds;
  const int bh = int(wid / T), j = int(wid % T);
  const int64_t E = int64_t(R) * T;
  const TIn* q = q_row_base<TIn>(p, bh) + int64_t(j) * p.q_st;
  float qv[kPer], gq[kPer], gk[kPer], gv[kPer];
  float ms = 0.0f, qdk = 0.0f;
#pragma unroll
  for (int u = 0; u < kPer; ++u) {
    const int d = lane + 32 * u;
    qv[u] = gq[u] = gk[u] = gv[u] = 0.0f;
    if (d < D) {
      qv[u] = ld(q + d);
      for (int r = 0; r < R; ++r) {
        const int64_t off = (int64_t(bh) * E + int64_t(r) * T + j) * D + d;
        gq[u] += dq_e[off];
        gk[u] += dk_e[off];
        gv[u] += dv_e[off];
        if (dk2_e) {
          gk[u] += dk2_e[off];
          gv[u] += dv2_e[off];
        }
      }
      ms = fmaf(qv[u], qv[u], ms);
      qdk = fmaf(qv[u], gk[u], qdk);
    }
  }
  ms = warp_sum(ms);
  qdk = warp_sum(qdk);
  const float s = 1.0f / sqrtf(ms / float(D) + kEps), cnorm = 1.0f / sqrtf(float(D));
  const float s3 = s * s * s / float(D);
#pragma unroll
  for (int u = 0; u < kPer; ++u) {
    const int d = lane + 32 * u;
    if (d < D) {
      st(dq + wid * D + d, gq[u] + cnorm * (s * gk[u] - s3 * qv[u] * qdk));
      st(dv + wid * D + d, gv[u]);
    }
  }
}

// ---- row-vectorised passes (D 64 / 128, 16-byte aligned buffers) --------------------------------
// The same three passes as merge_kernel, backward_prep_kernel and backward_final_kernel, with
// G = D / 4 threads per (bh, t) row, each owning 4 consecutive dims (one float4 of every fp32
// per-entry buffer): one index division per thread instead of three 64-bit ones per element (the
// merge), and every load of a row issued before its use (prep, final), so the passes run at memory
// speed instead of latency. Per-element arithmetic in the same order as the scalar kernels (merge
// and the sums of the partials bit for bit; the dot products of prep and final are summed in
// another order). The scalar kernels stay for buffers that are not 16-byte aligned.
__device__ __forceinline__ float4 ld4(const float* p) { return *reinterpret_cast<const float4*>(p); }
__device__ __forceinline__ float4 ld4(const __nv_bfloat16* p) {
  const uint2 u = *reinterpret_cast<const uint2*>(p);
  const __nv_bfloat162 a = *reinterpret_cast<const __nv_bfloat162*>(&u.x);
  const __nv_bfloat162 b = *reinterpret_cast<const __nv_bfloat162*>(&u.y);
  return make_float4(__low2float(a), __high2float(a), __low2float(b), __high2float(b));
}
__device__ __forceinline__ void st4(float* p, float4 v) { *reinterpret_cast<float4*>(p) = v; }
__device__ __forceinline__ void st4(__nv_bfloat16* p, float4 v) {
  const __nv_bfloat162 a = __floats2bfloat162_rn(v.x, v.y), b = __floats2bfloat162_rn(v.z, v.w);
  uint2 u;
  u.x = *reinterpret_cast<const uint32_t*>(&a);
  u.y = *reinterpret_cast<const uint32_t*>(&b);
  *reinterpret_cast<uint2*>(p) = u;
}
__device__ __forceinline__ float4 fma4(float w, float4 o, float4 acc) {
  return make_float4(fmaf(w, o.x, acc.x), fmaf(w, o.y, acc.y), fmaf(w, o.z, acc.z), fmaf(w, o.w, acc.w));
}
__device__ __forceinline__ float4 add4(float4 a, float4 b) { return make_float4(a.x + b.x, a.y + b.y, a.z + b.z, a.w + b.w); }
constexpr int kVecThreads = 256;

// Key scales, D / 4 threads per (bh, j) row (four consecutive elements each, the products summed as
// in backward_final_rows_kernel): ~4x the loads in flight of key_scale_kernel's warp per row, which
// ran latency-bound (0.19 ms for 786k rows of 64 on an H200).
template <class TIn, int D>
__global__ void __launch_bounds__(kVecThreads) key_scale_rows_kernel(SkLshParams p, float* kscale) {
  constexpr int G = D / 4, kRowsPerBlock = kVecThreads / G;
  const int row = int(blockIdx.x) * kRowsPerBlock + int(threadIdx.x) / G, c = int(threadIdx.x) % G;
  const int n_rows = p.B * p.H * p.T;
  const bool valid = row < n_rows;  // a tail group recomputes the last row (every lane stays for the shuffles)
  const int r = valid ? row : n_rows - 1, bh = r / p.T, j = r % p.T;
  const TIn* q = q_row_base<TIn>(p, bh) + int64_t(j) * p.q_st + 4 * c;  // strided rows: scalar loads
  const float4 qv = make_float4(ld(q), ld(q + 1), ld(q + 2), ld(q + 3));
  float ms = fmaf(qv.x, qv.x, fmaf(qv.y, qv.y, fmaf(qv.z, qv.z, qv.w * qv.w)));
  ms = group_sum<G>(ms);
  if (valid && c == 0) kscale[row] = 1.0f / sqrtf(ms / float(D) + kEps) / sqrtf(float(D));
}

// TO: o_rounds' type (f32, or bf16 from the forward v2).
template <class TOut, class TO, int D>
__global__ void __launch_bounds__(kVecThreads) merge_rows_kernel(SkLshParams p, const TO* o_rounds, const float* lse,
                                                                 TOut* out) {
  constexpr int G = D / 4, kRowsPerBlock = kVecThreads / G;
  const int row = int(blockIdx.x) * kRowsPerBlock + int(threadIdx.x) / G, c = int(threadIdx.x) % G;
  const int T = p.T, R = p.rounds;
  if (row >= p.B * p.H * T) return;
  const int bh = row / T, t = row % T;
  const int64_t E = int64_t(R) * T;
  const float* L = lse + bh * E + t;
  float m = -INFINITY;
  for (int r = 0; r < R; ++r) m = fmaxf(m, L[int64_t(r) * T]);
  float sum = 0.0f;
  float4 acc = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
  for (int r = 0; r < R; ++r) {
    const float w = expf(L[int64_t(r) * T] - m);
    sum += w;
    acc = fma4(w, ld4(o_rounds + (bh * E + int64_t(r) * T + t) * D + 4 * c), acc);
  }
  st4(out + int64_t(row) * D + 4 * c, make_float4(acc.x / sum, acc.y / sum, acc.z / sum, acc.w / sum));
}

// The merge of bf16 o_rounds (the forward v2's) with D / 8 threads per row, one 16-byte load of
// each round's 8 elements per thread, every round's load issued before the first use (R <= 4,
// checked by the launcher): twice the bytes in flight per thread of merge_rows_kernel, which ran at
// ~2.2 TB/s. Same arithmetic per element as merge_rows_kernel (bit for bit).
constexpr int kMerge8MaxRounds = 4;
// RMAX: rounds held in registers (2 or 4; p.rounds <= RMAX): at RMAX 2 the kernel needs fewer
// registers, so more warps (loads) are in flight.
template <class TOut, int D, int RMAX>
__global__ void __launch_bounds__(kVecThreads) merge_rows8_kernel(SkLshParams p, const __nv_bfloat16* o_rounds,
                                                                  const float* lse, TOut* out) {
  constexpr int G = D / 8, kRowsPerBlock = kVecThreads / G;
  const int row = int(blockIdx.x) * kRowsPerBlock + int(threadIdx.x) / G, c = int(threadIdx.x) % G;
  const int T = p.T, R = p.rounds;
  if (row >= p.B * p.H * T) return;
  const int bh = row / T, t = row % T;
  const int64_t E = int64_t(R) * T;
  const float* L = lse + bh * E + t;
  uint4 o[RMAX];
#pragma unroll
  for (int r = 0; r < RMAX; ++r)
    if (r < R) o[r] = *reinterpret_cast<const uint4*>(o_rounds + (bh * E + int64_t(r) * T + t) * D + 8 * c);
  float m = -INFINITY;
  for (int r = 0; r < R; ++r) m = fmaxf(m, L[int64_t(r) * T]);
  float sum = 0.0f, acc[8] = {};
#pragma unroll
  for (int r = 0; r < RMAX; ++r) {
    if (r >= R) break;
    const float w = expf(L[int64_t(r) * T] - m);
    sum += w;
    const __nv_bfloat162* o2 = reinterpret_cast<const __nv_bfloat162*>(&o[r]);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      acc[2 * i] = fmaf(w, __low2float(o2[i]), acc[2 * i]);
      acc[2 * i + 1] = fmaf(w, __high2float(o2[i]), acc[2 * i + 1]);
    }
  }
  TOut* dst = out + int64_t(row) * D + 8 * c;
  st4(dst, make_float4(acc[0] / sum, acc[1] / sum, acc[2] / sum, acc[3] / sum));
  st4(dst + 4, make_float4(acc[4] / sum, acc[5] / sum, acc[6] / sum, acc[7] / sum));
}

template <class TIn, int D>
__global__ void __launch_bounds__(kVecThreads) backward_prep_rows_kernel(SkLshParams p, const TIn* out,
                                                                         const float* lse, const TIn* dout, float* w,
                                                                         float* gout) {
  constexpr int G = D / 4, kRowsPerBlock = kVecThreads / G;
  const int row = int(blockIdx.x) * kRowsPerBlock + int(threadIdx.x) / G, c = int(threadIdx.x) % G;
  const int T = p.T, R = p.rounds, n_rows = p.B * p.H * T;
  // Past the last row the group computes row n_rows - 1 again and writes nothing: every lane of
  // the warp stays for the shuffles (two rows share a warp at D 64).
  const bool valid = row < n_rows;
  const int rr = valid ? row : n_rows - 1, bh = rr / T, t = rr % T;
  const int64_t E = int64_t(R) * T;
  const float4 o = ld4(out + int64_t(rr) * D + 4 * c);
  const float4 g = ld4(dout + int64_t(rr) * D + 4 * c);
  float go = fmaf(g.x, o.x, fmaf(g.y, o.y, fmaf(g.z, o.z, g.w * o.w)));
  go = group_sum<G>(go);
  if (!valid) return;
  if (c == 0) gout[row] = go;
  if (c < R) {  // the merge weights: one thread per round (R <= G checked by the launcher)
    const float* L = lse + bh * E + t;
    float m = -INFINITY;
    for (int r = 0; r < R; ++r) m = fmaxf(m, L[int64_t(r) * T]);
    float sum = 0.0f;
    for (int r = 0; r < R; ++r) sum += expf(L[int64_t(r) * T] - m);
    w[bh * E + int64_t(c) * T + t] = expf(L[int64_t(c) * T] - m) / sum;
  }
}

// TP: the partials' type (float, or bf16 from the fused tensor-core backward).
template <class TIn, class TP, int D>
__global__ void __launch_bounds__(kVecThreads) backward_final_rows_kernel(SkLshParams p, const TP* dq_e,
                                                                          const TP* dk_e, const TP* dv_e,
                                                                          const TP* dk2_e, const TP* dv2_e,
                                                                          TIn* dq, TIn* dv) {
  constexpr int G = D / 4, kRowsPerBlock = kVecThreads / G;
  const int row = int(blockIdx.x) * kRowsPerBlock + int(threadIdx.x) / G, c = int(threadIdx.x) % G;
  const int T = p.T, R = p.rounds, n_rows = p.B * p.H * T;
  const bool valid = row < n_rows;  // as in the prep pass: a tail group recomputes the last row
  const int bh = (valid ? row : n_rows - 1) / T, j = (valid ? row : n_rows - 1) % T;
  const int64_t E = int64_t(R) * T;
  const TIn* q = q_row_base<TIn>(p, bh) + int64_t(j) * p.q_st + 4 * c;  // strided rows: scalar loads
  const float4 qv = make_float4(ld(q), ld(q + 1), ld(q + 2), ld(q + 3));
  float4 gq = make_float4(0.0f, 0.0f, 0.0f, 0.0f), gk = gq, gv = gq;
  for (int r = 0; r < R; ++r) {
    const int64_t off = (int64_t(bh) * E + int64_t(r) * T + j) * D + 4 * c;
    gq = add4(gq, ld4(dq_e + off));
    gk = add4(gk, ld4(dk_e + off));
    gv = add4(gv, ld4(dv_e + off));
    if (dk2_e) {
      gk = add4(gk, ld4(dk2_e + off));
      gv = add4(gv, ld4(dv2_e + off));
    }
  }
  float ms = fmaf(qv.x, qv.x, fmaf(qv.y, qv.y, fmaf(qv.z, qv.z, qv.w * qv.w)));
  float qdk = fmaf(qv.x, gk.x, fmaf(qv.y, gk.y, fmaf(qv.z, gk.z, qv.w * gk.w)));
  ms = group_sum<G>(ms);
  qdk = group_sum<G>(qdk);
  const float s = 1.0f / sqrtf(ms / float(D) + kEps), cnorm = 1.0f / sqrtf(float(D));
  const float s3 = s * s * s / float(D);
  const float4 out_q = make_float4(gq.x + cnorm * (s * gk.x - s3 * qv.x * qdk), gq.y + cnorm * (s * gk.y - s3 * qv.y * qdk),
                                   gq.z + cnorm * (s * gk.z - s3 * qv.z * qdk), gq.w + cnorm * (s * gk.w - s3 * qv.w * qdk));
  if (!valid) return;
  st4(dq + int64_t(row) * D + 4 * c, out_q);
  st4(dv + int64_t(row) * D + 4 * c, gv);
}

// The final pass of the fused backward's bf16 partials with D / 8 threads per (bh, j) row, 16-byte
// loads of every buffer, all RMAX rounds' loads issued before the first use (R <= RMAX, checked by
// the launcher; q's rows 16-byte aligned: the tensor-core path's inputs are). Same per-element sums
// in the same order as backward_final_rows_kernel (the dot products of the key-normalisation
// backward are summed in another order). dk2_e, dv2_e may be null (no look-back partials).
template <int D, int RMAX>
__global__ void __launch_bounds__(kVecThreads) backward_final_rows8_kernel(
    SkLshParams p, const __nv_bfloat16* dq_e, const __nv_bfloat16* dk_e, const __nv_bfloat16* dv_e,
    const __nv_bfloat16* dk2_e, const __nv_bfloat16* dv2_e, __nv_bfloat16* dq, __nv_bfloat16* dv) {
  constexpr int G = D / 8, kRowsPerBlock = kVecThreads / G;
  const int row = int(blockIdx.x) * kRowsPerBlock + int(threadIdx.x) / G, c = int(threadIdx.x) % G;
  const int T = p.T, R = p.rounds, n_rows = p.B * p.H * T;
  const bool valid = row < n_rows;  // a tail group recomputes the last row (every lane stays for the shuffles)
  const int bh = (valid ? row : n_rows - 1) / T, j = (valid ? row : n_rows - 1) % T;
  const int64_t E = int64_t(R) * T;
  const uint4 qraw = *reinterpret_cast<const uint4*>(q_row_base<__nv_bfloat16>(p, bh) + int64_t(j) * p.q_st + 8 * c);
  uint4 raw[RMAX][5];
#pragma unroll
  for (int r = 0; r < RMAX; ++r) {
    if (r >= R) break;
    const int64_t off = (int64_t(bh) * E + int64_t(r) * T + j) * D + 8 * c;
    raw[r][0] = *reinterpret_cast<const uint4*>(dq_e + off);
    raw[r][1] = *reinterpret_cast<const uint4*>(dk_e + off);
    raw[r][2] = *reinterpret_cast<const uint4*>(dv_e + off);
    if (dk2_e) {
      raw[r][3] = *reinterpret_cast<const uint4*>(dk2_e + off);
      raw[r][4] = *reinterpret_cast<const uint4*>(dv2_e + off);
    }
  }
  auto elem = [](const uint4& u, int i) {  // element i (0..7) of 8 bf16
    const uint32_t w = i < 4 ? (i < 2 ? u.x : u.y) : (i < 6 ? u.z : u.w);
    const __nv_bfloat162 b = *reinterpret_cast<const __nv_bfloat162*>(&w);
    return (i & 1) ? __high2float(b) : __low2float(b);
  };
  float qv[8], gq[8] = {}, gk[8] = {}, gv[8] = {};
#pragma unroll
  for (int i = 0; i < 8; ++i) qv[i] = elem(qraw, i);
#pragma unroll
  for (int r = 0; r < RMAX; ++r) {
    if (r >= R) break;
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      gq[i] += elem(raw[r][0], i);
      gk[i] += elem(raw[r][1], i);
      gv[i] += elem(raw[r][2], i);
      if (dk2_e) {
        gk[i] += elem(raw[r][3], i);
        gv[i] += elem(raw[r][4], i);
      }
    }
  }
  float ms = 0.f, qdk = 0.f;
#pragma unroll
  for (int i = 0; i < 8; ++i) ms = fmaf(qv[i], qv[i], ms), qdk = fmaf(qv[i], gk[i], qdk);
  ms = group_sum<G>(ms);
  qdk = group_sum<G>(qdk);
  const float s = 1.0f / sqrtf(ms / float(D) + kEps), cnorm = 1.0f / sqrtf(float(D));
  const float s3 = s * s * s / float(D);
  float oq[8];
#pragma unroll
  for (int i = 0; i < 8; ++i) oq[i] = gq[i] + cnorm * (s * gk[i] - s3 * qv[i] * qdk);
  if (!valid) return;
  st4(dq + int64_t(row) * D + 8 * c, make_float4(oq[0], oq[1], oq[2], oq[3]));
  st4(dq + int64_t(row) * D + 8 * c + 4, make_float4(oq[4], oq[5], oq[6], oq[7]));
  st4(dv + int64_t(row) * D + 8 * c, make_float4(gv[0], gv[1], gv[2], gv[3]));
  st4(dv + int64_t(row) * D + 8 * c + 4, make_float4(gv[4], gv[5], gv[6], gv[7]));
}

bool aligned16(const void* ptr) { return ptr == nullptr || reinterpret_cast<uintptr_t>(ptr) % 16 == 0; }
// Blocks of the row-vectorised passes for p's B * H * T rows.
template <int D>
unsigned vec_blocks(const SkLshParams* p) {
  constexpr int kRowsPerBlock = kVecThreads / (D / 4);
  return unsigned((int64_t(p->B) * p->H * p->T + kRowsPerBlock - 1) / kRowsPerBlock);
}

int launch_status() { return cudaGetLastError() == cudaSuccess ? SK_KERNEL_OK : SK_KERNEL_LAUNCH_FAILED; }

// The key scales of every (bh, j) row: the row-vectorised kernel at D 64 and 128, else one warp per row.
void launch_key_scale(const SkLshParams* p, float* kscale, cudaStream_t s) {
  const bool bf16 = p->dtype == SK_KDT_BF16;
  if (p->D == 64) {
    if (bf16) key_scale_rows_kernel<__nv_bfloat16, 64><<<vec_blocks<64>(p), kVecThreads, 0, s>>>(*p, kscale);
    else key_scale_rows_kernel<float, 64><<<vec_blocks<64>(p), kVecThreads, 0, s>>>(*p, kscale);
  } else if (p->D == 128) {
    if (bf16) key_scale_rows_kernel<__nv_bfloat16, 128><<<vec_blocks<128>(p), kVecThreads, 0, s>>>(*p, kscale);
    else key_scale_rows_kernel<float, 128><<<vec_blocks<128>(p), kVecThreads, 0, s>>>(*p, kscale);
  } else {
    const unsigned warp_blocks = unsigned((int64_t(p->B) * p->H * p->T * 32 + 255) / 256);
    if (bf16) key_scale_kernel<__nv_bfloat16><<<warp_blocks, 256, 0, s>>>(*p, kscale);
    else key_scale_kernel<float><<<warp_blocks, 256, 0, s>>>(*p, kscale);
  }
}

// Per-phase timing (sk_lsh_phase_timing): an event recorded on the stream after each phase while
// enabled; a phase's time runs from the latest earlier mark to its own (host gaps included).
struct PhaseTimer {
  bool on = false, made = false;
  cudaEvent_t ev[SK_LSH_PHASES + 1];
  bool hit[SK_LSH_PHASES + 1] = {};
};
PhaseTimer g_phases;
void mark(int i, cudaStream_t s) {
  if (!g_phases.on) return;
  if (cudaEventRecord(g_phases.ev[i], s) == cudaSuccess) g_phases.hit[i] = true;
}

int64_t rows(const SkLshParams* p) { return int64_t(p->B) * p->H; }
int64_t entries(const SkLshParams* p) { return int64_t(p->rounds) * p->T; }
int n_chunks(const SkLshParams* p) { return int((entries(p) + p->chunk - 1) / p->chunk); }

int end_bit(const SkLshParams* p) {
  const uint64_t max_key = uint64_t(rows(p)) * uint64_t(p->rounds) * uint64_t(p->n_buckets);
  int bits = 1;
  while (bits < 32 && (uint64_t(1) << bits) < max_key) ++bits;
  return bits;
}

bool hashed(const SkLshParams* p) { return p->look_back != 0; }

int check(const SkLshParams* p, bool need_rot) {
  if (!p || !p->q || !p->v) return SK_KERNEL_BAD_ARG;
  if (p->dtype != SK_KDT_BF16 && p->dtype != SK_KDT_F32) return SK_KERNEL_UNSUPPORTED_DTYPE;
  if (p->B < 0 || p->H < 0 || p->T < 0 || p->D < 1 || p->D > kMaxD || p->rounds < 1 || p->chunk < 1)
    return SK_KERNEL_BAD_ARG;
  if (rows(p) > 65535 || entries(p) * rows(p) >= (int64_t(1) << 31)) return SK_KERNEL_BAD_ARG;
  if (hashed(p)) {
    if ((need_rot && !p->rot) || p->n_buckets < 2 || p->n_buckets % 2 != 0) return SK_KERNEL_BAD_ARG;
    if (uint64_t(rows(p)) * uint64_t(p->rounds) * uint64_t(p->n_buckets) > (uint64_t(1) << 32)) return SK_KERNEL_BAD_ARG;
  } else if (p->rounds != 1) {
    return SK_KERNEL_BAD_ARG;
  }
  return SK_KERNEL_OK;
}

// The merge over rounds of o_rounds (TO) into out.
template <class TIn, class TO, int D>
void launch_merge(const SkLshParams* p, const TO* o_rounds, const float* lse, void* out, cudaStream_t s) {
  if constexpr (std::is_same_v<TO, __nv_bfloat16>) {
    if (aligned16(o_rounds) && aligned16(out) && p->rounds <= kMerge8MaxRounds) {
      constexpr int kRowsPerBlock = kVecThreads / (D / 8);
      const unsigned blocks = unsigned((int64_t(p->B) * p->H * p->T + kRowsPerBlock - 1) / kRowsPerBlock);
      if (p->rounds <= 2)
        merge_rows8_kernel<TIn, D, 2><<<blocks, kVecThreads, 0, s>>>(*p, o_rounds, lse, static_cast<TIn*>(out));
      else
        merge_rows8_kernel<TIn, D, kMerge8MaxRounds>
            <<<blocks, kVecThreads, 0, s>>>(*p, o_rounds, lse, static_cast<TIn*>(out));
      return;
    }
  }
  if (aligned16(o_rounds) && aligned16(out)) {
    merge_rows_kernel<TIn, TO, D><<<vec_blocks<D>(p), kVecThreads, 0, s>>>(*p, o_rounds, lse, static_cast<TIn*>(out));
  } else {
    const int64_t total = rows(p) * p->T * p->D;
    merge_kernel<TIn, TO><<<unsigned((total + 255) / 256), 256, 0, s>>>(*p, o_rounds, lse, static_cast<TIn*>(out));
  }
}

template <class TIn, int D>
int forward_impl(const SkLshParams* p, const float* kscale, const int32_t* order, void* o_rounds, float* lse,
                 void* out, cudaStream_t s) {
  const dim3 grid(unsigned(n_chunks(p)), unsigned(rows(p)));
  const int impl = sk_lsh_chunk_impl(p);
  if (impl < 0) return SK_KERNEL_BAD_ARG;
  const bool o_bf16 = sk_lsh_o_rounds_bf16(p) != 0;
  float* of = static_cast<float*>(o_rounds);
  if (o_bf16) {
    if (int st = sk_lsh_mma_forward_chunks_v2(p, kscale, order, o_rounds, lse, s)) return st;
  } else if (impl >= 2) {
    if (int st = sk_lsh_mma_forward_chunks(p, kscale, order, of, lse, s)) return st;
  } else {
    forward_chunk_kernel<TIn, D><<<grid, kThreads, 0, s>>>(*p, kscale, order, of, lse);
  }
  mark(3, s);
  if (o_bf16) launch_merge<TIn, __nv_bfloat16, D>(p, static_cast<const __nv_bfloat16*>(o_rounds), lse, out, s);
  else launch_merge<TIn, float, D>(p, of, lse, out, s);
  mark(4, s);
  return launch_status();
}

template <class TIn, int D>
int backward_impl(const SkLshParams* p, const float* kscale, const int32_t* order, const void* out,
                  const float* lse, const void* dout, float* w, float* gout, void* dq_e, void* dk_e, void* dv_e,
                  void* dk2_e, void* dv2_e, void* dq, void* dv, cudaStream_t s) {
  const dim3 grid(unsigned(n_chunks(p)), unsigned(rows(p)));
  const unsigned warp_blocks = unsigned((rows(p) * p->T * 32 + 255) / 256);
  const TIn* g = static_cast<const TIn*>(dout);
  const TIn* o = static_cast<const TIn*>(out);
  const int impl = sk_lsh_chunk_impl(p);
  if (impl < 0) return SK_KERNEL_BAD_ARG;
  const bool fused = impl == 2 && sk_lsh_mma_fused_backward_ok(p);
  if (!fused) {  // (the fused kernel computes w and gout of its query entries itself)
    if (aligned16(out) && aligned16(dout) && p->rounds <= D / 4)
      backward_prep_rows_kernel<TIn, D><<<vec_blocks<D>(p), kVecThreads, 0, s>>>(*p, o, lse, g, w, gout);
    else
      backward_prep_kernel<TIn><<<warp_blocks, 256, 0, s>>>(*p, o, lse, g, w, gout);
  }
  mark(5, s);
  const bool second = fused && p->look_back && n_chunks(p) > 1;  // keys get a partial from the next chunk
  if (fused && second && (!dk2_e || !dv2_e)) return SK_KERNEL_BAD_ARG;
  const bool vec = aligned16(dq_e) && aligned16(dk_e) && aligned16(dv_e) && aligned16(dq) && aligned16(dv) &&
                   (!second || (aligned16(dk2_e) && aligned16(dv2_e)));
  if (fused) {  // bf16 partials: only the row-vectorised final pass reads them
    if (!vec || !aligned16(out) || !aligned16(dout)) return SK_KERNEL_MISALIGNED;
    if (int st = sk_lsh_mma_backward_fused(p, kscale, order, lse, dout, out, dq_e, dk_e, dv_e, dk2_e, dv2_e, s))
      return st;
    mark(6, s);
    using P = __nv_bfloat16;
    const P *pq = static_cast<const P*>(dq_e), *pk = static_cast<const P*>(dk_e), *pv = static_cast<const P*>(dv_e);
    const P* pk2 = second ? static_cast<const P*>(dk2_e) : nullptr;
    const P* pv2 = second ? static_cast<const P*>(dv2_e) : nullptr;
    if constexpr (std::is_same_v<TIn, P>) {
      if (p->rounds <= 4) {  // (the fused path's q rows are 16-byte aligned: sk_lsh_mma_supported)
        constexpr int kRowsPerBlock = kVecThreads / (D / 8);
        const unsigned blocks = unsigned((int64_t(p->B) * p->H * p->T + kRowsPerBlock - 1) / kRowsPerBlock);
        TIn *oq = static_cast<TIn*>(dq), *ov = static_cast<TIn*>(dv);
        if (p->rounds <= 2)
          backward_final_rows8_kernel<D, 2><<<blocks, kVecThreads, 0, s>>>(*p, pq, pk, pv, pk2, pv2, oq, ov);
        else
          backward_final_rows8_kernel<D, 4><<<blocks, kVecThreads, 0, s>>>(*p, pq, pk, pv, pk2, pv2, oq, ov);
        mark(7, s);
        return launch_status();
      }
    }
    backward_final_rows_kernel<TIn, P, D><<<vec_blocks<D>(p), kVecThreads, 0, s>>>(
        *p, pq, pk, pv, pk2, pv2, static_cast<TIn*>(dq), static_cast<TIn*>(dv));
    mark(7, s);
    return launch_status();
  }
  float* dqf = static_cast<float*>(dq_e);
  float* dkf = static_cast<float*>(dk_e);
  float* dvf = static_cast<float*>(dv_e);
  if (impl >= 2) {
    if (int st = sk_lsh_mma_backward_chunks(p, kscale, order, lse, dout, w, gout, dqf, dkf, dvf, s)) return st;
  } else {
    backward_query_kernel<TIn, D><<<grid, kThreads, 0, s>>>(*p, kscale, order, lse, g, w, gout, dqf);
    backward_key_kernel<TIn, D><<<grid, kThreads, 0, s>>>(*p, kscale, order, lse, g, w, gout, dkf, dvf);
  }
  mark(6, s);
  if (vec)
    backward_final_rows_kernel<TIn, float, D><<<vec_blocks<D>(p), kVecThreads, 0, s>>>(
        *p, dqf, dkf, dvf, nullptr, nullptr, static_cast<TIn*>(dq), static_cast<TIn*>(dv));
  else
    backward_final_kernel<TIn><<<warp_blocks, 256, 0, s>>>(*p, dqf, dkf, dvf, nullptr, nullptr, static_cast<TIn*>(dq),
                                                            static_cast<TIn*>(dv));
  mark(7, s);
  return launch_status();
}

}  // namespace

// Returns FN<TIn, D>(...) for p's dtype and head dim.
#define SK_LSH_DISPATCH(p, FN, ...)                                                                      \
  do {                                                                                                   \
    const bool bf16_ = (p)->dtype == SK_KDT_BF16;                                                        \
    if ((p)->D == 64) return bf16_ ? FN<__nv_bfloat16, 64>(__VA_ARGS__) : FN<float, 64>(__VA_ARGS__);    \
    if ((p)->D == 128) return bf16_ ? FN<__nv_bfloat16, 128>(__VA_ARGS__) : FN<float, 128>(__VA_ARGS__); \
    return SK_KERNEL_BAD_ARG;                                                                            \
  } while (0)

extern "C" int sk_lsh_supports_head_dim(int D) { return D == 64 || D == 128 ? 1 : 0; }

extern "C" int sk_lsh_chunk_impl(const SkLshParams* p) {
  if (!p) return -1;
  const bool mma = sk_lsh_mma_supported(p) != 0;
  if (p->impl == 2 || p->impl == 3) return mma ? p->impl : -1;
  if (p->impl == 1) return 1;
  return mma ? 2 : 1;
}

namespace {
// Bytes of the cub sort's temporary storage, rounded up to 256 (the hash v2 scratch follows).
int64_t cub_sort_bytes(const SkLshParams* p) {
  size_t bytes = 0;
  const int n = int(rows(p) * entries(p));
  cub::DeviceRadixSort::SortPairs(nullptr, bytes, static_cast<const uint32_t*>(nullptr), static_cast<uint32_t*>(nullptr),
                                  static_cast<const int32_t*>(nullptr), static_cast<int32_t*>(nullptr), n, 0,
                                  end_bit(p));
  return (int64_t(bytes) + 255) / 256 * 256;
}
// Hash v2 (rotations split once per call) with the newest tensor-core kernels (impl 2).
int64_t hash_scratch_bytes(const SkLshParams* p) {
  return sk_lsh_chunk_impl(p) == 2 ? sk_lsh_mma_hash_scratch_bytes(p) : 0;
}
}  // namespace

extern "C" int64_t sk_lsh_sort_temp_bytes(const SkLshParams* p) {
  if (check(p, false) != SK_KERNEL_OK || !hashed(p) || rows(p) * entries(p) == 0) return 0;
  return cub_sort_bytes(p) + hash_scratch_bytes(p);
}

extern "C" int sk_cuda_lsh_hash_rows(const SkLshParams* p, float* kscale, int32_t* buckets, uint32_t* keys,
                                     int32_t* vals, cudaStream_t s) {
  if (!p || !p->look_back || !kscale || !buckets || !keys || !vals) return SK_KERNEL_BAD_ARG;
  if (int st = check(p, true)) return st;
  const int64_t n_pos = rows(p) * p->T;
  if (n_pos == 0) return SK_KERNEL_OK;
  const dim3 grid(unsigned((p->T + kHashPos - 1) / kHashPos), unsigned(rows(p)), unsigned(p->rounds));
  launch_key_scale(p, kscale, s);
  if (p->dtype == SK_KDT_BF16) hash_kernel<__nv_bfloat16><<<grid, kHashThreads, 0, s>>>(*p, buckets, keys, vals);
  else hash_kernel<float><<<grid, kHashThreads, 0, s>>>(*p, buckets, keys, vals);
  return launch_status();
}

extern "C" int sk_cuda_lsh_layout(const SkLshParams* p, float* kscale, int32_t* buckets, uint32_t* sort_keys,
                                  uint32_t* sort_keys_out, int32_t* sort_vals, void* temp, int64_t temp_bytes,
                                  int32_t* order, cudaStream_t s) {
  if (int st = check(p, true)) return st;
  if (!kscale || !order) return SK_KERNEL_BAD_ARG;
  const int64_t n_pos = rows(p) * p->T;
  if (n_pos == 0) return SK_KERNEL_OK;
  if (hashed(p)) {
    if (!buckets || !sort_keys || !sort_keys_out || !sort_vals || (!temp && temp_bytes > 0)) return SK_KERNEL_BAD_ARG;
    if (temp_bytes < sk_lsh_sort_temp_bytes(p) || p->rounds > 65535) return SK_KERNEL_BAD_ARG;
  }
  mark(0, s);
  if (!hashed(p)) {
    launch_key_scale(p, kscale, s);
    iota_kernel<<<unsigned((n_pos + 255) / 256), 256, 0, s>>>(rows(p), p->T, order);
    mark(1, s);
    return launch_status();
  }
  const dim3 grid(unsigned((p->T + kHashPos - 1) / kHashPos), unsigned(rows(p)), unsigned(p->rounds));
  const int impl = sk_lsh_chunk_impl(p);
  if (impl < 0) return SK_KERNEL_BAD_ARG;
  const int64_t hash_scratch = hash_scratch_bytes(p), cub_bytes = cub_sort_bytes(p);
  if (hash_scratch == 0) launch_key_scale(p, kscale, s);  // (hash v2 writes the key scales itself)
  if (hash_scratch > 0) {
    if (int st = sk_lsh_mma_hash_v2(p, static_cast<char*>(temp) + cub_bytes, kscale, buckets, sort_keys, sort_vals,
                                    s))
      return st;
  } else if (impl >= 2) {
    if (int st = sk_lsh_mma_hash(p, buckets, sort_keys, sort_vals, s)) return st;
  } else if (p->dtype == SK_KDT_BF16)
    hash_kernel<__nv_bfloat16><<<grid, kHashThreads, 0, s>>>(*p, buckets, sort_keys, sort_vals);
  else
    hash_kernel<float><<<grid, kHashThreads, 0, s>>>(*p, buckets, sort_keys, sort_vals);
  if (int st = launch_status()) return st;
  mark(1, s);
  size_t bytes = size_t(cub_bytes);
  const int n = int(rows(p) * entries(p));
  if (cub::DeviceRadixSort::SortPairs(temp, bytes, sort_keys, sort_keys_out, sort_vals, order, n, 0, end_bit(p), s) !=
      cudaSuccess)
    return SK_KERNEL_LAUNCH_FAILED;
  mark(2, s);
  return launch_status();
}

extern "C" int sk_lsh_o_rounds_bf16(const SkLshParams* p) {
  if (check(p, false) != SK_KERNEL_OK) return 0;
  return sk_lsh_chunk_impl(p) == 2 && sk_lsh_mma_forward_v2_ok(p) ? 1 : 0;
}

extern "C" int sk_cuda_lsh_forward(const SkLshParams* p, const float* kscale, const int32_t* order, void* o_rounds,
                                   float* lse, void* out, cudaStream_t s) {
  if (int st = check(p, false)) return st;
  if (!kscale || !order || !o_rounds || !lse || !out) return SK_KERNEL_BAD_ARG;
  if (rows(p) * p->T == 0) return SK_KERNEL_OK;
  SK_LSH_DISPATCH(p, forward_impl, p, kscale, order, o_rounds, lse, out, s);
}

extern "C" int sk_cuda_lsh_backward(const SkLshParams* p, const float* kscale, const int32_t* order,
                                    const void* out, const float* lse, const void* dout, float* w, float* gout,
                                    void* dq_e, void* dk_e, void* dv_e, void* dk2_e, void* dv2_e, void* dq,
                                    void* dv, cudaStream_t s) {
  if (int st = check(p, false)) return st;
  if (!kscale || !order || !out || !lse || !dout || !dq_e || !dk_e || !dv_e || !dq || !dv) return SK_KERNEL_BAD_ARG;
  // w and gout: scratch of the prep pass, which the fused tensor-core backward does not run.
  if ((!w || !gout) && !sk_lsh_backward_partials_bf16(p)) return SK_KERNEL_BAD_ARG;
  if (rows(p) * p->T == 0) return SK_KERNEL_OK;
  SK_LSH_DISPATCH(p, backward_impl, p, kscale, order, out, lse, dout, w, gout, dq_e, dk_e, dv_e, dk2_e, dv2_e, dq,
                  dv, s);
}

extern "C" int sk_lsh_backward_partials(const SkLshParams* p) {
  if (check(p, false) != SK_KERNEL_OK) return 1;
  return sk_lsh_chunk_impl(p) == 2 && sk_lsh_mma_fused_backward_ok(p) && p->look_back && n_chunks(p) > 1 ? 2 : 1;
}

extern "C" int sk_lsh_backward_partials_bf16(const SkLshParams* p) {
  if (check(p, false) != SK_KERNEL_OK) return 0;
  return sk_lsh_chunk_impl(p) == 2 && sk_lsh_mma_fused_backward_ok(p) ? 1 : 0;
}

extern "C" int sk_lsh_phase_timing(int on) {
  PhaseTimer& t = g_phases;
  if (on && !t.made) {
    for (auto& e : t.ev)
      if (cudaEventCreate(&e) != cudaSuccess) return SK_KERNEL_LAUNCH_FAILED;
    t.made = true;
  }
  t.on = on != 0;
  for (bool& h : t.hit) h = false;
  return SK_KERNEL_OK;
}

extern "C" int sk_lsh_phase_read(float* ms) {
  PhaseTimer& t = g_phases;
  for (int i = 0; i < SK_LSH_PHASES; ++i) ms[i] = 0.f;
  if (!t.made) return SK_KERNEL_BAD_ARG;
  int prev = t.hit[0] ? 0 : -1;
  if (prev >= 0 && cudaEventSynchronize(t.ev[0]) != cudaSuccess) return SK_KERNEL_LAUNCH_FAILED;
  for (int i = 1; i <= SK_LSH_PHASES; ++i) {
    if (!t.hit[i]) continue;
    if (cudaEventSynchronize(t.ev[i]) != cudaSuccess) return SK_KERNEL_LAUNCH_FAILED;
    if (prev >= 0) cudaEventElapsedTime(&ms[i - 1], t.ev[prev], t.ev[i]);
    prev = i;
  }
  for (bool& h : t.hit) h = false;
  return SK_KERNEL_OK;
}
