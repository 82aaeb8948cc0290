// Benchmark helpers (bench_util.h).
#include "cli/bench_util.h"

#ifdef SPARSEK_HAS_CUDA
#include <cuda_runtime_api.h>

#include <algorithm>
#include <vector>

#include "backend/cuda_context.h"

namespace sk::cli {

double Timer::median_ms(const std::function<void()>& fn, int warmup, int iters) {
  for (int i = 0; i < warmup; ++i) fn();
  cudaEvent_t a, b;
  SK_CUDA_CHECK(cudaEventCreate(&a));
  SK_CUDA_CHECK(cudaEventCreate(&b));
  std::vector<double> ms;
  for (int i = 0; i < iters; ++i) {
    SK_CUDA_CHECK(cudaMemsetAsync(flush.data_ptr(), i & 0xff, flush.nbytes(), cuda::stream()));
    SK_CUDA_CHECK(cudaEventRecord(a, cuda::stream()));
    fn();
    SK_CUDA_CHECK(cudaEventRecord(b, cuda::stream()));
    SK_CUDA_CHECK(cudaEventSynchronize(b));
    float t = 0;
    SK_CUDA_CHECK(cudaEventElapsedTime(&t, a, b));
    ms.push_back(t);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

Tensor random_tensor(const Shape& shape, Rng& rng, DType dt, double mean, double std) {
  const int64_t n = shape_numel(shape), block = std::min<int64_t>(n, 1 << 22);
  Tensor src = Tensor::randn({block}, rng, dt, Device::cuda(0), mean, std);
  Tensor out = Tensor::empty({n}, dt, Device::cuda(0));
  for (int64_t i = 0; i < n; i += block) {
    const int64_t len = std::min(block, n - i);
    out.slice(0, i, i + len).copy_(src.slice(0, 0, len));
  }
  return out.view(shape);
}

}  // namespace sk::cli
#endif
