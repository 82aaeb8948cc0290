// Global gradient norm and clipping over a list of parameters.
//   norm = sqrt(sum over params of sum g^2), accumulated in fp32 (f64 on CPU) in a fixed order;
//   coefficient = min(1, max_norm / (norm + 1e-6)).
// Both are scalar tensors on the parameters' device, so a CUDA step needs no host sync when the
// coefficient goes to AdamW::step as grad_scale.
// CPU reference: grad_clip.cpp; CUDA: kernels/ops/reduce.cu (sumsq, clip coefficient).
// Tests: tests/optim/test_grad_clip.cpp.
#pragma once
#include <vector>

#include "tensor/tensor.h"

namespace sk::optim {

struct GradNorm {
  Tensor sumsq;        // () f32 (f64 on CPU f64 params): sum of squares of every gradient
  Tensor coefficient;  // () same dtype: min(1, max_norm / (norm + 1e-6))
  double norm() const;  // sqrt(sumsq), read back to the host (a sync on CUDA)
};

// Parameters without a gradient are skipped. All parameters must be on one device.
GradNorm global_grad_norm(const std::vector<Tensor>& params, double max_norm);
// g *= coefficient, in place, for every parameter's gradient. Reads the coefficient back to the
// host (a sync on CUDA); a training step should rather pass it to AdamW::step as grad_scale.
void scale_grads_(const std::vector<Tensor>& params, const Tensor& coefficient);

}  // namespace sk::optim
