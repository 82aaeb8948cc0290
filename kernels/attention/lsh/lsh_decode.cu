// Incremental LSH decode kernels (lsh_decode.h): rebuilding the per-round orders from a full
// layout, inserting the new position, and the new position's attention over its two chunks of
// keys with the merge over rounds. All fp32 (SIMT); one block per (row) or (round, row).
#include "kernels/attention/lsh/lsh_decode.h"

#include "kernels/common/device_utils.cuh"

#include <cuda_bf16.h>

#include <cmath>
#include <cstdint>

namespace {

constexpr float kSelf = -1e5f;
constexpr int kThreads = 128;

__device__ __forceinline__ float ld(const float* p) { return *p; }
__device__ __forceinline__ float ld(const __nv_bfloat16* p) { return __bfloat162float(*p); }
__device__ __forceinline__ void st(float* p, float x) { *p = x; }
__device__ __forceinline__ void st(__nv_bfloat16* p, float x) { *p = __float2bfloat16_rn(x); }

using sk_kern::block_sum;
using sk_kern::launch_status;
using sk_kern::warp_max;
using sk_kern::warp_sum;

// Maximum over a 1-D block, as sk_kern::block_sum (scratch >= 32 floats; two __syncthreads()).
__device__ __forceinline__ float block_max(float v, float* smem) {
  v = warp_max(v);
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
  __syncthreads();
  if (lane == 0) smem[w] = v;
  __syncthreads();
  return warp_max(lane < nw ? smem[lane] : -INFINITY);
}

// ---- rebuild: block per row ------------------------------------------------------------------------
__global__ void rebuild_kernel(SkLshDecodeParams p, const int32_t* layout_order, const int32_t* layout_buckets,
                               const float* layout_kscale, int32_t* order_out) {
  const int bh = blockIdx.x, L = p.L, R = p.rounds;
  const int64_t E = int64_t(R) * L;
  for (int64_t g = threadIdx.x; g < E; g += blockDim.x) {
    const int r = int(g / L), i = int(g % L);
    const int pos = layout_order[int64_t(bh) * E + g] - r * L;
    order_out[(int64_t(bh) * R + r) * p.max_t + i] = pos;
    if (pos == L - 1) p.rank[bh * R + r] = i;
    p.buckets[(int64_t(bh) * R + r) * p.max_t + i] = layout_buckets[int64_t(bh) * E + g];  // g = r L + i
  }
  for (int j = threadIdx.x; j < L; j += blockDim.x) p.kscale[int64_t(bh) * p.max_t + j] = layout_kscale[int64_t(bh) * L + j];
}

// ---- insert: block per (round, row) --------------------------------------------------------------
__global__ void __launch_bounds__(kThreads) insert_kernel(SkLshDecodeParams p, const int32_t* new_bucket,
                                                          const float* new_kscale, const int32_t* order_in,
                                                          int32_t* order_out) {
  __shared__ float scratch[32];
  const int r = blockIdx.x, bh = blockIdx.y, R = p.rounds, t = p.L - 1;
  const int b = new_bucket[bh * R + r];
  int32_t* bk = p.buckets + (int64_t(bh) * R + r) * p.max_t;
  float count = 0.0f;  // exact: fewer than 2^24 positions
  for (int j = threadIdx.x; j < t; j += kThreads) count += bk[j] <= b ? 1.0f : 0.0f;
  const int rank = int(block_sum(count, scratch));
  const int32_t* in = order_in + (int64_t(bh) * R + r) * p.max_t;
  int32_t* out = order_out + (int64_t(bh) * R + r) * p.max_t;
  for (int i = threadIdx.x; i <= t; i += kThreads) out[i] = i < rank ? in[i] : (i == rank ? t : in[i - 1]);
  if (threadIdx.x == 0) {
    p.rank[bh * R + r] = rank;
    bk[t] = b;
    if (r == 0) p.kscale[int64_t(bh) * p.max_t + t] = new_kscale[bh];
  }
}

// ---- attend: block per row ------------------------------------------------------------------------
template <class TIn>
__global__ void __launch_bounds__(kThreads) attend_kernel(SkLshDecodeParams p, const int32_t* order, TIn* out) {
  __shared__ float qs[SK_LSH_DECODE_MAX_D];
  __shared__ float logit[2 * SK_LSH_DECODE_MAX_CHUNK];
  __shared__ int kpos[2 * SK_LSH_DECODE_MAX_CHUNK];
  __shared__ float o_r[SK_LSH_DECODE_MAX_ROUNDS][SK_LSH_DECODE_MAX_D];
  __shared__ float lse_r[SK_LSH_DECODE_MAX_ROUNDS];
  __shared__ float scratch[32];
  const int bh = blockIdx.x, b = bh / p.H, h = bh % p.H, D = p.D, R = p.rounds, L = p.L, t = L - 1;
  const TIn* qb = static_cast<const TIn*>(p.q) + int64_t(b) * p.q_sb + int64_t(h) * p.q_sh;
  const TIn* vb = static_cast<const TIn*>(p.v) + int64_t(b) * p.v_sb + int64_t(h) * p.v_sh;
  const float* ks = p.kscale + int64_t(bh) * p.max_t;
  for (int d = threadIdx.x; d < D; d += kThreads) qs[d] = ld(qb + int64_t(t) * p.q_st + d);
  __syncthreads();
  const int64_t E = int64_t(R) * L, chunk = p.chunk, n = (E + chunk - 1) / chunk;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int r = 0; r < R; ++r) {
    const int64_t s = int64_t(r) * L + p.rank[bh * R + r], c = s / chunk;
    int64_t pa = 0, pb = 0;
    if (n > 1) {
      pa = ((c + n - 1) % n) * chunk;
      pb = pa + chunk < E ? pa + chunk : E;
    }
    const int64_t ca = c * chunk, cb = ca + chunk < E ? ca + chunk : E;
    const int nprev = int(pb - pa), nk = nprev + int(cb - ca);
    for (int k = warp; k < nk; k += kThreads / 32) {  // one warp per key
      const int64_t g = k < nprev ? pa + k : ca + (k - nprev);
      const int rr = int(g / L), idx = int(g % L);
      const int j = order[(int64_t(bh) * R + rr) * p.max_t + idx];
      float dot = 0.0f;
      for (int d = lane; d < D; d += 32) dot = fmaf(qs[d], ld(qb + int64_t(j) * p.q_st + d), dot);
      dot = warp_sum(dot);
      if (lane == 0) {
        logit[k] = j == t ? kSelf : dot * ks[j];
        kpos[k] = j;
      }
    }
    __syncthreads();
    float m = -INFINITY;
    for (int k = threadIdx.x; k < nk; k += kThreads) m = fmaxf(m, logit[k]);
    m = block_max(m, scratch);
    float l = 0.0f;
    for (int k = threadIdx.x; k < nk; k += kThreads) l += __expf(logit[k] - m);
    l = block_sum(l, scratch);
    const float lse = m + logf(l);
    for (int d = threadIdx.x; d < D; d += kThreads) {
      float acc = 0.0f;
      for (int k = 0; k < nk; ++k) acc = fmaf(__expf(logit[k] - lse), ld(vb + int64_t(kpos[k]) * p.v_st + d), acc);
      o_r[r][d] = acc;
    }
    if (threadIdx.x == 0) lse_r[r] = lse;
    __syncthreads();
  }
  float m = -INFINITY;
  for (int r = 0; r < R; ++r) m = fmaxf(m, lse_r[r]);
  float sum = 0.0f;
  for (int r = 0; r < R; ++r) sum += expf(lse_r[r] - m);
  for (int d = threadIdx.x; d < D; d += kThreads) {
    float acc = 0.0f;
    for (int r = 0; r < R; ++r) acc = fmaf(expf(lse_r[r] - m) / sum, o_r[r][d], acc);
    st(out + int64_t(bh) * D + d, acc);
  }
}

