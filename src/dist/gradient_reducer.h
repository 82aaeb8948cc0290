// Data-parallel gradient reduction: the trainer calls reduce() once per optimizer step, after the
// last micro-batch's backward and before the global gradient norm (trainer.cpp), so that every
// rank's parameter gradients become the mean over the ranks. The loss is averaged the same way
// (mean_scalar) for logging.
//
// BucketReducer packs the gradients, in parameter order, into buckets of up to bucket_mb (f32, or
// bf16 with reduce_dtype = bf16, NCCL only), all-reduces each bucket's mean through a
// Communicator (communicator.h: TCP on the CPU, NCCL on CUDA) and unpacks it. With ZeRO-1
// (dist.zero = 1) the trainer uses dist/zero_optimizer.h instead, which reduce-scatters.
// The autograd engine has no per-parameter "gradient ready" hook, so the reduction runs after
// backward rather than overlapped with it.
// Tests: tests/dist/test_gradient_reducer.cpp, test_dist_train.cpp.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "dist/communicator.h"
#include "dist/world.h"
#include "tensor/tensor.h"

namespace sk::dist {

class GradientReducer {
 public:
  virtual ~GradientReducer() = default;
  // Every parameter's gradient becomes the mean over the ranks, in place (every rank must have
  // every gradient).
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

class BucketReducer final : public GradientReducer {
 public:
  // `comm` must outlive the reducer.
  BucketReducer(Communicator& comm, const std::string& reduce_dtype, double bucket_mb);
  void reduce(const std::vector<Tensor>& params) override;
  double mean_scalar(double value) override { return comm_.mean_scalar(value); }
  int world_size() const override { return comm_.world_size(); }
  std::string name() const override { return comm_.name() + "-" + reduce_dtype_; }

 private:
  Communicator& comm_;
  std::string reduce_dtype_;
  double bucket_mb_;
};

// LocalReducer for a world of one, else a BucketReducer over `comm`.
std::unique_ptr<GradientReducer> make_gradient_reducer(Communicator& comm, const std::string& reduce_dtype,
                                                       double bucket_mb);

}  // namespace sk::dist
