// KvRing (kv_cache.h).
#include "attention/kv_cache.h"

#include <algorithm>

#include "util/check.h"

namespace sk::attention {

KvRing::KvRing(int64_t batch, int64_t heads, int64_t slots, int64_t head_dim, DType dtype, Device device)
    : k_(Tensor::zeros({batch, heads, slots, head_dim}, dtype, device)),
      v_(Tensor::zeros({batch, heads, slots, head_dim}, dtype, device)) {
  SK_CHECK(slots >= 1, "KV cache: needs at least one slot, got ", slots);
}

void KvRing::write(const Tensor& k_new, const Tensor& v_new, int64_t first) {
  SK_CHECK(k_.defined(), "KV cache: write into an empty ring");
  SK_CHECK(k_new.ndim() == 4 && k_new.shape() == v_new.shape() && k_new.size(0) == k_.size(0) &&
               k_new.size(1) == k_.size(1) && k_new.size(3) == k_.size(3),
           "KV cache: new keys/values ", shape_str(k_new.shape()), " / ", shape_str(v_new.shape()),
           " do not fit the ring ", shape_str(k_.shape()));
  const int64_t S = slots(), n = k_new.size(2);
  int64_t src = std::max<int64_t>(0, n - S);  // only the last S positions survive
  while (src < n) {
    const int64_t slot = (first + src) % S, len = std::min(n - src, S - slot);
    k_.slice(2, slot, slot + len).copy_(k_new.slice(2, src, src + len));
    v_.slice(2, slot, slot + len).copy_(v_new.slice(2, src, src + len));
    src += len;
  }
}

}  // namespace sk::attention
