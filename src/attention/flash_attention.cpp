// Host side of the fused CUDA attention (flash_attention.h). Stub until the kernels land.
#include "attention/flash_attention.h"

#include "util/check.h"

namespace sk::attention {

bool flash_attention_supported(const Tensor&) { return false; }

AttentionForward flash_attention_forward(const Tensor&, const Tensor&, const Tensor&, CausalWindow) {
  SK_FAIL("flash_attention_forward: the fused CUDA attention kernels are not built yet");
}

AttentionGrads flash_attention_backward(const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                                        const AttentionForward&, CausalWindow) {
  SK_FAIL("flash_attention_backward: the fused CUDA attention kernels are not built yet");
}

}  // namespace sk::attention
