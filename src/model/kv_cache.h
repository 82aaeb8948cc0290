// KvCache: the decoding state of a whole Gpt, one attention cache per layer (the kind decides what
// it keeps: all keys and values for `full`, the last w for `sliding_window`). Made by
// Gpt::new_cache, advanced by Gpt::forward_step. Move-only.
// Tests: tests/model/test_gpt_decode.cpp.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "attention/attention.h"

namespace sk::model {

struct KvCache {
  int64_t batch = 0;          // B: sequences decoded together
  int64_t max_positions = 0;  // longest sequence the cache was made for
  int64_t length = 0;         // tokens consumed so far = the position of the next token
  std::vector<std::unique_ptr<attention::AttentionCache>> layers;  // one per block
  // (B, max_positions) i32 on the model's device, row b = 0, 1, ..., max_positions - 1: the ids the
  // learned position table reads at each step, made once so that a step copies nothing from the
  // host (undefined for models without a position table).
  Tensor positions;
};

}  // namespace sk::model
