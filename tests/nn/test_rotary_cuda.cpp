// CUDA-vs-CPU parity of rotary embeddings (kernels/nn/rotary.cu against src/nn/rotary.cpp), forward
// and backward, on fresh random inputs: partial and full rotary, head dims 6 / 64 / 128, T = 1, 17,
// 1000, positions offset up to 30000 (the angle's precision), and strided head views of a fused
// (B, T, 3, H, D) projection as the attention modules pass them. GPU only.
//
// Tolerances (the reference runs in f64 on the values the GPU sees, rounded to its dtype; the
// cotangent likewise):
//   f32:  rel_l2 <= 1e-5, max_abs <= 1e-5 * max|ref|: the angles are computed in double as the
//         reference does; one fp32 rotation (2 products, 1 sum) and one rounding per element.
//   bf16: rel_l2 <= 1e-2, max_abs <= 2e-2 * max|ref|: one bf16 rounding of the output (3.9e-3).
#include <gtest/gtest.h>

#include <cmath>
#include <iostream>

#include "backend/cuda_device.h"
#include "nn/rotary.h"
#include "testing/parity.h"

using namespace sk;

namespace {

void expect_close(const std::string& what, const Tensor& got, const Tensor& ref, DType dt) {
  ASSERT_TRUE(got.is_cuda()) << what;
  const sk::testing::ParityReport r = sk::testing::compare(got.detach().to(Device::cpu()).to(DType::F64), ref.detach());
  double max_ref = 0;
  for (double x : ref.to_vector()) max_ref = std::max(max_ref, std::abs(x));
  std::cout << "[parity] " << what << ": " << r.str() << std::endl;
  const double rel_tol = dt == DType::F32 ? 1e-5 : 1e-2, max_tol = dt == DType::F32 ? 1e-5 : 2e-2;
  EXPECT_FALSE(r.non_finite) << what << ": " << r.str();
  EXPECT_LE(r.rel_l2, rel_tol) << what << ": " << r.str();
  EXPECT_LE(r.max_abs, max_tol * max_ref) << what << ": " << r.str();
}

}  // namespace

TEST(CudaParity, rotary) {
  SK_REQUIRE_CUDA();
  sk::testing::PoisonAllocsGuard poison;  // unwritten outputs show up as NaN
  struct Case {
    int64_t B, H, T, D, R, offset;
    bool fused_view;  // heads as views of a (B, T, 3, H, D) projection (strided, last dim contiguous)
  };
  const std::vector<Case> cases = {{2, 3, 17, 64, 16, 0, false},   {1, 2, 1000, 128, 128, 0, false},
                                   {2, 2, 9, 6, 4, 30000, false},  {2, 4, 33, 64, 32, 5, true},
                                   {1, 12, 1, 64, 64, 4095, true}, {1, 1, 5, 8, 0, 0, false}};
  int idx = 0;
  for (const Case& c : cases) {
    Rng rng(0x0707a700u + idx++);
    const Shape full = c.fused_view ? Shape{c.B, c.T, 3, c.H, c.D} : Shape{c.B, c.H, c.T, c.D};
    Tensor x = Tensor::randn(full, rng, DType::F64);
    Tensor cot = Tensor::randn({c.B, c.H, c.T, c.D}, rng, DType::F64);
    auto heads = [&](const Tensor& t) {
      return c.fused_view ? t.slice(2, 1, 2).reshape({c.B, c.T, c.H, c.D}).transpose(1, 2) : t;
    };
    for (DType dt : {DType::F32, DType::BF16}) {
      const std::string tag = std::string("rotary ") + dtype_name(dt) + " B" + std::to_string(c.B) + " H" +
                              std::to_string(c.H) + " T" + std::to_string(c.T) + " D" + std::to_string(c.D) + " R" +
                              std::to_string(c.R) + " offset " + std::to_string(c.offset) +
                              (c.fused_view ? " (fused QKV view)" : "");
      SCOPED_TRACE(tag);
      Tensor xr = x.to(dt).to(DType::F64).set_requires_grad();
      Tensor xd = x.to(dt).to(Device::cuda(0)).set_requires_grad();
      Tensor cr = cot.to(dt).to(DType::F64);
      Tensor ref = nn::rotary(heads(xr), c.R, 10000.0, c.offset);
      Tensor got = nn::rotary(heads(xd), c.R, 10000.0, c.offset);
      ASSERT_EQ(got.shape(), ref.shape());
      EXPECT_TRUE(got.is_contiguous());
      ref.backward(cr);
      got.backward(cr.to(dt).to(Device::cuda(0)));
      expect_close(tag + " forward", got, ref, dt);
      expect_close(tag + " grad x", xd.grad(), xr.grad(), dt);
    }
  }
}
