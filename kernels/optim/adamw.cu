// sparsek CUDA kernels: fused AdamW optimizer step (fp32 master weights, fp32 moments,
// fp32 or bf16 gradients, optional bf16 copy of the updated weights).
//
// Shapes: flat [n] tensors. Dtypes: param / m / v fp32, grad fp32 or bf16, param_bf16 bf16.
// Design: one pass, memory-bound (26-30 bytes per element): each thread handles groups of 8
// elements per iteration with 16-byte accesses (2 x float4 for param / m / v, one 16-byte
// pack of 8 bf16 or 2 x float4 of grads, one 16-byte pack of 8 bf16 for param_bf16), so ~7
// independent 16-byte loads are in flight per thread; scalar tail for n % 8 and an all-scalar
// path when any pointer is not 16-byte aligned. One-shot grid (one group per thread): measured
// ~8% faster than a persistent grid on H100.
// Arithmetic: exactly the expression order of the header, in fp32, with explicit _rn
// intrinsics (no FMA contraction), so it is bit-identical to a plain C++ fp32 evaluation of
//   param = param * (1 - lr*wd); m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g*g;
//   param = param - (lr/bc1) * m / (sqrt(v)/sqrt(bc2) + eps)
// where (1 - lr*wd), (1-b1), (1-b2), lr/bc1, sqrt(bc2) are computed once in fp32 on the host.
// Deterministic.
//
// Checked by tests/cuda/test_cuda_parity.cpp against the CPU reference in src/optim/adamw.cpp.
#include "kernels/optim/adamw.h"

#include "kernels/common/device_utils.cuh"

namespace {

using namespace sk_kern;

constexpr int kAdamBlock = 256;
constexpr int kGroup = 8;  // elements per thread per iteration

struct AdamHyper {
  float decay;       // 1 - lr * weight_decay
  float beta1, beta2;
  float omb1, omb2;  // 1 - beta1, 1 - beta2
  float step;        // lr / bias_correction1
  float bc2_sqrt;    // sqrt(bias_correction2)
  float eps;
};

__device__ __forceinline__ void adam_elem(float& p, float& m, float& v, float g, const AdamHyper& h) {
  p = __fmul_rn(p, h.decay);
  m = __fadd_rn(__fmul_rn(h.beta1, m), __fmul_rn(h.omb1, g));
  v = __fadd_rn(__fmul_rn(h.beta2, v), __fmul_rn(__fmul_rn(h.omb2, g), g));
  const float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(v), h.bc2_sqrt), h.eps);
  p = __fsub_rn(p, __fdiv_rn(__fmul_rn(h.step, m), denom));
}

__device__ __forceinline__ void ld8(const float* p, float (&f)[8]) {
  const uint4 a = ld_stream(p), b = ld_stream(p + 4);
  Pack<float>::unpack(a, f);
  Pack<float>::unpack(b, f + 4);
}
__device__ __forceinline__ void st8(float* p, const float (&f)[8]) {
  st_stream(p, Pack<float>::pack(f));
  st_stream(p + 4, Pack<float>::pack(f + 4));
}
__device__ __forceinline__ void ld8(const __nv_bfloat16* p, float (&f)[8]) { Pack<__nv_bfloat16>::unpack(ld_stream(p), f); }

template <typename G>
__global__ void __launch_bounds__(kAdamBlock)
    adamw_kernel(float* __restrict__ param, __nv_bfloat16* __restrict__ pbf, const G* __restrict__ grad,
                 float* __restrict__ m, float* __restrict__ v, int64_t n, int64_t ngroups, AdamHyper h,
                 const float* __restrict__ grad_scale) {
  const float gs = grad_scale ? *grad_scale : 1.0f;
  const int64_t gtid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t G_ = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t q = gtid; q < ngroups; q += G_) {
    const int64_t i0 = q * kGroup;
    float p[8], mm[8], vv[8], g[8];
    ld8(grad + i0, g);
    ld8(param + i0, p);
    ld8(m + i0, mm);
    ld8(v + i0, vv);
#pragma unroll
    for (int j = 0; j < 8; ++j) adam_elem(p[j], mm[j], vv[j], __fmul_rn(g[j], gs), h);
    st8(param + i0, p);
    st8(m + i0, mm);
    st8(v + i0, vv);
    if (pbf) st_stream(pbf + i0, Pack<__nv_bfloat16>::pack(p));
  }
  // scalar remainder (everything when ngroups == 0 for the unaligned path)
  for (int64_t i = ngroups * kGroup + gtid; i < n; i += G_) {
    float p = param[i], mm = m[i], vv = v[i];
    adam_elem(p, mm, vv, __fmul_rn(load_f32(grad + i), gs), h);
    param[i] = p;
    m[i] = mm;
    v[i] = vv;
    if (pbf) pbf[i] = __float2bfloat16_rn(p);
  }
}

template <typename G>
int adamw_impl(float* param, void* param_bf16, const void* grad, float* m, float* v, int64_t n, const AdamHyper& h,
               const float* grad_scale, cudaStream_t s) {
  if (!aligned_to(param, 4) || !aligned_to(m, 4) || !aligned_to(v, 4) || !aligned_to(grad, sizeof(G)) ||
      (param_bf16 && !aligned_to(param_bf16, 2)) || (grad_scale && !aligned_to(grad_scale, 4)))
    return SK_KERNEL_MISALIGNED;
  const bool vec = aligned16(param) && aligned16(m) && aligned16(v) && aligned16(grad) &&
                   (param_bf16 == nullptr || aligned16(param_bf16));
  const int64_t ngroups = vec ? n / kGroup : 0;
  const int64_t work = vec ? ngroups : n;
  auto kernel = adamw_kernel<G>;
  const int grid = streaming_grid(ceil_div(work > 0 ? work : 1, kAdamBlock));
  kernel<<<grid, kAdamBlock, 0, s>>>(param, static_cast<__nv_bfloat16*>(param_bf16), static_cast<const G*>(grad), m,
                                     v, n, ngroups, h, grad_scale);
  return launch_status();
}

}  // namespace

extern "C" int sk_cuda_adamw_step(float* param, void* param_bf16, const void* grad, int grad_dtype, float* m,
                                  float* v, int64_t n, float lr, float beta1, float beta2, float eps,
                                  float weight_decay, float bias_correction1, float bias_correction2,
                                  const float* grad_scale, cudaStream_t s) {
  if (grad_dtype != SK_KDT_F32 && grad_dtype != SK_KDT_BF16) return SK_KERNEL_UNSUPPORTED_DTYPE;
  if (n < 0) return SK_KERNEL_BAD_ARG;
  if (n == 0) return SK_KERNEL_OK;
  if (!param || !grad || !m || !v) return SK_KERNEL_BAD_ARG;
  if (!(bias_correction1 > 0.f) || !(bias_correction2 > 0.f)) return SK_KERNEL_BAD_ARG;
  AdamHyper h;
  h.decay = 1.0f - lr * weight_decay;
  h.beta1 = beta1;
  h.beta2 = beta2;
  h.omb1 = 1.0f - beta1;
  h.omb2 = 1.0f - beta2;
  h.step = lr / bias_correction1;
  h.bc2_sqrt = std::sqrt(bias_correction2);
  h.eps = eps;
  if (grad_dtype == SK_KDT_F32) return adamw_impl<float>(param, param_bf16, grad, m, v, n, h, grad_scale, s);
  return adamw_impl<__nv_bfloat16>(param, param_bf16, grad, m, v, n, h, grad_scale, s);
}
