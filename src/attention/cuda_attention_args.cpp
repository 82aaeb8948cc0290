// cuda_attention_args.h: argument checks and kernel parameters of the fused CUDA attention.
#include "attention/cuda_attention_args.h"

#include <cmath>

#include "util/check.h"
#include "util/env.h"

#ifdef SPARSEK_HAS_CUDA
#include "backend/cuda_device.h"
#endif

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

int flash_backward_kernel_from_env() {
  return util::env_choice("SPARSEK_FLASH_BWD", {"auto", "mma", "wgmma", "wgmma_keysplit", "wgmma_pipelined",
                                               "wgmma_pipelined_keysplit"});
}

void check_wgmma_choice(const char* variable, int kernel, int64_t head_dim, int device, int hd128_kernel) {
  if (kernel < 2) return;
  const int cc = cuda::compute_capability(device);
  SK_CHECK(cc == 90, variable, ": the wgmma kernels need compute capability 9.0, got ", cc, " (use auto or mma)");
  SK_CHECK(head_dim == 64 || (head_dim == 128 && kernel == hd128_kernel), variable,
           hd128_kernel < 0 ? ": the wgmma kernels need head dim 64, got head dim "
                            : ": this wgmma kernel needs head dim 64 (at 128 only wgmma_pipelined runs), got head dim ",
           head_dim, " (use auto or mma)");
}
#endif

}  // namespace sk::attention
