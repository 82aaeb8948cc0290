// The `full` attention kind: plain causal softmax attention (attention-spec.md section 1), query i
// sees keys 0..i. The module is DenseCausalAttention with window 0. Registered in registry.cpp.
// Tests: tests/attention/test_attention_interface.cpp.
#include "attention/dense_causal.h"

namespace sk::attention {

std::unique_ptr<Attention> make_full_attention(const AttentionSpec& spec, Rng& rng) {
  return std::make_unique<DenseCausalAttention>("full", spec, CausalWindow{0}, rng);
}

}  // namespace sk::attention
