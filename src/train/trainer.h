// The training loop (one process; CPU f32, or CUDA bf16 with fp32 master weights). For each optimizer step: grad_accum
// micro-batches from the loader (each rank's part of the global batch), forward + backward of
// the mean loss scaled by 1/grad_accum, the global gradient norm and clip coefficient, a guard
// that skips a step whose loss or gradient norm is NaN/Inf (and stops after max_bad_steps in a
// row), AdamW at the scheduled learning rate (weight decay on matrices only, by default),
// periodic validation (mean loss over the split's real targets, perplexity), a progress line and
// a JSONL metrics record (tokens_per_s since the process started, step_time_s of this step
// before its validation, peak_mem_gib on CUDA). The data-parallel reduction (dist::GradientReducer) runs between the
// last backward and the norm.
//
// Checkpoints (train/checkpoint.h) every checkpoint.every steps, at the end, and when asked to
// stop (TrainOptions::should_stop; `sparsek train` wires SIGINT/SIGTERM to it). train.resume:
//   none  a fresh run; refused when checkpoint.dir already holds checkpoints or metrics
//   auto  continue from the latest checkpoint in checkpoint.dir, or start fresh if there is none
//   PATH  continue from that checkpoint (a step directory or a run directory)
// A resumed run continues exactly: the weights, AdamW moments and step, RNG, train/val loader
// cursors, NaN-guard counters and the schedule position come from the checkpoint, so on the CPU
// its losses are bit-identical to an uninterrupted run's. Settings that would change the
// computation (model.*, attention.*, train.batch_size/seq_len/grad_accum/dtype, data.seed) must
// match the checkpoint's (error naming the key and state.json); other changes are logged.
// Records of metrics.jsonl after the resumed step (written after the checkpoint, before the
// interruption) are dropped, so the file describes one run.
// Placement: train.device auto = cuda:0 when a GPU is present, else cpu; train.dtype auto = bf16
// on CUDA (bf16 parameters and activations, fp32 AdamW masters and moments, fp32 softmax and
// loss), f32 on the CPU. On CUDA, resume continues as closely as the kernels allow (the flash
// attention backward accumulates dQ with atomics, so it is not bit-exact); the precision a
// checkpoint was trained in must match. The progress line adds MFU (train_flops_per_token over
// the dense bf16 peak of an H100/H200, 989 TFLOP/s) and the peak GPU memory.
// The world comes from the environment (dist/world.h): with several processes each rank trains on
// cuda:LOCAL_RANK (NCCL) or the CPU (TCP collectives), its part of every global batch; gradients
// are all-reduced (dist/gradient_reducer.h) or, with dist.zero = 1, reduce-scattered into ZeRO-1
// shards (dist/zero_optimizer.h); rank 0 logs and writes checkpoints (ZeRO-1: every rank writes its
// optimizer shard). A checkpoint resumes on another world size when world size x train.batch_size
// is the same (docs/DISTRIBUTED.md).
// Tests: tests/train/test_trainer.cpp, test_resume.cpp, test_checkpoint_kill.cpp; multi-process:
// tests/dist/test_dist_train.cpp.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "config/run_config.h"
#include "data/loader.h"
#include "model/gpt.h"

namespace sk::train {

struct TrainResult {
  int64_t first_step = 0;            // the step this process started from (> 0 when resumed)
  int64_t last_step = 0;             // the step reached
  std::vector<double> train_losses;  // one per optimizer step run by this process
  std::vector<std::pair<int64_t, double>> val_losses;  // (step, mean validation loss), this process
  int64_t skipped_steps = 0;         // over the whole run (resumed runs included)
  bool stopped = false;              // should_stop ended the run before train.max_steps
  std::string last_checkpoint;       // directory of the last checkpoint saved ("" if none)
};

struct TrainOptions {
  // Asked after every optimizer step (with the step count reached); true saves a checkpoint
  // (when checkpoint.every > 0) and returns early.
  std::function<bool(int64_t step)> should_stop;
};

// Shard paths from a glob pattern ("data/x/x_train_*.bin"); throws naming the pattern if nothing
// matches.
std::vector<std::string> resolve_shards(const std::string& pattern);

// Mean loss over the real targets of up to max_batches batches (0: the whole split) of `loader`
// (rewound first), with the logits of the padded vocabulary rows excluded.
// With `sum_and_count`: also the loss sum and the number of targets of this rank's part (a
// multi-rank mean is sum over ranks of the sums / sum of the counts: ranks may hold different
// numbers of real targets, the last global batch being padded).
double evaluate(const model::Gpt& gpt, data::DataLoader& loader, int64_t max_batches,
                std::pair<double, int64_t>* sum_and_count = nullptr);
// The same mean loss computed strictly causally: every position's logits from the decode path
// (Gpt::forward_step token by token), so no position's output depends on later tokens in any way.
// Equal to evaluate for full / sliding_window / sparsek; for lsh it removes the chunk-boundary
// dependence of a whole-sequence forward (docs/LSH.md). Costs T decode steps per sequence.
double evaluate_causal(const model::Gpt& gpt, data::DataLoader& loader, int64_t max_batches);

TrainResult train(const config::RunConfig& cfg, const TrainOptions& opts = {});

// The devices train() can run on here: "cpu", plus "cuda" when this build has the CUDA backend
// and a GPU is present. `sparsek info` prints them; scripts/quickstart.sh picks its GPU preset
// only when "cuda" is listed.
std::vector<std::string> training_devices();

// Dense bf16 tensor-core peak of an H100/H200 SXM (FLOP/s), the MFU denominator.
inline constexpr double kHopperDenseBf16Flops = 989e12;

// train.device / train.dtype resolved: auto -> cuda:0 if present else cpu; dtype auto -> bf16 on
// CUDA, f32 on the CPU. Throws naming the key for a device that is absent or bf16 on the CPU.
struct Placement {
  Device device = Device::cpu();
  DType dtype = DType::F32;
};
Placement resolve_placement(const std::string& device, const std::string& dtype);

}  // namespace sk::train
