// sparsek CUDA kernels: attention decode step (decode.h): one query per (batch, head) against a
// ring KV cache, for generation.
//
// One block of kWarps warps per (batch, head). Warp w takes the cache slots w, w + kWarps, ...;
// lane l holds dims l, l + 32, ... of the query and of its running output (VPL = values per lane,
// D <= 32 * VPL). Per slot: the dot product (lane partials + xor-butterfly warp sum, so every lane
// has the same score), then an online-softmax update of (max m, sum l, acc[VPL]) in fp32. The
// warps' states are merged in shared memory in warp order. Deterministic.
// Memory-bound: each cache row is read once per (batch, head); no split over the cache length
// (enough for generation at the batch sizes used here).
// Checked by tests/attention/test_attention_decode.cpp (CudaParity.attention_decode) against the
// CPU reference in src/attention/decode.cpp.
#include "kernels/attention/decode.h"

#include "kernels/common/device_utils.cuh"

namespace {

using namespace sk_kern;

constexpr int kWarps = 8;

template <typename T, int VPL>
__global__ void __launch_bounds__(kWarps * 32)
    attention_decode_kernel(T* __restrict__ out, const T* __restrict__ q, const T* __restrict__ k,
                            const T* __restrict__ v, int64_t S, int D, int64_t position, int64_t window, float scale) {
  __shared__ float sm_m[kWarps], sm_l[kWarps];
  __shared__ float sm_acc[kWarps][32 * VPL];
  const int64_t bh = blockIdx.x;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const T* qr = q + bh * D;
  const T* kr = k + bh * S * D;
  const T* vr = v + bh * S * D;

  float qv[VPL], acc[VPL];
#pragma unroll
  for (int i = 0; i < VPL; ++i) {
    const int d = lane + 32 * i;
    qv[i] = d < D ? load_f32(qr + d) * scale : 0.f;
    acc[i] = 0.f;
  }
  float m = -INFINITY, l = 0.f;
  const int64_t n_slots = position + 1 < S ? position + 1 : S;
  for (int64_t s = warp; s < n_slots; s += kWarps) {
    const int64_t dist = (position - s) % S;  // position - (position held by slot s)
    if (window > 0 && dist >= window) continue;
    const T* ks = kr + s * D;
    float part = 0.f;
#pragma unroll
    for (int i = 0; i < VPL; ++i) {
      const int d = lane + 32 * i;
      if (d < D) part += qv[i] * load_f32(ks + d);
    }
    const float a = warp_sum(part);
    const float mn = fmaxf(m, a);
    const float corr = expf(m - mn);  // 0 on the first key (m = -inf)
    const float p = expf(a - mn);
    l = l * corr + p;
    const T* vs = vr + s * D;
#pragma unroll
    for (int i = 0; i < VPL; ++i) {
      const int d = lane + 32 * i;
      acc[i] = acc[i] * corr + (d < D ? p * load_f32(vs + d) : 0.f);
    }
    m = mn;
  }
  if (lane == 0) {
    sm_m[warp] = m;
    sm_l[warp] = l;
  }
#pragma unroll
  for (int i = 0; i < VPL; ++i) sm_acc[warp][lane + 32 * i] = acc[i];
  __syncthreads();
  float M = -INFINITY;
#pragma unroll
  for (int w = 0; w < kWarps; ++w) M = fmaxf(M, sm_m[w]);
  float L = 0.f;
  float wt[kWarps];
#pragma unroll
  for (int w = 0; w < kWarps; ++w) {
    wt[w] = sm_m[w] == -INFINITY ? 0.f : expf(sm_m[w] - M);  // a warp that saw no key weighs 0
    L += sm_l[w] * wt[w];
  }
  for (int d = threadIdx.x; d < D; d += blockDim.x) {
    float o = 0.f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) o += sm_acc[w][d] * wt[w];
    store_f32(out + bh * D + d, o / L);
  }
}

template <typename T>
int launch(void* out, const void* q, const void* k, const void* v, int64_t BH, int64_t S, int64_t D, int64_t position,
           int64_t window, float scale, cudaStream_t s) {
  auto go = [&](auto kernel) {
    kernel<<<static_cast<unsigned>(BH), kWarps * 32, 0, s>>>(static_cast<T*>(out), static_cast<const T*>(q),
                                                             static_cast<const T*>(k), static_cast<const T*>(v), S,
                                                             static_cast<int>(D), position, window, scale);
    return launch_status();
  };
  if (D <= 32) return go(attention_decode_kernel<T, 1>);
  if (D <= 64) return go(attention_decode_kernel<T, 2>);
  if (D <= 128) return go(attention_decode_kernel<T, 4>);
  return go(attention_decode_kernel<T, 8>);
}

}  // namespace

extern "C" int sk_cuda_attention_decode(void* out, const void* q, const void* k, const void* v, int64_t BH, int64_t S,
                                        int64_t D, int64_t position, int64_t window, float scale, int dtype,
                                        cudaStream_t s) {
  if (!out || !q || !k || !v || BH < 0 || S < 1 || D < 1 || D > 256 || position < 0 || window < 0)
    return SK_KERNEL_BAD_ARG;
  if (BH == 0) return SK_KERNEL_OK;
  if (BH > 0x7fffffff) return SK_KERNEL_BAD_ARG;
  switch (dtype) {
    case SK_KDT_F32: return launch<float>(out, q, k, v, BH, S, D, position, window, scale, s);
    case SK_KDT_BF16: return launch<__nv_bfloat16>(out, q, k, v, BH, S, D, position, window, scale, s);
    default: return SK_KERNEL_UNSUPPORTED_DTYPE;
  }
}
