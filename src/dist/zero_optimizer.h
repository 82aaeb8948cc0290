// ZeRO-1 (dist.zero = 1): AdamW whose state is sharded over the ranks of a data-parallel world.
//
// The parameters, in optimizer slot order, form the flat index space of ShardLayout
// (zero_shard.h; aligned to 64 elements, padded to world * shard_size). Each rank keeps, for its
// shard only, the fp32 master weights and the AdamW moments m and v (f32, on the parameters'
// device): 12 bytes per parameter / world instead of 12. One f32 flat buffer of all parameters
// (4 bytes per parameter) exists only from reduce_gradients to the end of step(), i.e. after
// backward has freed the activations, so it does not add to the peak of forward + backward.
// For bf16 parameters on 2 GPUs the state is 6 bytes per parameter instead of plain data
// parallelism's 12 (4 bytes for the flat buffer come and go after backward).
// Every step:
//   reduce_gradients(max_norm): the gradients are packed (converted to f32) into the flat buffer
//     of padded_total elements, reduce-scattered in place (mean over the ranks: this rank's slice
//     of the buffer receives its shard); the
//     global gradient norm is the sum over ranks (sum_scalar, f64) of each shard's sum of squares;
//     the clip coefficient min(1, max_norm / (norm + 1e-6)) as in optim/grad_clip.h. Returns the
//     norm (the same on every rank), so the trainer's NaN guard can skip the step on every rank.
//   step(lr): AdamW (optim::adamw_update_f32, the arithmetic of AdamW::step) on each parameter
//     segment of the shard with that parameter's weight decay, then the updated masters are
//     all-gathered into the flat buffer and unpacked into the parameters (rounded to bf16 for
//     bf16 parameters), so every rank holds the same full parameters again (in place: the masters
//     are copied into this rank's slice of the flat buffer, which is then all-gathered); the flat
//     buffer is released.
// On the CPU (TcpCommunicator, f32 parameters) the update is bit-identical to plain data
// parallelism with the same world: the reduce-scatter gives each element the same f32 mean as
// the all-reduce, and the update runs the same arithmetic per element.
// Checkpoints: owned_m/v/master (this rank's owned range, see ShardLayout::owned_begin) are
// written per rank (train/checkpoint.h); load_full() takes the state of the whole flat space
// (from any world size, re-cut by reshard()) and keeps this rank's range.
// Tests: tests/dist/test_zero_optimizer.cpp, test_dist_train.cpp.
#pragma once
#include <cstdint>
#include <vector>

#include "dist/communicator.h"
#include "dist/zero_shard.h"
#include "optim/adamw.h"
#include "tensor/tensor.h"

namespace sk::dist {

class ZeroOptimizer {
 public:
  static constexpr int64_t kAlign = 64;
  // params: leaves requiring grad (f32 on the CPU; f32 or bf16 on CUDA), all on comm.device();
  // decay[i]: weight decay for params[i]. The masters start as the parameters' values (every rank
  // must start from the same parameters). `comm` must outlive this object.
  ZeroOptimizer(Communicator& comm, const optim::AdamWConfig& cfg, const std::vector<Tensor>& params,
                const std::vector<bool>& decay);

  // After the last backward of a step: see above. Returns the global gradient norm.
  double reduce_gradients(double max_norm);
  // The AdamW update of this rank's shard at learning rate lr, then the all-gather.
  void step(double lr);
  void zero_grad();
  // Drops the flat buffer of a step that is not taken (a non-finite norm: the trainer skips it).
  void discard() { flat_ = Tensor(); }
  // master shard = the current parameter values (after loading weights into the parameters).
  void reload_masters();

  int64_t step_count() const { return step_; }
  void set_step_count(int64_t s) { step_ = s; }
  const ShardLayout& layout() const { return layout_; }
  const std::vector<Tensor>& params() const { return params_; }
  const optim::AdamWConfig& config() const { return cfg_; }

  // This rank's owned range [owned_begin, owned_end) of the state (views on the device).
  Tensor owned_m() const;
  Tensor owned_v() const;
  Tensor owned_master() const;
  // Sets the state from full flat arrays (layout().total() elements each, parameter order) and
  // the step count; keeps this rank's range.
  void load_full(int64_t step, const std::vector<float>& m, const std::vector<float>& v,
                 const std::vector<float>& master);

 private:
  Tensor owned(const Tensor& shard) const;
  Tensor own_slice() const;  // this rank's shard_size elements of flat_
  Communicator& comm_;
  optim::AdamWConfig cfg_;
  std::vector<Tensor> params_;
  std::vector<bool> decay_;
  ShardLayout layout_;
  Tensor flat_;                          // padded_total f32 from reduce_gradients to step(): gradients, then masters
  Tensor m_, v_, master_;                // shard_size f32 each
  Tensor coef_;                          // () f32 clip coefficient of the last reduce_gradients
  int64_t step_ = 0;
};

}  // namespace sk::dist
