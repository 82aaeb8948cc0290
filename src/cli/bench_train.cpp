// `sparsek bench train`: steady-state training throughput of a model config on the GPU: the
// trainer's step (bf16 parameters with fp32 AdamW masters, forward, backward, global gradient
// norm and clip coefficient kept on the device, AdamW with weight decay on matrices only) on
// random tokens, timed per step (host clock after the loss is read back, which syncs).
// Reports tokens/s, MFU (model FLOPs per token 6 N + 12 L C T, PaLM's count, over 989 TFLOP/s
// dense bf16), peak GPU memory (caching allocator high-water mark). The PyTorch nanoGPT-style
// peer runs in the same device call: scripts/bench/train_peer.py via scripts/bench/bench_train.sh.
// Diagnostics for comparing trajectories (all off by default): --diagnose-steps (the GPU model's
// loss and gradients against an f32 CPU copy), --batch-split-steps (full batch vs the mean of
// one-sequence gradients), --param-norm-steps (per-parameter gradient norms), --dump-init (the
// initial weights and tokens for the peer's --init-from), --seed.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>

#include "autograd/node.h"
#include "backend/cuda_device.h"
#include "cli/commands.h"
#include "config/run_config.h"
#include "model/gpt.h"
#include "model/hf_import.h"
#include "ops/ops.h"
#include "optim/adamw.h"
#include "optim/grad_clip.h"
#include "tensor/random.h"
#include "util/check.h"

namespace sk::cli {
namespace {

// Relative L2 distance |a - b| / |b| and the norms, over the values of two same-shape tensors.
struct GradDiff {
  double norm_gpu = 0, norm_cpu = 0, rel_l2 = 0;
};
GradDiff grad_diff(const Tensor& gpu, const Tensor& cpu) {
  const std::vector<double> a = gpu.to(Device::cpu()).to_vector(), b = cpu.to_vector();
  double da = 0, db = 0, dd = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    da += a[i] * a[i];
    db += b[i] * b[i];
    dd += (a[i] - b[i]) * (a[i] - b[i]);
  }
  return {std::sqrt(da), std::sqrt(db), std::sqrt(dd) / std::max(std::sqrt(db), 1e-30)};
}

// The L2 norm of a tensor's values, computed on the host in double.
double host_norm(const Tensor& t) {
  double s = 0;
  for (double v : t.to(Device::cpu()).to_vector()) s += v * v;
  return std::sqrt(s);
}

// The GPU model's loss and every parameter gradient on x, y (B, T) against an f32 CPU model
// holding the same (rounded) weights: where a GPU kernel and the reference part ways. Leaves no
// gradient behind on the GPU model.
nlohmann::json diagnose_against_cpu(const model::Gpt& gpu, model::Gpt& cpu, const Tensor& x, const Tensor& y) {
  const auto t0 = std::chrono::steady_clock::now();
  auto pg = gpu.named_parameters(), pc = cpu.named_parameters();
  for (size_t i = 0; i < pg.size(); ++i) {
    pc[i].second.copy_(pg[i].second);
    pc[i].second.zero_grad();
    pg[i].second.zero_grad();
  }
  Tensor lg = gpu.loss(x, y), lc = cpu.loss(x.to(Device::cpu()), y.to(Device::cpu()));
  lg.backward();
  lc.backward();
  nlohmann::json grads = nlohmann::json::object();
  double worst = 0;
  std::string worst_name;
  for (size_t i = 0; i < pg.size(); ++i) {
    const GradDiff d = grad_diff(pg[i].second.grad(), pc[i].second.grad());
    grads[pg[i].first] = {{"gpu", d.norm_gpu}, {"cpu", d.norm_cpu}, {"rel_l2", d.rel_l2}};
    if (d.rel_l2 > worst) worst = d.rel_l2, worst_name = pg[i].first;
    pg[i].second.zero_grad();
    pc[i].second.zero_grad();
  }
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  spdlog::info("bench train: diagnosis: loss gpu {:.5f} cpu {:.5f}; worst gradient {} rel L2 {:.3g} ({:.0f} ms)", lg.item(),
               lc.item(), worst_name, worst, ms);
  return {{"loss_gpu", lg.item()}, {"loss_cpu", lc.item()}, {"grads", grads}};
}

// The full batch's gradient against the mean of the B one-sequence gradients (both on the GPU): the
// same function, so they differ by rounding only unless a kernel mishandles sequences past the
// first. Leaves no gradient behind.
nlohmann::json check_batch_split(const model::Gpt& gpu, const Tensor& x, const Tensor& y) {
  auto pg = gpu.named_parameters();
  for (auto& [n, p] : pg) p.zero_grad();
  const int64_t B = x.size(0);
  Tensor lf = gpu.loss(x, y);
  lf.backward();
  std::vector<Tensor> full, acc(pg.size());
  for (auto& [n, p] : pg) {
    full.push_back(p.grad().to(DType::F32));
    p.zero_grad();
  }
  double loss_sum = 0;
  for (int64_t b = 0; b < B; ++b) {
    Tensor lb = gpu.loss(x.slice(0, b, b + 1).contiguous(), y.slice(0, b, b + 1).contiguous());
    lb.backward();
    loss_sum += lb.item();
    autograd::NoGradGuard no_grad;
    for (size_t i = 0; i < pg.size(); ++i) {
      Tensor g = pg[i].second.grad().to(DType::F32);
      acc[i] = acc[i].defined() ? ops::add(acc[i], g) : g;
      pg[i].second.zero_grad();
    }
  }
  nlohmann::json grads = nlohmann::json::object();
  double worst = 0;
  std::string worst_name;
  for (size_t i = 0; i < pg.size(); ++i) {
    const GradDiff d = grad_diff(full[i], ops::scale(acc[i], 1.0 / double(B)).to(Device::cpu()));
    grads[pg[i].first] = {{"full", d.norm_gpu}, {"mean_of_sequences", d.norm_cpu}, {"rel_l2", d.rel_l2}};
    if (d.rel_l2 > worst) worst = d.rel_l2, worst_name = pg[i].first;
  }
  spdlog::info("bench train: batch split: loss {:.5f} vs mean of sequences {:.5f}; worst gradient {} rel L2 {:.3g}",
               lf.item(), loss_sum / double(B), worst_name, worst);
  return {{"loss_full", lf.item()}, {"loss_mean_of_sequences", loss_sum / double(B)}, {"grads", grads}};
}

}  // namespace

