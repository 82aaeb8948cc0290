// The SparseK scoring network (../shared/docs/attention-spec.md section 4.1): per layer, one
// linear map from the attention block's input (after its LayerNorm) to one score per head, plus a
// fixed position slope:  u_hj = x_j . w_h + b_h + c * (pos_offset + j).
//   x: (B, T, C) -> u: (B, Hu, T), Hu = n_heads, or 1 with shared_selection (every head then selects
//   the same keys). Weights PyTorch-style: weight (Hu, C), bias (Hu).
// Initialisation (config attention.score_init):
//   recent: w = 0, b = 0, so u_j = c * j: the selection starts as "the most recent keys" (close to a
//           sliding window; the natural start when fine-tuning a dense model).
//   normal: w ~ N(0, 0.02) like the model's other linear layers, b = 0.
// Tests: tests/attention/sparsek/test_scorer.cpp.
#pragma once
#include <cstdint>
#include <string>

#include "tensor/tensor.h"

namespace sk::attention::sparsek {

enum class ScoreInit { Recent, Normal };
// "recent" | "normal" (config attention.score_init); throws naming the key.
ScoreInit parse_score_init(const std::string& name);

struct SparsekScorer {
  Tensor weight;       // (Hu, C), requires grad
  Tensor bias;         // (Hu), requires grad
  double slope = 1e-3; // c, fixed (config attention.score_slope)

  static SparsekScorer create(int64_t n_embd, int64_t score_heads, double slope, ScoreInit init, DType dtype,
                              Device device, Rng& rng);
  // x (B, T, C) -> u (B, Hu, T); pos_offset is the position of x's first row (decoding).
  Tensor forward(const Tensor& x, int64_t pos_offset = 0) const;
};

}  // namespace sk::attention::sparsek
