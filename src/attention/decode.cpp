// Attention decode step (decode.h): checks, the CPU reference (plain loops in the tensor's type)
// and the CUDA dispatch.
#include "attention/decode.h"

#include <cmath>
#include <limits>
#include <vector>

#include "ops/op_common.h"
#include "util/check.h"

#ifdef SPARSEK_HAS_CUDA
#include "backend/cuda_context.h"
#include "kernels/attention/decode.h"
#endif

namespace sk::attention {

namespace {

void check_decode(const Tensor& q, const Tensor& k, const Tensor& v, int64_t position, int64_t window) {
  ops::check_floating("attention_decode", "q", q);
  ops::check_same_shape("attention_decode", "k_cache", k, "v_cache", v);
  ops::check_same_dtype("attention_decode", "q", q, "k_cache", k);
  ops::check_same_dtype("attention_decode", "q", q, "v_cache", v);
  ops::check_same_device("attention_decode", "q", q, "k_cache", k);
  ops::check_same_device("attention_decode", "q", q, "v_cache", v);
  SK_CHECK(q.ndim() == 3 && k.ndim() == 4 && k.size(0) == q.size(0) && k.size(1) == q.size(1) &&
               k.size(3) == q.size(2),
           "attention_decode: q must be (B, H, D) and the caches (B, H, S, D), got q ", shape_str(q.shape()),
           ", k_cache ", shape_str(k.shape()));
  SK_CHECK(k.is_contiguous() && v.is_contiguous(), "attention_decode: the caches must be contiguous");
  SK_CHECK(position >= 0 && window >= 0, "attention_decode: position ", position, " and window ", window,
           " must be >= 0");
  const int64_t S = k.size(2), visible = window > 0 ? std::min(window, position + 1) : position + 1;
  SK_CHECK(S >= 1 && visible <= S, "attention_decode: the cache holds ", S, " positions but the query at position ",
           position, " sees ", visible, " (window ", window, ")");
}

}  // namespace

Tensor attention_decode_reference(const Tensor& q_in, const Tensor& k, const Tensor& v, int64_t position,
                                  int64_t window) {
  check_decode(q_in, k, v, position, window);
  SK_CHECK(q_in.device().is_cpu(), "attention_decode_reference runs on the CPU, got ", q_in.device().str());
  const Tensor q = q_in.contiguous();
  const int64_t BH = q.size(0) * q.size(1), D = q.size(2), S = k.size(2);
  Tensor out = Tensor::empty(q.shape(), q.dtype());
  ops::dispatch_cpu_float(q.dtype(), "attention_decode_reference", [&]<typename F>() {
    const F s = F(1) / std::sqrt(F(D));
    std::vector<F> a(S);
    for (int64_t bh = 0; bh < BH; ++bh) {
      const F* Q = q.data<F>() + bh * D;
      const F* K = k.data<F>() + bh * S * D;
      const F* V = v.data<F>() + bh * S * D;
      F* O = out.data<F>() + bh * D;
      // Slot j holds position position - (position - j) mod S; visible if within the window.
      std::vector<int64_t> slots;
      for (int64_t j = 0; j < std::min(position + 1, S); ++j)
        if (window == 0 || (position - j) % S < window) slots.push_back(j);
      F m = -std::numeric_limits<F>::infinity();
      for (int64_t j : slots) {
        F dot = 0;
        for (int64_t d = 0; d < D; ++d) dot += Q[d] * K[j * D + d];
        a[j] = s * dot;
        m = std::max(m, a[j]);
      }
      F sum = 0;
      for (int64_t j : slots) sum += std::exp(a[j] - m);
      for (int64_t d = 0; d < D; ++d) O[d] = 0;
      for (int64_t j : slots) {
        const F p = std::exp(a[j] - m) / sum;
        for (int64_t d = 0; d < D; ++d) O[d] += p * V[j * D + d];
      }
    }
  });
  return out;
}

Tensor attention_decode(const Tensor& q, const Tensor& k, const Tensor& v, int64_t position, int64_t window) {
  if (q.device().is_cpu()) return attention_decode_reference(q, k, v, position, window);
  check_decode(q, k, v, position, window);
#ifdef SPARSEK_HAS_CUDA
  ops::check_cuda_dtype("attention_decode", q);
  const Tensor qc = q.detach().contiguous();
  const int64_t D = q.size(2);
  SK_CHECK(D <= 256, "attention_decode: the CUDA kernel takes head dims up to 256, got ", D);
  Tensor out = Tensor::empty(q.shape(), q.dtype(), q.device());
  cuda::set_device(q.device().index);
  SK_KERNEL_CHECK(sk_cuda_attention_decode(out.data_ptr(), qc.data_ptr(), k.data_ptr(), v.data_ptr(),
                                           q.size(0) * q.size(1), k.size(2), D, position, window,
                                           1.0f / std::sqrt(float(D)), kernel_dtype(q.dtype()), cuda::stream()));
  return out;
#else
  SK_FAIL("attention_decode: ", q.device().str(), " tensors in a CPU-only build");
#endif
}

}  // namespace sk::attention
