// Diagnostics of `sparsek bench train` for comparing a training trajectory with the peer's (all
// off by default; used to show that the GPU step computes the gradient of its weights, see
// docs/bench/train.md): the GPU model against an f32 CPU copy, the full batch against the mean of
// one-sequence gradients, per-parameter gradient norms.
#pragma once
#include <nlohmann/json.hpp>

#include "model/gpt.h"

namespace sk::cli {

// Every parameter's gradient norm (L2, computed on the host in double), keyed by parameter name.
nlohmann::json grad_norms_by_parameter(const model::Gpt& gpt);

// The GPU model's loss and every parameter gradient on x, y (B, T) against `cpu` (an f32 CPU model
// of the same config) given the GPU model's (rounded) weights: where a GPU kernel and the reference
// part ways. Leaves no gradient behind on either model.
nlohmann::json diagnose_against_cpu(const model::Gpt& gpu, model::Gpt& cpu, const Tensor& x, const Tensor& y);

// The full batch's gradient against the mean of the B one-sequence gradients (both on the GPU): the
// same function, so they differ by rounding only unless a kernel mishandles sequences past the
// first. Leaves no gradient behind.
nlohmann::json check_batch_split(const model::Gpt& gpu, const Tensor& x, const Tensor& y);

}  // namespace sk::cli