int check(const SkLshDecodeParams* p) {
  if (!p || !p->q || !p->v || !p->kscale || !p->buckets || !p->rank) return SK_KERNEL_BAD_ARG;
  if (p->dtype != SK_KDT_BF16 && p->dtype != SK_KDT_F32) return SK_KERNEL_UNSUPPORTED_DTYPE;
  if (p->B < 1 || p->H < 1 || p->D < 1 || p->D > SK_LSH_DECODE_MAX_D || p->rounds < 1 ||
      p->rounds > SK_LSH_DECODE_MAX_ROUNDS || p->chunk < 1 || p->chunk > SK_LSH_DECODE_MAX_CHUNK || p->L <= p->chunk ||
      p->L > p->max_t || int64_t(p->B) * p->H > 65535)
    return SK_KERNEL_BAD_ARG;
  return SK_KERNEL_OK;
}

}  // namespace

extern "C" int sk_cuda_lsh_decode_rebuild(const SkLshDecodeParams* p, const int32_t* layout_order,
                                          const int32_t* layout_buckets, const float* layout_kscale, int32_t* order_out,
                                          cudaStream_t s) {
  if (int st = check(p)) return st;
  if (!layout_order || !layout_buckets || !layout_kscale || !order_out) return SK_KERNEL_BAD_ARG;
  rebuild_kernel<<<unsigned(p->B * p->H), 256, 0, s>>>(*p, layout_order, layout_buckets, layout_kscale, order_out);
  return launch_status();
}

extern "C" int sk_cuda_lsh_decode_insert(const SkLshDecodeParams* p, const int32_t* new_bucket, const float* new_kscale,
                                         const int32_t* order_in, int32_t* order_out, cudaStream_t s) {
  if (int st = check(p)) return st;
  if (!new_bucket || !new_kscale || !order_in || !order_out || order_in == order_out) return SK_KERNEL_BAD_ARG;
  const dim3 grid(unsigned(p->rounds), unsigned(p->B * p->H));
  insert_kernel<<<grid, kThreads, 0, s>>>(*p, new_bucket, new_kscale, order_in, order_out);
  return launch_status();
}

extern "C" int sk_cuda_lsh_decode_attend(const SkLshDecodeParams* p, const int32_t* order, void* out, cudaStream_t s) {
  if (int st = check(p)) return st;
  if (!order || !out) return SK_KERNEL_BAD_ARG;
  if (p->dtype == SK_KDT_BF16)
    attend_kernel<__nv_bfloat16><<<unsigned(p->B * p->H), kThreads, 0, s>>>(*p, order, static_cast<__nv_bfloat16*>(out));
  else
    attend_kernel<float><<<unsigned(p->B * p->H), kThreads, 0, s>>>(*p, order, static_cast<float*>(out));
  return launch_status();
}
