// `sparsek bench ops`: times the memory-bound core ops on the GPU through the public op API
// (what a user's training step runs), at GPT-2 124M shapes, and writes JSON.
//   layernorm     bf16 x (32768, 768) with weight and bias: forward; forward+backward
//   gelu (tanh)   bf16 (32768, 3072): forward; forward+backward
//   cross_entropy bf16 logits (32768, 50304), 50257 valid, mean: forward; forward+backward
//   adamw         124M fp32 params in one flat buffer: f32 grads; bf16 grads + bf16 working copy
//   copy          device-to-device cudaMemcpy of 2 GiB: the bandwidth ceiling (read + write)
// Each timing: warm-up, then the median of --iters runs bracketed by CUDA events, with the L2
// cache flushed (a 256 MiB write) before every run. Bytes are the minimum each op must move
// (inputs read once, outputs written once); GB/s = bytes / median time.
// The PyTorch peer runs in the same device call: scripts/bench/ops_peer.py, merged into a table
// by scripts/bench/report_ops.py (see scripts/bench/bench_ops.sh and docs/bench/).
#include "cli/commands.h"
#include "cli/bench_util.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>

#include "autograd/node.h"
#include "backend/cuda_device.h"
#include "ops/ops.h"
#include "optim/adamw.h"
#include "util/check.h"

#ifdef SPARSEK_HAS_CUDA
#include <cuda_runtime_api.h>

#include "backend/cuda_context.h"
#endif

namespace sk::cli {

#ifdef SPARSEK_HAS_CUDA

void run_bench_ops(const BenchOpsOptions& o) {
  SK_CHECK(cuda::is_available(), "bench ops needs a CUDA device (none found)");
  const Device dev = Device::cuda(0);
  Rng rng(2026);
  Timer timer;
  nlohmann::json results = nlohmann::json::array();
  auto record = [&](const std::string& op, const std::string& phase, const std::string& shape, double ms,
                    double bytes) {
    const double gbps = bytes / (ms * 1e-3) / 1e9;
    results.push_back({{"op", op}, {"phase", phase}, {"shape", shape}, {"ms", ms}, {"bytes", bytes}, {"GBps", gbps}});
    spdlog::info("{:<14} {:<9} {:<28} {:8.3f} ms {:8.1f} GB/s", op, phase, shape, ms, gbps);
  };

  // Copy bandwidth.
  {
    const size_t n = 1ull << 31;
    Tensor src = Tensor::empty({int64_t(n / 2)}, DType::U16, dev), dst = Tensor::empty({int64_t(n / 2)}, DType::U16, dev);
    src.fill_(1.0);
    double ms = timer.median_ms([&] { cuda::copy_d2d(dst.data_ptr(), src.data_ptr(), n); }, o.warmup, o.iters);
    record("copy", "d2d", "2 GiB", ms, 2.0 * n);
  }
  const int64_t N = 32768, C = 768, H = 3072, Vp = 50304, V = 50257;
  // LayerNorm.
  {
    Tensor x = random_tensor({N, C}, rng, DType::BF16, 0.0, 1.0);
    Tensor w = Tensor::randn({C}, rng, DType::BF16, dev, 1.0, 0.1).set_requires_grad();
    Tensor b = Tensor::randn({C}, rng, DType::BF16, dev, 0.0, 0.1).set_requires_grad();
    Tensor dy = random_tensor({N, C}, rng, DType::BF16, 0.0, 1.0);
    const double io = 2.0 * N * C;
    double f = timer.median_ms([&] { autograd::NoGradGuard g; ops::layernorm(x, w, b); }, o.warmup, o.iters);
    record("layernorm", "fwd", "(32768, 768) bf16", f, 2 * io + 8.0 * N);
    Tensor xl = x.detach().set_requires_grad();
    double fb = timer.median_ms([&] {
      xl.zero_grad(), w.zero_grad(), b.zero_grad();  // no accumulation across runs
      ops::layernorm(xl, w, b).backward(dy);
    }, o.warmup, o.iters);
    // fwd (x in, y out) + bwd (dy, x in, dx out); weight/bias/statistics are small.
    record("layernorm", "fwd+bwd", "(32768, 768) bf16", fb, 2 * io + 3 * io + 16.0 * N);
  }
  // GELU (tanh).
  {
    Tensor x = random_tensor({N, H}, rng, DType::BF16, 0.0, 1.0);
    Tensor dy = random_tensor({N, H}, rng, DType::BF16, 0.0, 1.0);
    const double io = 2.0 * N * H;
    double f = timer.median_ms([&] { autograd::NoGradGuard g; ops::gelu(x); }, o.warmup, o.iters);
    record("gelu", "fwd", "(32768, 3072) bf16", f, 2 * io);
    Tensor xl = x.detach().set_requires_grad();
    double fb = timer.median_ms([&] {
      xl.zero_grad();
      ops::gelu(xl).backward(dy);
    }, o.warmup, o.iters);
    record("gelu", "fwd+bwd", "(32768, 3072) bf16", fb, 2 * io + 3 * io);
  }
  // Fused cross-entropy.
  {
    Tensor logits = random_tensor({N, Vp}, rng, DType::BF16, 0.0, 2.0);
    Tensor targets = Tensor::randint({N}, rng, V, DType::I32, dev);
    ops::CrossEntropyOptions opt;
    opt.valid_vocab = V;
    const double io = 2.0 * N * Vp;
    double f = timer.median_ms([&] { autograd::NoGradGuard g; ops::cross_entropy(logits, targets, opt); }, o.warmup, o.iters);
    record("cross_entropy", "fwd", "(32768, 50304) bf16", f, io + 4.0 * N);
    Tensor ll = logits.detach().set_requires_grad();
    double fb = timer.median_ms([&] {
      ll.zero_grad();
      ops::cross_entropy(ll, targets, opt).backward();
    }, o.warmup, o.iters);
    record("cross_entropy", "fwd+bwd", "(32768, 50304) bf16", fb, io + 2 * io + 8.0 * N);
  }
  // AdamW over 124M parameters in one flat buffer.
  {
    const int64_t P = 124'000'000;
    for (int variant = 0; variant < 2; ++variant) {
      const bool bf16 = variant == 1;
      Tensor p = random_tensor({P}, rng, bf16 ? DType::BF16 : DType::F32, 0.0, 0.02).set_requires_grad();
      p.set_grad(random_tensor({P}, rng, bf16 ? DType::BF16 : DType::F32, 0.0, 1e-3));
      optim::AdamW adam({.lr = 1e-4, .beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1});
      adam.add_param(p);
      double ms = timer.median_ms([&] { adam.step(); }, o.warmup, o.iters);
      // f32: p r+w, g r, m r+w, v r+w = 28 B; bf16: master r+w, g r (2), m, v r+w, bf16 copy w (2) = 28 B.
      record("adamw", bf16 ? "step_bf16" : "step_f32", bf16 ? "124M, bf16 grads + copy" : "124M, f32", ms, 28.0 * P);
    }
  }
  nlohmann::json doc = {{"system", "sparsek"}, {"device", cuda::device_name(0)}, {"results", results}};
  std::ofstream f(o.out);
  SK_CHECK(f.good(), "bench ops: cannot write ", o.out);
  f << doc.dump(2) << "\n";
  spdlog::info("bench ops: wrote {}", o.out);
}
#else
void run_bench_ops(const BenchOpsOptions&) { SK_FAIL("bench ops needs the CUDA backend (this build is CPU-only)"); }
#endif

}  // namespace sk::cli
