// The `sliding_window` attention kind (attention-spec.md section 2): query i sees keys
// [i - w + 1, i], exactly w = attention.window keys including itself (fewer at the start);
// FlashAttention's window_size = (w, 0) would be w + 1 keys. The module is DenseCausalAttention
// with that window; its decode cache keeps only the last w keys. Registered in registry.cpp.
// Tests: tests/attention/test_attention_interface.cpp.
#include "attention/dense_causal.h"
#include "util/check.h"

namespace sk::attention {

std::unique_ptr<Attention> make_sliding_window_attention(const AttentionSpec& spec, Rng& rng) {
  SK_CHECK(spec.attention.window >= 1, "attention.window must be >= 1 for attention.kind \"sliding_window\", got ",
           spec.attention.window);
  return std::make_unique<DenseCausalAttention>("sliding_window", spec, CausalWindow{spec.attention.window}, rng);
}

}  // namespace sk::attention
