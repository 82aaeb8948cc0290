// The attention decode step (src/attention/decode.cpp, kernels/attention/decode.cu): the CPU
// reference against the whole-sequence reference (every position, windows 1 / 3 / > T, rings
// that wrap), bad inputs, and CUDA-vs-CPU parity on fresh random inputs (GPU only).
//
// CUDA tolerances (the reference runs in f64 on the values the GPU sees, rounded to its dtype):
//   f32:  rel_l2 <= 1e-5 and max_abs <= 1e-5 * max|ref|: fp32 dot products of <= 256 terms and
//         softmax sums of <= 4096 terms stay around 1e-6.
//   bf16: rel_l2 <= 1e-2 and max_abs <= 2e-2 * max|ref|: the kernel accumulates in fp32 and rounds
//         the output once to bf16 (<= 2^-8 = 3.9e-3 relative).
#include <gtest/gtest.h>

#include <cmath>
#include <iostream>

#include "attention/decode.h"
#include "attention/reference.h"
#include "backend/cuda_device.h"
#include "testing/parity.h"
#include "util/check.h"

using namespace sk;
using sk::attention::CausalWindow;

namespace {

// Rings (B, H, S, D) holding positions max(0, p - S + 1) .. p of k, v (B, H, T, D).
struct Ring {
  Tensor k, v;
};
Ring ring_at(const Tensor& k, const Tensor& v, int64_t p, int64_t S) {
  Ring r{Tensor::zeros({k.size(0), k.size(1), S, k.size(3)}, k.dtype()),
         Tensor::zeros({k.size(0), k.size(1), S, k.size(3)}, k.dtype())};
  for (int64_t t = std::max<int64_t>(0, p - S + 1); t <= p; ++t) {
    r.k.slice(2, t % S, t % S + 1).copy_(k.slice(2, t, t + 1));
    r.v.slice(2, t % S, t % S + 1).copy_(v.slice(2, t, t + 1));
  }
  return r;
}

Tensor query_at(const Tensor& q, int64_t p) { return q.slice(2, p, p + 1).reshape({q.size(0), q.size(1), q.size(3)}); }

}  // namespace

TEST(AttentionDecode, reference_matches_whole_sequence_reference) {
  Rng rng(21);
  const int64_t B = 2, H = 3, T = 11, D = 5;
  Tensor q = Tensor::randn({B, H, T, D}, rng, DType::F64), k = Tensor::randn({B, H, T, D}, rng, DType::F64),
         v = Tensor::randn({B, H, T, D}, rng, DType::F64);
  for (int64_t w : {0, 1, 3, 20}) {
    const Tensor full = attention::attention_reference_forward(q, k, v, CausalWindow{w}).out;
    // Ring sizes: exactly the window, larger than needed (a full-length ring with a window mask).
    std::vector<int64_t> sizes = {T, T + 4};
    if (w > 0 && w < T) sizes.push_back(w);
    for (int64_t S : sizes)
      for (int64_t p = 0; p < T; ++p) {
        Ring r = ring_at(k, v, p, S);
        std::vector<double> got = attention::attention_decode_reference(query_at(q, p), r.k, r.v, p, w).to_vector();
        std::vector<double> want = query_at(full, p).contiguous().to_vector();
        for (size_t i = 0; i < got.size(); ++i)
          ASSERT_NEAR(got[i], want[i], 1e-13) << "window " << w << " ring " << S << " position " << p;
      }
  }
}

TEST(BadInput, attention_decode) {
  Tensor q = Tensor::zeros({1, 2, 4}), k = Tensor::zeros({1, 2, 3, 4});
  EXPECT_THROW(attention::attention_decode(q, k, k, 3, 0), Error);   // full attention needs 4 slots
  EXPECT_THROW(attention::attention_decode(q, k, k, 5, 4), Error);   // window 4 > 3 slots
  EXPECT_NO_THROW(attention::attention_decode(q, k, k, 5, 3));
  EXPECT_THROW(attention::attention_decode(q, Tensor::zeros({1, 2, 3, 5}), Tensor::zeros({1, 2, 3, 5}), 0, 0), Error);
  EXPECT_THROW(attention::attention_decode(q, k, k, -1, 0), Error);
}

TEST(CudaParity, attention_decode) {
  SK_REQUIRE_CUDA();
  sk::testing::PoisonAllocsGuard poison;  // unwritten outputs show up as NaN
  struct Case {
    int64_t B, H, S, D, position, window;
  };
  // Head dims around each lane-count instantiation (<= 32, 64, 128, 256) and odd ones; rings that
  // wrapped; windows 1, inside the ring, and a full-length ring with a window mask.
  const std::vector<Case> cases = {{2, 3, 17, 64, 16, 0},  {1, 12, 1000, 64, 999, 0}, {2, 2, 40, 128, 123, 40},
                                   {1, 4, 4096, 128, 4095, 0}, {3, 2, 9, 16, 30, 1},   {1, 1, 1, 80, 0, 0},
                                   {2, 2, 100, 256, 99, 7},  {2, 3, 33, 5, 50, 33},    {1, 2, 64, 64, 1000, 64}};
  int idx = 0;
  for (const Case& c : cases) {
    Rng rng(0xdec0de00u + idx++);
    Tensor q = Tensor::randn({c.B, c.H, c.D}, rng, DType::F64), k = Tensor::randn({c.B, c.H, c.S, c.D}, rng, DType::F64),
           v = Tensor::randn({c.B, c.H, c.S, c.D}, rng, DType::F64);
    for (DType dt : {DType::F32, DType::BF16}) {
      const std::string tag = std::string("attention_decode ") + dtype_name(dt) + " B" + std::to_string(c.B) + " H" +
                              std::to_string(c.H) + " S" + std::to_string(c.S) + " D" + std::to_string(c.D) + " pos" +
                              std::to_string(c.position) + " w" + std::to_string(c.window);
      SCOPED_TRACE(tag);
      // The values the GPU sees, as f64 for the reference.
      auto rounded = [&](const Tensor& t) { return t.to(dt).to(DType::F64); };
      Tensor qr = rounded(q), kr = rounded(k), vr = rounded(v);
      Tensor ref = attention::attention_decode_reference(qr, kr, vr, c.position, c.window);
      const Device dev = Device::cuda(0);
      Tensor got = attention::attention_decode(qr.to(dt).to(dev), kr.to(dt).to(dev), vr.to(dt).to(dev), c.position,
                                               c.window);
      ASSERT_TRUE(got.is_cuda());
      const sk::testing::ParityReport r = sk::testing::compare(got.to(Device::cpu()).to(DType::F64), ref);
      double max_ref = 0;
      for (double x : ref.to_vector()) max_ref = std::max(max_ref, std::abs(x));
      std::cout << "[parity] " << tag << ": " << r.str() << std::endl;
      const double rel_tol = dt == DType::F32 ? 1e-5 : 1e-2, max_tol = dt == DType::F32 ? 1e-5 : 2e-2;
      EXPECT_FALSE(r.non_finite) << r.str();
      EXPECT_LE(r.rel_l2, rel_tol) << r.str();
      EXPECT_LE(r.max_abs, max_tol * max_ref) << r.str();
    }
  }
}
