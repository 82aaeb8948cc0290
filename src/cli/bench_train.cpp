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
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>

#include "autograd/node.h"
#include "backend/cuda_device.h"
#include "cli/bench_train_diagnostics.h"
#include "cli/commands.h"
#include "config/run_config.h"
#include "model/gpt.h"
#include "model/hf_import.h"
#include "optim/adamw.h"
#include "optim/grad_clip.h"
#include "tensor/random.h"
#include "util/check.h"

namespace sk::cli {

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
  // enqueue_ms: the host's part of each timed step (until every launch of the step is queued, before
  // the loss is read back): close to step_ms means the GPU waits for the host (launch-bound).
  std::vector<double> step_ms, enqueue_ms, losses, grad_norms;
  double loss = 0;
  nlohmann::json diagnoses = nlohmann::json::object(), param_norms = nlohmann::json::object(),
                 batch_splits = nlohmann::json::object();
  std::unique_ptr<model::Gpt> cpu_copy;
  cuda::reset_peak_memory(0);
  for (int step = 0; step < o.warmup + o.steps; ++step) {
    auto listed = [step](const std::vector<int>& steps) { return std::find(steps.begin(), steps.end(), step) != steps.end(); };
    if (listed(o.diagnose_steps)) {
      if (!cpu_copy) cpu_copy = std::make_unique<model::Gpt>(cfg.model, cfg.attention, DType::F32, Device::cpu(), rng);
      const int64_t nb = std::min(o.diagnose_batch, B);
      diagnoses[std::to_string(step)] = diagnose_against_cpu(gpt, *cpu_copy, x.slice(0, 0, nb).contiguous(), y.slice(0, 0, nb).contiguous());
    }
    if (listed(o.batch_split_steps))
      batch_splits[std::to_string(step)] = check_batch_split(gpt, x, y);
    cuda::synchronize();
    const auto t0 = std::chrono::steady_clock::now();
    Tensor l = gpt.loss(x, y);
    l.backward();
    optim::GradNorm gn = optim::global_grad_norm(params, cfg.optimizer.grad_clip > 0 ? cfg.optimizer.grad_clip : 1e30);
    if (listed(o.param_norm_steps)) param_norms[std::to_string(step)] = grad_norms_by_parameter(gpt);
    opt.step(-1.0, gn.coefficient);
    opt.zero_grad();
    const auto t_enqueued = std::chrono::steady_clock::now();
    loss = l.item();  // syncs
    losses.push_back(loss);
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (step >= o.warmup) {
      step_ms.push_back(ms);
      enqueue_ms.push_back(std::chrono::duration<double, std::milli>(t_enqueued - t0).count());
    }
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
  std::sort(enqueue_ms.begin(), enqueue_ms.end());
  const double med = step_ms[step_ms.size() / 2];
  const double med_enqueue = enqueue_ms[enqueue_ms.size() / 2];
  const double tokens_per_s = double(B * T) / (med / 1e3);
  const int64_t N = gpt.num_parameters() - (cfg.model.learned_positions ? cfg.model.block_size * cfg.model.n_embd : 0);
  const double flops_per_token = 6.0 * double(N) + 12.0 * double(cfg.model.n_layer * cfg.model.n_embd * T);
  const double mfu = tokens_per_s * flops_per_token / 989e12;
  const double peak_gib = double(cuda::memory_stats(0).peak_allocated_bytes) / double(1ull << 30);
  spdlog::info("bench train: {} params, B={} T={}: {:.1f} ms/step ({:.1f} ms to enqueue), {:.0f} tokens/s, MFU {:.1f}%, peak {:.2f} GiB",
               gpt.num_parameters(), B, T, med, med_enqueue, tokens_per_s, 100 * mfu, peak_gib);
  nlohmann::json doc{{"system", "sparsek"}, {"device", cuda::device_name(0)}, {"config", o.config},
                     {"attention", cfg.attention.kind}, {"batch", B}, {"seq_len", T},
                     {"params", gpt.num_parameters()}, {"step_ms", med}, {"enqueue_ms", med_enqueue}, {"tokens_per_s", tokens_per_s},
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
