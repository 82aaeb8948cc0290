// cuda_attention_args.h: argument checks and kernel parameters of the fused CUDA attention.
#include "attention/cuda_attention_args.h"

#include <cmath>

#include "util/check.h"

namespace sk::attention {

bool fused_attention_takes(const Tensor& q) {
#ifdef SPARSEK_HAS_CUDA
  return q.defined() && q.is_cuda() && q.dtype() == DType::BF16 && q.ndim() == 4 &&
         (q.size(3) == 64 || q.size(3) == 128);
#else
  (void)q;
  return false;
#endif
}

void check_fused_attention_q(const Tensor& q, const char* op) {
  SK_CHECK(fused_attention_takes(q), op, ": q must be (B, H, T, D) bf16 on CUDA with D in {64, 128}, got ",
           q.defined() ? q.str() : std::string("undefined"));
}

#ifdef SPARSEK_HAS_CUDA
SkFlashStrides attention_strides(const Tensor& x, const char* op, const char* name) {
  const Strides& s = x.strides();
  SK_CHECK(s[3] == 1, op, ": ", name, " must have a contiguous last dim, got strides ", shape_str(s));
  return SkFlashStrides{s[0], s[1], s[2]};
}

void check_attention_input(const Tensor& x, const Tensor& q, const char* op, const char* name) {
  SK_CHECK(x.defined() && x.ndim() == 4 && x.shape() == q.shape(), op, ": ", name, " must be (B, H, T, D) like q ",
           shape_str(q.shape()), ", got ", x.defined() ? shape_str(x.shape()) : std::string("undefined"));
  SK_CHECK(x.is_cuda() && x.dtype() == DType::BF16 && x.device() == q.device(), op, ": ", name, " must be bf16 on ",
           q.device().str(), ", got ", x.str());
}

SkFlashParams attention_params(const Tensor& q, const Tensor& k, const Tensor& v, int64_t window, const char* op) {
  check_attention_input(k, q, op, "k");
  check_attention_input(v, q, op, "v");
  SK_CHECK(window >= 0 && window <= (int64_t(1) << 30), op, ": bad window ", window);
  SK_CHECK(q.size(2) < (int64_t(1) << 30), op, ": sequence too long: ", q.size(2));
  SkFlashParams p{};
  p.q = q.data_ptr();
  p.k = k.data_ptr();
  p.v = v.data_ptr();
  p.q_stride = attention_strides(q, op, "q");
  p.k_stride = attention_strides(k, op, "k");
  p.v_stride = attention_strides(v, op, "v");
  p.batch = int(q.size(0));
  p.heads = int(q.size(1));
  p.seq_len = int(q.size(2));
  p.head_dim = int(q.size(3));
  p.window = int(window);
  p.softmax_scale = float(1.0 / std::sqrt(double(q.size(3))));
  return p;
}
#endif

}  // namespace sk::attention
