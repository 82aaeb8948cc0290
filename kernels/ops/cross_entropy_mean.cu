// The Mean reduction of the fused cross-entropy, on the device (see cross_entropy_mean.h).
// Forward: one 1024-thread block; each thread sums a strided slice of the losses and counts the
// non-ignored targets, then a fixed-order shared-memory tree combines them (deterministic).
// N is the number of rows of one batch (tens of thousands): one block streams it in a few us.
// Backward: a broadcast of g * inv_count. Checked by tests/cuda/test_cuda_parity.cpp
// (CudaParity.cross_entropy*, Mean reduction) against src/ops/cross_entropy.cpp.
#include "kernels/ops/cross_entropy_mean.h"

namespace {

constexpr int kThreads = 1024;

template <typename TT>
__global__ void __launch_bounds__(kThreads) ce_mean_fwd_kernel(float* mean, float* inv_count, const float* losses,
                                                              const TT* targets, int64_t N, int ignore_index) {
  __shared__ float s_sum[kThreads];
  __shared__ float s_cnt[kThreads];
  float sum = 0.f, cnt = 0.f;
  for (int64_t n = threadIdx.x; n < N; n += kThreads) {
    if (losses) sum += losses[n];
    cnt += static_cast<int64_t>(targets[n]) != ignore_index ? 1.f : 0.f;
  }
  s_sum[threadIdx.x] = sum;
  s_cnt[threadIdx.x] = cnt;
  __syncthreads();
  for (int w = kThreads / 2; w > 0; w >>= 1) {
    if (threadIdx.x < w) {
      s_sum[threadIdx.x] += s_sum[threadIdx.x + w];
      s_cnt[threadIdx.x] += s_cnt[threadIdx.x + w];
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    const float c = s_cnt[0];
    if (mean) *mean = c > 0.f ? s_sum[0] / c : 0.f;
    *inv_count = c > 0.f ? 1.f / c : 0.f;
  }
}

__global__ void ce_mean_bwd_kernel(float* dlosses, const float* g, const float* inv_count, int64_t N) {
  const float v = g[0] * inv_count[0];
  for (int64_t n = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; n < N;
       n += static_cast<int64_t>(gridDim.x) * blockDim.x)
    dlosses[n] = v;
}

}  // namespace

extern "C" int sk_cuda_cross_entropy_mean_forward(float* mean, float* inv_count, const float* losses,
                                                  const void* targets, int target_dtype, int64_t N, int ignore_index,
                                                  cudaStream_t s) {
  if (!mean || !inv_count || N < 0 || (N > 0 && (!losses || !targets))) return SK_KERNEL_BAD_ARG;
  if (target_dtype == SK_KDT_I32)
    ce_mean_fwd_kernel<int32_t><<<1, kThreads, 0, s>>>(mean, inv_count, losses, static_cast<const int32_t*>(targets),
                                                       N, ignore_index);
  else if (target_dtype == SK_KDT_I64)
    ce_mean_fwd_kernel<int64_t><<<1, kThreads, 0, s>>>(mean, inv_count, losses, static_cast<const int64_t*>(targets),
                                                       N, ignore_index);
  else
    return SK_KERNEL_UNSUPPORTED_DTYPE;
  return cudaGetLastError() == cudaSuccess ? SK_KERNEL_OK : SK_KERNEL_LAUNCH_FAILED;
}

extern "C" int sk_cuda_cross_entropy_mean_backward(float* dlosses, const float* g, const float* inv_count, int64_t N,
                                                   cudaStream_t s) {
  if (N < 0 || !g || !inv_count || (N > 0 && !dlosses)) return SK_KERNEL_BAD_ARG;
  if (N == 0) return SK_KERNEL_OK;
  int64_t blocks = (N + 255) / 256;
  if (blocks > 4096) blocks = 4096;
  ce_mean_bwd_kernel<<<static_cast<unsigned>(blocks), 256, 0, s>>>(dlosses, g, inv_count, N);
  return cudaGetLastError() == cudaSuccess ? SK_KERNEL_OK : SK_KERNEL_LAUNCH_FAILED;
}

extern "C" int sk_cuda_cross_entropy_inv_count(float* inv_count, const void* targets, int target_dtype, int64_t N,
                                               int ignore_index, cudaStream_t s) {
  if (!inv_count || N < 0 || (N > 0 && !targets)) return SK_KERNEL_BAD_ARG;
  if (target_dtype == SK_KDT_I32)
    ce_mean_fwd_kernel<int32_t><<<1, kThreads, 0, s>>>(nullptr, inv_count, nullptr,
                                                       static_cast<const int32_t*>(targets), N, ignore_index);
  else if (target_dtype == SK_KDT_I64)
    ce_mean_fwd_kernel<int64_t><<<1, kThreads, 0, s>>>(nullptr, inv_count, nullptr,
                                                       static_cast<const int64_t*>(targets), N, ignore_index);
  else
    return SK_KERNEL_UNSUPPORTED_DTYPE;
  return cudaGetLastError() == cudaSuccess ? SK_KERNEL_OK : SK_KERNEL_LAUNCH_FAILED;
}
