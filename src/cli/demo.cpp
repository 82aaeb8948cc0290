// `sparsek demo`: the built-in smoke job. Trains a tiny next-token model on a synthetic sequence
// (x[t+1] = (5 x[t] + 3 + noise) mod V) to show every core piece working together: embedding,
// LayerNorm, linear, GELU, residual add, fused cross-entropy, backward, gradient clipping, AdamW.
// CPU in f32; on a GPU the parameters are bf16 with fp32 master weights in the optimizer.
// The loss starts near log(V) and falls well below it; the command fails (status 2) if it does not.
#include <spdlog/spdlog.h>

#include <chrono>
#include <cmath>

#include "backend/cuda_device.h"
#include "cli/commands.h"
#include "ops/ops.h"
#include "optim/adamw.h"
#include "optim/grad_clip.h"
#include "util/check.h"

namespace sk::cli {

namespace {

// Synthetic data: (inputs, targets) of `batch` positions; targets follow inputs by a fixed rule
// with 10% random noise.
std::pair<Tensor, Tensor> make_batch(Rng& rng, const DemoOptions& o, Device dev) {
  std::vector<int64_t> x(o.batch), y(o.batch);
  for (int i = 0; i < o.batch; ++i) {
    x[i] = static_cast<int64_t>(rng.below(o.vocab));
    y[i] = rng.uniform() < 0.1 ? static_cast<int64_t>(rng.below(o.vocab)) : (5 * x[i] + 3) % o.vocab;
  }
  return {Tensor::from_ints(x, {o.batch}, DType::I32, dev), Tensor::from_ints(y, {o.batch}, DType::I32, dev)};
}

}  // namespace

void run_demo(const DemoOptions& o) {
  Device dev = o.device == "auto" ? (cuda::is_available() ? Device::cuda(0) : Device::cpu()) : parse_device(o.device);
  const DType dt = dev.is_cuda() ? DType::BF16 : DType::F32;
  spdlog::info("demo: tiny next-token model on {} ({}), vocab {}, width {}, batch {}, {} steps", dev.str(),
               dtype_name(dt), o.vocab, o.channels, o.batch, o.steps);
  Rng rng(o.seed);
  const int64_t V = o.vocab, C = o.channels, H = 4 * C;
  auto param = [&](const Shape& s, double std) { return Tensor::randn(s, rng, dt, dev, 0.0, std).set_requires_grad(); };
  auto constant = [&](const Shape& s, double v) { return Tensor::full(s, v, dt, dev).set_requires_grad(); };
  Tensor wte = param({V, C}, 0.1);
  Tensor ln1_w = constant({C}, 1.0), ln1_b = constant({C}, 0.0);
  Tensor fc_w = param({H, C}, 1.0 / std::sqrt(double(C))), fc_b = constant({H}, 0.0);
  Tensor proj_w = param({C, H}, 1.0 / std::sqrt(double(H))), proj_b = constant({C}, 0.0);
  Tensor lnf_w = constant({C}, 1.0), lnf_b = constant({C}, 0.0);
  Tensor head_w = param({V, C}, 1.0 / std::sqrt(double(C)));
  std::vector<Tensor> params{wte, ln1_w, ln1_b, fc_w, fc_b, proj_w, proj_b, lnf_w, lnf_b, head_w};

  optim::AdamW opt({.lr = 3e-3, .beta1 = 0.9, .beta2 = 0.99, .eps = 1e-8, .weight_decay = 0.0});
  for (const Tensor& p : params) opt.add_param(p, p.ndim() == 2);

  double first = 0, last = 0;
  auto t0 = std::chrono::steady_clock::now();
  for (int step = 1; step <= o.steps; ++step) {
    auto [x, y] = make_batch(rng, o, dev);
    Tensor h = ops::embedding(wte, x);                                       // (B, C)
    Tensor u = ops::layernorm(h, ln1_w, ln1_b);                              // (B, C)
    Tensor m = ops::linear(ops::gelu(ops::linear(u, fc_w, fc_b)), proj_w, proj_b);  // (B, C)
    Tensor r = ops::add(h, m);                                               // residual
    Tensor logits = ops::linear(ops::layernorm(r, lnf_w, lnf_b), head_w, Tensor());  // (B, V)
    Tensor loss = ops::cross_entropy(logits, y);
    opt.zero_grad();
    loss.backward();
    optim::GradNorm gn = optim::global_grad_norm(params, 1.0);
    opt.step(-1.0, gn.coefficient);
    if (step == 1 || step % 50 == 0 || step == o.steps) {
      const double l = loss.item();
      if (step == 1) first = l;
      last = l;
      const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      spdlog::info("step {:4d}/{} | loss {:.4f} | grad norm {:.3f} | {:.1f} steps/s", step, o.steps, l, gn.norm(),
                   step / std::max(secs, 1e-9));
    }
  }
  if (dev.is_cuda()) spdlog::info("{}", cuda::memory_report(dev.index));
  // The noise floor: 10% of targets are uniform, so the best loss is about
  // -(0.9+0.1/V) log(0.9+0.1/V) - (V-1)(0.1/V) log(0.1/V) ~ 0.5 for V = 64.
  spdlog::info("demo: loss {:.3f} -> {:.3f} (log V = {:.3f})", first, last, std::log(double(V)));
  SK_CHECK(last < 0.6 * first, "demo: the loss did not fall enough (", first, " -> ", last, ")");
}

}  // namespace sk::cli