void run_bench_train(const BenchTrainOptions& o) {
  SK_CHECK(cuda::is_available(), "bench train needs a CUDA device (none found)");
  config::RunConfig cfg = config::load_run_config(o.config, o.overrides);
  const int64_t B = o.batch > 0 ? o.batch : cfg.train.batch_size;
  const int64_t T = o.seq_len > 0 ? o.seq_len : cfg.train.seq_len;
  const Device dev = Device::cuda(0);
  Rng rng(o.seed);
  const DType dtype = o.dtype == "f32" ? DType::F32 : DType::BF16;
  model::Gpt gpt(cfg.model, cfg.attention, dtype, dev, rng);
  optim::AdamWConfig ac;
  ac.lr = cfg.optimizer.lr;
  ac.beta1 = cfg.optimizer.beta1;
  ac.beta2 = cfg.optimizer.beta2;
  ac.eps = cfg.optimizer.eps;
  ac.weight_decay = cfg.optimizer.weight_decay;
  optim::AdamW opt(ac);
  std::vector<Tensor> params;
  for (const auto& [name, p] : gpt.named_parameters()) {
    params.push_back(p);
    opt.add_param(p, p.ndim() >= 2 && name != "wte" && name != "wpe");
  }
  const int64_t V = cfg.model.vocab_size;
  Tensor x = Tensor::randint({B, T}, rng, V, DType::I32).to(dev);
  Tensor y = Tensor::randint({B, T}, rng, V, DType::I32).to(dev);
  if (!o.dump_init.empty()) {
    model::export_hf(gpt.named_parameters(), cfg.model, cfg.attention.kind, o.dump_init);
    std::ofstream tf(o.dump_init + "/tokens.bin", std::ios::binary);
    for (const Tensor& t : {x, y}) {
      const Tensor h = t.to(Device::cpu()).contiguous();
      tf.write(static_cast<const char*>(h.data_ptr()), static_cast<std::streamsize>(h.nbytes()));
    }
    SK_CHECK(tf.good(), "bench train: cannot write ", o.dump_init, "/tokens.bin");
    spdlog::info("bench train: initial weights and tokens written to {}", o.dump_init);
  }

  // losses, grad_norms: every step's (the norm before clipping), to compare the trajectory with the peer's
  std::vector<double> step_ms, losses, grad_norms;
  double loss = 0;
  nlohmann::json diagnoses = nlohmann::json::object(), param_norms = nlohmann::json::object(),
                 batch_splits = nlohmann::json::object();
  std::unique_ptr<model::Gpt> cpu_copy;
  cuda::reset_peak_memory(0);
  for (int step = 0; step < o.warmup + o.steps; ++step) {
    if (std::find(o.diagnose_steps.begin(), o.diagnose_steps.end(), step) != o.diagnose_steps.end()) {
      if (!cpu_copy) cpu_copy = std::make_unique<model::Gpt>(cfg.model, cfg.attention, DType::F32, Device::cpu(), rng);
      const int64_t nb = std::min(o.diagnose_batch, B);
      diagnoses[std::to_string(step)] = diagnose_against_cpu(gpt, *cpu_copy, x.slice(0, 0, nb).contiguous(), y.slice(0, 0, nb).contiguous());
    }
    if (std::find(o.batch_split_steps.begin(), o.batch_split_steps.end(), step) != o.batch_split_steps.end())
      batch_splits[std::to_string(step)] = check_batch_split(gpt, x, y);
    cuda::synchronize();
    const auto t0 = std::chrono::steady_clock::now();
    Tensor l = gpt.loss(x, y);
    l.backward();
    optim::GradNorm gn = optim::global_grad_norm(params, cfg.optimizer.grad_clip > 0 ? cfg.optimizer.grad_clip : 1e30);
    if (std::find(o.param_norm_steps.begin(), o.param_norm_steps.end(), step) != o.param_norm_steps.end()) {
      nlohmann::json norms = nlohmann::json::object();
      for (const auto& [name, p] : gpt.named_parameters()) norms[name] = host_norm(p.grad());
      param_norms[std::to_string(step)] = norms;
    }
    opt.step(-1.0, gn.coefficient);
    opt.zero_grad();
    loss = l.item();  // syncs
    losses.push_back(loss);
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (step >= o.warmup) step_ms.push_back(ms);
    grad_norms.push_back(gn.norm());  // read back outside the timed step
    if (step == 0 || step + 1 == o.warmup + o.steps) spdlog::info("bench train: step {} loss {:.4f} {:.1f} ms", step, loss, ms);
  }
  // One more step with a sync after each phase: where the step's time goes (the syncs cost a
  // little; the sum is close to the step time above).
  nlohmann::json phases;
  {
    auto lap = [t = std::chrono::steady_clock::now()]() mutable {
      cuda::synchronize();
      const auto now = std::chrono::steady_clock::now();
      const double ms = std::chrono::duration<double, std::milli>(now - t).count();
      t = now;
      return ms;
    };
    cuda::synchronize();
    lap();
    Tensor l = gpt.loss(x, y);
    phases["forward"] = lap();
    l.backward();
    phases["backward"] = lap();
    optim::GradNorm gn = optim::global_grad_norm(params, cfg.optimizer.grad_clip > 0 ? cfg.optimizer.grad_clip : 1e30);
    phases["grad_norm"] = lap();
    opt.step(-1.0, gn.coefficient);
    phases["adamw"] = lap();
    opt.zero_grad();
    phases["zero_grad"] = lap();
    spdlog::info("bench train: phases (ms) {}", phases.dump());
  }
  std::sort(step_ms.begin(), step_ms.end());
  const double med = step_ms[step_ms.size() / 2];
  const double tokens_per_s = double(B * T) / (med / 1e3);
  const int64_t N = gpt.num_parameters() - (cfg.model.learned_positions ? cfg.model.block_size * cfg.model.n_embd : 0);
  const double flops_per_token = 6.0 * double(N) + 12.0 * double(cfg.model.n_layer * cfg.model.n_embd * T);
  const double mfu = tokens_per_s * flops_per_token / 989e12;
  const double peak_gib = double(cuda::memory_stats(0).peak_allocated_bytes) / double(1ull << 30);
  spdlog::info("bench train: {} params, B={} T={}: {:.1f} ms/step, {:.0f} tokens/s, MFU {:.1f}%, peak {:.2f} GiB",
               gpt.num_parameters(), B, T, med, tokens_per_s, 100 * mfu, peak_gib);
  nlohmann::json doc{{"system", "sparsek"}, {"device", cuda::device_name(0)}, {"config", o.config},
                     {"attention", cfg.attention.kind}, {"batch", B}, {"seq_len", T},
                     {"params", gpt.num_parameters()}, {"step_ms", med}, {"tokens_per_s", tokens_per_s},
                     {"mfu", mfu}, {"peak_mem_gib", peak_gib}, {"final_loss", loss}, {"dtype", o.dtype}, {"steps_run", o.warmup + o.steps},
                     {"losses", losses}, {"grad_norms", grad_norms}, {"phases_ms", phases}};
  if (!diagnoses.empty()) doc["diagnoses"] = diagnoses;
  if (!param_norms.empty()) doc["param_grad_norms"] = param_norms;
  if (!batch_splits.empty()) doc["batch_splits"] = batch_splits;
  std::ofstream f(o.out);
  SK_CHECK(f.good(), "bench train: cannot write ", o.out);
  f << doc.dump(2) << "\n";
}

}  // namespace sk::cli
