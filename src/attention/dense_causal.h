// DenseCausalAttention: softmax attention with a causal window mask, the module behind the `full`
// (window 0) and `sliding_window` (window w: keys [i - w + 1, i]) kinds (full.cpp,
// sliding_window.cpp register it). Projections from QkvProjection; the core is causal_attention
// (one autograd function: CPU reference or the fused CUDA kernels); decoding keeps a KvRing of
// max_positions slots (full) or min(w, max_positions) slots (window) per layer and runs
// attention_decode per new token (a first multi-token step on an empty cache, the prompt, runs the
// core over it at once).
// Tests: tests/attention/test_attention_interface.cpp, tests/model/test_gpt_decode.cpp.
#pragma once
#include <string>

#include "attention/attention.h"
#include "attention/qkv_projection.h"
#include "attention/reference.h"

namespace sk::attention {

class DenseCausalAttention : public Attention {
 public:
  DenseCausalAttention(std::string kind, const AttentionSpec& spec, CausalWindow mask, Rng& rng);

  std::string kind() const override { return kind_; }
  Tensor forward(const Tensor& x) const override;
  std::unique_ptr<AttentionCache> new_cache(int64_t batch, int64_t max_positions) const override;
  Tensor forward_step(const Tensor& x, AttentionCache& cache) const override;
  std::vector<std::pair<std::string, Tensor>> named_parameters() const override { return proj_.named_parameters(); }
  int64_t keys_attended(int64_t T) const override;

  CausalWindow mask() const { return mask_; }

 private:
  std::string kind_;
  QkvProjection proj_;
  CausalWindow mask_;
};

}  // namespace sk::attention
