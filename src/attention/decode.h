// Attention decode step: the query of one new position per (batch, head) against a ring KV cache,
// for generation (no autograd).
//   q:       (B, H, D), the query at `position`
//   k_cache, v_cache: (B, H, S, D) contiguous rings: position p lives in slot p % S, and the ring
//            holds the last min(position + 1, S) positions (the caller writes position's k, v first)
//   returns: (B, H, D) = sum_p softmax_p(q.k_p / sqrt(D)) v_p over the positions
//            p in [position - window + 1, position] (window 0: [0, position])
// The ring must hold every visible position (S > position for full attention, S >= window for a
// window); checked. CPU reference (f32, f64) below; CUDA: kernels/attention/decode.cu (f32, bf16,
// fp32 accumulation, D <= 256). Tests: tests/attention/test_attention_decode.cpp.
#pragma once
#include <cstdint>

#include "tensor/tensor.h"

namespace sk::attention {

Tensor attention_decode(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache, int64_t position, int64_t window);

// The CPU reference (what attention_decode runs on the CPU).
Tensor attention_decode_reference(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache, int64_t position,
                                  int64_t window);

}  // namespace sk::attention
