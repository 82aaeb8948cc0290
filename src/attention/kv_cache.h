// KvRing: the keys and values of one layer for decoding, as a ring of S slots per (batch, head):
// position p lives in slot p % S, so the ring always holds the last S positions written. A full
// attention cache uses S = the longest sequence (it never wraps); a sliding window of w keys uses
// S = w (constant memory however long the generation). Attention over a set of keys does not depend
// on their order, so the decode step (decode.h) reads the ring as it is.
//   k, v: (B, H, S, D) contiguous, in the model's dtype and device.
// Tests: tests/attention/test_attention_interface.cpp (decode vs forward, ring wrap-around).
#pragma once
#include <cstdint>

#include "tensor/tensor.h"

namespace sk::attention {

class KvRing {
 public:
  KvRing() = default;
  KvRing(int64_t batch, int64_t heads, int64_t slots, int64_t head_dim, DType dtype, Device device);

  // Writes k_new, v_new (B, H, n, D), the keys/values of positions first .. first + n - 1 (only the
  // last S of them when n > S).
  void write(const Tensor& k_new, const Tensor& v_new, int64_t first);

  const Tensor& k() const { return k_; }
  const Tensor& v() const { return v_; }
  int64_t slots() const { return k_.size(2); }

 private:
  Tensor k_, v_;
};

}  // namespace sk::attention
