// Shared by the GPU benchmarks (src/cli/bench_*.cpp): event timing with the L2 cache flushed and
// large random device tensors made quickly. CUDA builds only.
#pragma once
#ifdef SPARSEK_HAS_CUDA
#include <functional>

#include "tensor/random.h"
#include "tensor/tensor.h"

namespace sk::cli {

struct Timer {
  Tensor flush = Tensor::empty({256ll << 20}, DType::U16, Device::cuda(0));  // 512 MiB
  // Median milliseconds of fn over iters runs (after warmup runs), bracketed by CUDA events on
  // the compute stream, with the L2 cache flushed before each run.
  double median_ms(const std::function<void()>& fn, int warmup, int iters);
};

// A random tensor made on the device from one random block of up to 4M values repeated: drawing
// billions of values on the host would take minutes. Random (never zeros) is what matters for
// timing.
Tensor random_tensor(const Shape& shape, Rng& rng, DType dt, double mean, double std);

}  // namespace sk::cli
#endif
