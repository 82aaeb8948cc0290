// The training loop (trainer.h).
#include "train/trainer.h"

#include <glob.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "autograd/node.h"
#include "data/loader.h"
#include "model/gpt.h"
#include "ops/ops.h"
#include "optim/adamw.h"
#include "optim/grad_clip.h"
#include "train/schedule.h"
#include "util/check.h"

namespace sk::train {

std::vector<std::string> resolve_shards(const std::string& pattern) {
  SK_CHECK(!pattern.empty(), "config: data.train / data.val is empty: give a shard glob such as "
           "data/python_docs/python_docs_train_*.bin");
  glob_t g{};
  const int rc = ::glob(pattern.c_str(), 0, nullptr, &g);
  std::vector<std::string> out;
  if (rc == 0)
    for (size_t i = 0; i < g.gl_pathc; ++i) out.push_back(g.gl_pathv[i]);
  globfree(&g);
  SK_CHECK(!out.empty(), "no shard file matches '", pattern, "' (build the data with scripts/data/*.sh or sparsek prepare)");
  return out;
}

namespace {

// Weight decay on 2-D weights; embeddings, norms and biases only when asked.
bool decays(const std::string& name, const Tensor& t, const config::OptimizerConfig& o) {
  const bool embedding = name == "wte" || name == "wpe";
  if (embedding) return o.decay_embeddings;
  if (t.ndim() < 2) return o.decay_norms_and_biases;
  return true;
}

// Mean validation loss over the real targets of up to max_batches batches.
double evaluate(const model::Gpt& gpt, data::DataLoader& val, int64_t max_batches, int64_t vocab) {
  autograd::NoGradGuard no_grad;
  val.reset();
  double total = 0;
  int64_t targets = 0, batches = 0;
  ops::CrossEntropyOptions o;
  o.valid_vocab = vocab;
  o.reduction = ops::Reduction::Sum;
  while (auto b = val.next()) {
    total += ops::cross_entropy(gpt.forward(b->inputs), b->targets, o).item();
    targets += b->num_targets;
    if (++batches == max_batches) break;
  }
  SK_CHECK(targets > 0, "validation split has no targets");
  return total / double(targets);
}

}  // namespace

TrainResult train(const config::RunConfig& cfg) {
  cfg.validate();
  const std::string& dev = cfg.train.device;
  SK_CHECK(dev == "auto" || dev == "cpu", "train.device = \"", dev,
           "\": training on CUDA needs the attention kernels (attention issue); use train.device=cpu for now");
  SK_CHECK(cfg.train.dtype != "bf16", "train.dtype = bf16 needs the CUDA path; use f32 on the CPU");
  const int64_t B = cfg.train.batch_size, T = cfg.train.seq_len;
  data::DataLoaderOptions lo;
  lo.batch_size = B;
  lo.seq_len = T;
  lo.seed = static_cast<uint64_t>(cfg.data.seed);
  data::DataLoader train_loader(resolve_shards(cfg.data.train), data::DataLoader::Mode::Train, lo);
  std::unique_ptr<data::DataLoader> val_loader;
  if (!cfg.data.val.empty() && cfg.eval.every > 0) {
    data::DataLoaderOptions vo = lo;
    vo.prefetch = 0;
    val_loader = std::make_unique<data::DataLoader>(resolve_shards(cfg.data.val), data::DataLoader::Mode::Val, vo);
  }

  Rng rng(static_cast<uint64_t>(cfg.train.seed));
  model::Gpt gpt(cfg.model, cfg.attention, DType::F32, Device::cpu(), rng);
  optim::AdamW opt({.lr = cfg.optimizer.lr, .beta1 = cfg.optimizer.beta1, .beta2 = cfg.optimizer.beta2,
                    .eps = cfg.optimizer.eps, .weight_decay = cfg.optimizer.weight_decay});
  std::vector<Tensor> params;
  for (auto& [name, t] : gpt.named_parameters()) {
    opt.add_param(t, decays(name, t, cfg.optimizer));
    params.push_back(t);
  }
  spdlog::info("train: {} parameters, {} layers x {} wide, T = {}, batch {} x {} accumulation, {} steps, cpu f32",
               gpt.num_parameters(), cfg.model.n_layer, cfg.model.n_embd, T, B, cfg.train.grad_accum,
               cfg.train.max_steps);

  std::ofstream metrics;
  if (!cfg.logging.metrics_file.empty()) {
    std::filesystem::create_directories(cfg.checkpoint.dir);
    const auto path = std::filesystem::path(cfg.checkpoint.dir) / cfg.logging.metrics_file;
    metrics.open(path, std::ios::app);
    SK_CHECK(metrics.good(), "cannot open the metrics file ", path.string());
  }

  TrainResult result;
  int64_t bad_in_a_row = 0;
  const auto t0 = std::chrono::steady_clock::now();
  for (int64_t step = 0; step < cfg.train.max_steps; ++step) {
    const double lr = learning_rate(step, cfg.schedule, cfg.optimizer.lr, cfg.train.max_steps);
    opt.zero_grad();
    double loss_sum = 0;
    for (int64_t micro = 0; micro < cfg.train.grad_accum; ++micro) {
      data::Batch b = *train_loader.next();
      Tensor loss = gpt.loss(b.inputs, b.targets);
      loss_sum += loss.item();
      ops::scale(loss, 1.0 / double(cfg.train.grad_accum)).backward();
    }
    const double loss = loss_sum / double(cfg.train.grad_accum);
    // (data parallel: reduce_gradients(params) goes here)
    const double max_norm = cfg.optimizer.grad_clip > 0 ? cfg.optimizer.grad_clip : 1e30;
    optim::GradNorm gn = optim::global_grad_norm(params, max_norm);
    const double norm = gn.norm();
    if (!std::isfinite(loss) || !std::isfinite(norm)) {
      ++result.skipped_steps;
      spdlog::warn("step {}: loss {} / gradient norm {} is not finite: step skipped ({} in a row)", step + 1, loss, norm,
                   ++bad_in_a_row);
      SK_CHECK(bad_in_a_row < cfg.train.max_bad_steps, "training stopped: ", bad_in_a_row,
               " steps in a row had a NaN/Inf loss or gradient (train.max_bad_steps = ", cfg.train.max_bad_steps, ")");
      result.train_losses.push_back(loss);
      continue;
    }
    bad_in_a_row = 0;
    opt.step(lr, gn.coefficient);
    result.train_losses.push_back(loss);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double tokens = double(step + 1) * double(B * T * cfg.train.grad_accum);
    nlohmann::json rec = {{"step", step + 1}, {"loss", loss}, {"lr", lr}, {"grad_norm", norm},
                          {"tokens_per_s", tokens / std::max(secs, 1e-9)}};
    if (val_loader && ((step + 1) % cfg.eval.every == 0 || step + 1 == cfg.train.max_steps)) {
      const double vl = evaluate(gpt, *val_loader, cfg.eval.max_batches, cfg.model.vocab_size);
      result.val_losses.push_back({step + 1, vl});
      rec["val_loss"] = vl;
      rec["val_ppl"] = std::exp(vl);
      spdlog::info("step {:5d} | validation loss {:.4f} | perplexity {:.2f}", step + 1, vl, std::exp(vl));
    }
    if ((step + 1) % cfg.logging.every == 0 || step == 0 || step + 1 == cfg.train.max_steps) {
      const double eta = secs / double(step + 1) * double(cfg.train.max_steps - step - 1);
      spdlog::info("step {:5d}/{} | loss {:.4f} | lr {:.2e} | norm {:.3f} | {:.0f} tok/s | ETA {:.0f} s", step + 1,
                   cfg.train.max_steps, loss, lr, norm, tokens / std::max(secs, 1e-9), eta);
    }
    if (metrics.is_open()) metrics << rec.dump() << "\n" << std::flush;
  }
  return result;
}

}  // namespace sk::train
