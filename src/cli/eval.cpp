// `sparsek eval CONFIG|CHECKPOINT [--split val|train] [--files SHARDS...] [--max-batches N] [--causal]`:
// mean loss and perplexity of a trained model. CONFIG (a JSON file) means the latest checkpoint
// in its checkpoint.dir; CHECKPOINT is a step directory or a run directory. The split's shards
// come from the config (data.val / data.train) unless --files gives shard files or globs; every
// window is read in order (the validation loader), each target counted once. --causal computes each
// position's logits by token-by-token decoding (strictly causal; what lsh comparisons need).
#include <spdlog/spdlog.h>

#include <cmath>
#include <cstdio>
#include <filesystem>

#include "cli/commands.h"
#include "data/loader.h"
#include "train/checkpoint.h"
#include "train/trainer.h"
#include "util/check.h"

namespace sk::cli {

void run_eval(const EvalOptions& o) {
  namespace fs = std::filesystem;
  std::error_code ec;
  SK_CHECK(fs::exists(o.target, ec), "eval: ", o.target, " does not exist (give a run config, a checkpoint "
           "directory or a run directory)");
  fs::path ck_path = o.target;
  if (fs::is_regular_file(o.target, ec)) {
    const config::RunConfig from_file = config::load_run_config(o.target, o.overrides);
    ck_path = from_file.checkpoint.dir;
    SK_CHECK(train::latest_checkpoint(ck_path).has_value(), "eval: no checkpoint in ", ck_path.string(),
             " (checkpoint.dir of ", o.target, "): train first");
  }
  const train::Checkpoint ck = train::Checkpoint::open(ck_path);
  const config::RunConfig cfg = ck.config(o.overrides);
  // On the GPU when the run's train.device/train.dtype resolve there (auto: when one is present).
  const train::Placement place = train::resolve_placement(cfg.train.device, cfg.train.dtype);
  const model::Gpt gpt = ck.load_model(cfg, place.dtype, place.device);

  SK_CHECK(o.split == "val" || o.split == "train", "eval: --split must be val or train, got '", o.split, "'");
  std::vector<std::string> shards;
  for (const std::string& f : o.files) {
    const auto matched = train::resolve_shards(f);
    shards.insert(shards.end(), matched.begin(), matched.end());
  }
  if (o.files.empty()) shards = train::resolve_shards(o.split == "val" ? cfg.data.val : cfg.data.train);
  data::DataLoaderOptions lo;
  lo.batch_size = cfg.train.batch_size;
  lo.seq_len = cfg.train.seq_len;
  lo.prefetch = 0;
  data::DataLoader loader(shards, data::DataLoader::Mode::Val, lo);
  const int64_t max_batches = o.max_batches >= 0 ? o.max_batches : cfg.eval.max_batches;
  const int64_t batches = max_batches > 0 ? std::min(max_batches, loader.batches_per_epoch()) : loader.batches_per_epoch();
  spdlog::info("eval: {} (step {}), {} shard(s), {} batch(es) of {} x {}", ck.dir().string(), ck.step(), shards.size(),
               batches, lo.batch_size, lo.seq_len);
  const double loss =
      o.causal ? train::evaluate_causal(gpt, loader, max_batches) : train::evaluate(gpt, loader, max_batches);
  std::printf("step %lld  %s  loss %.4f  perplexity %.2f\n", static_cast<long long>(ck.step()),
              o.files.empty() ? o.split.c_str() : "files", loss, std::exp(loss));
}

}  // namespace sk::cli
