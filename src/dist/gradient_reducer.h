// Data-parallel gradient reduction: the trainer calls reduce() once per optimizer step, after the
// last micro-batch's backward and before the global gradient norm (trainer.cpp), so that every
// rank's parameter gradients become the mean over the ranks. The loss is averaged the same way
// (mean_scalar) for logging.
//
// Implementations:
//   LocalReducer  one process: nothing to reduce (the CPU path, and any run of world size 1).
//   NCCL (world size > 1, CUDA + NCCL builds): dist/nccl_reducer.h (compiled, not yet run on GPUs).
// The autograd engine has no per-parameter "gradient ready" hook, so a bucketed reducer runs
// after backward rather than overlapped with it.
// Tests: tests/dist/test_gradient_reducer.cpp.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "dist/world.h"
#include "tensor/tensor.h"

namespace sk::dist {

class GradientReducer {
 public:
  virtual ~GradientReducer() = default;
  // Every parameter's gradient (those that have one) becomes the mean over the ranks, in place.
  virtual void reduce(const std::vector<Tensor>& params) = 0;
  // The mean of `value` over the ranks (the logged loss).
  virtual double mean_scalar(double value) = 0;
  virtual int world_size() const = 0;
  virtual std::string name() const = 0;
};

class LocalReducer final : public GradientReducer {
 public:
  void reduce(const std::vector<Tensor>&) override {}
  double mean_scalar(double value) override { return value; }
  int world_size() const override { return 1; }
  std::string name() const override { return "local"; }
};

// The reducer for `world`: LocalReducer for a single process, else the NCCL reducer on `device`
// (dist/nccl_reducer.h; an error naming the rank and the environment in a build without NCCL).
std::unique_ptr<GradientReducer> make_gradient_reducer(const World& world, Device device, const std::string& reduce_dtype,
                                                       double bucket_mb, double timeout_s);

}  // namespace sk::dist
