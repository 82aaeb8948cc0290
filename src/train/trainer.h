// The training loop (first stage: CPU, one process). For each optimizer step: grad_accum
// micro-batches from the loader (each rank's part of the global batch), forward + backward of
// the mean loss scaled by 1/grad_accum, the global gradient norm and clip coefficient, a guard
// that skips a step whose loss or gradient norm is NaN/Inf (and stops after max_bad_steps in a
// row), AdamW at the scheduled learning rate (weight decay on matrices only, by default),
// periodic validation (mean loss over the split's real targets, perplexity), a progress line and
// a JSONL metrics record. The data-parallel reduction will hook in between backward and the
// norm (one place: reduce_gradients()).
// Not yet: checkpoints and resume, CUDA (needs the attention kernels), multi-GPU.
// Tests: tests/train/test_trainer.cpp.
#pragma once
#include <string>
#include <vector>

#include "config/run_config.h"

namespace sk::train {

struct TrainResult {
  std::vector<double> train_losses;  // one per optimizer step
  std::vector<std::pair<int64_t, double>> val_losses;  // (step, mean validation loss)
  int64_t skipped_steps = 0;
};

// Shard paths from a glob pattern ("data/x/x_train_*.bin") or a directory + name via the
// manifest-free llm.c naming; throws naming the pattern if nothing matches.
std::vector<std::string> resolve_shards(const std::string& pattern);

TrainResult train(const config::RunConfig& cfg);

}  // namespace sk::train
