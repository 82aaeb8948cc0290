// Tensors (src/tensor/): creation, dtypes and bf16 rounding, views sharing storage, contiguous
// copies, slicing, copy_ into views, device/dtype errors, the Rng's determinism.
#include <gtest/gtest.h>

#include <cmath>

#include "backend/cuda_device.h"
#include "tensor/random.h"
#include "tensor/tensor.h"
#include "util/check.h"

using namespace sk;

TEST(Tensor, creation_and_metadata) {
  Tensor t = Tensor::zeros({2, 3, 4});
  EXPECT_EQ(t.numel(), 24);
  EXPECT_EQ(t.ndim(), 3);
  EXPECT_EQ(t.size(-1), 4);
  EXPECT_EQ(t.strides(), (Strides{12, 4, 1}));
  EXPECT_TRUE(t.is_contiguous());
  EXPECT_EQ(t.nbytes(), 96u);
  EXPECT_EQ(Tensor::full({2}, 1.5, DType::F64).to_vector(), (std::vector<double>{1.5, 1.5}));
  EXPECT_EQ(Tensor::empty({}).numel(), 1);
  EXPECT_THROW(t.size(3), Error);
}

TEST(Tensor, views_share_storage) {
  Tensor t = Tensor::from_vector({0, 1, 2, 3, 4, 5}, {2, 3});
  Tensor v = t.view({3, 2});
  Tensor tr = t.transpose(0, 1);
  EXPECT_EQ(v.data_ptr(), t.data_ptr());
  EXPECT_EQ(tr.data_ptr(), t.data_ptr());
  EXPECT_FALSE(tr.is_contiguous());
  EXPECT_EQ(tr.to_vector(), (std::vector<double>{0, 3, 1, 4, 2, 5}));
  EXPECT_THROW(tr.view({6}), Error);
  EXPECT_EQ(tr.reshape({6}).to_vector(), (std::vector<double>{0, 3, 1, 4, 2, 5}));
  t.data<float>()[1] = 42;
  EXPECT_EQ(v.to_vector()[1], 42);
  EXPECT_EQ(t.view({-1, 2}).shape(), (Shape{3, 2}));
  EXPECT_THROW(t.view({4, -1}), Error);
}

// reshape views whenever strides allow it (a slice of a fused projection split into heads, a
// transposed tensor merged back), copies otherwise, and gives the same values either way.
TEST(Tensor, reshape_views_when_strides_allow) {
  Rng rng(21);
  Tensor qkv = Tensor::randn({2, 5, 3, 4, 6}, rng, DType::F64);  // (B, T, 3, H, D)
  for (int64_t i = 0; i < 3; ++i) {
    Tensor head = qkv.slice(2, i, i + 1).reshape({2, 5, 4, 6});
    EXPECT_EQ(head.data_ptr(), qkv.slice(2, i, i + 1).data_ptr()) << "slice " << i << " was copied";
    EXPECT_FALSE(head.is_contiguous());
    EXPECT_EQ(head.to_vector(), qkv.slice(2, i, i + 1).contiguous().view({2, 5, 4, 6}).to_vector());
  }
  // (B, H, T, D) view of a (B, T, H, D) buffer, transposed back and merged: a view.
  Tensor bthd = Tensor::randn({2, 5, 4, 6}, rng, DType::F64);
  Tensor merged = bthd.transpose(1, 2).transpose(1, 2).reshape({2, 5, 24});
  EXPECT_EQ(merged.data_ptr(), bthd.data_ptr());
  // Splitting a strided dim and adding size-1 dims: views; merging across a transpose: a copy.
  Tensor tr = bthd.transpose(1, 2);  // (2, 4, 5, 6)
  Tensor split = tr.reshape({2, 2, 2, 5, 1, 6});
  EXPECT_EQ(split.data_ptr(), tr.data_ptr());
  EXPECT_EQ(split.to_vector(), tr.contiguous().view({2, 2, 2, 5, 1, 6}).to_vector());
  Tensor copied = tr.reshape({2, 4, 30});
  EXPECT_NE(copied.data_ptr(), tr.data_ptr());
  EXPECT_TRUE(copied.is_contiguous());
  EXPECT_EQ(copied.to_vector(), tr.contiguous().view({2, 4, 30}).to_vector());
  EXPECT_EQ(tr.reshape({-1, 6}).shape(), (Shape{40, 6}));
  EXPECT_THROW(tr.reshape({7, -1}), Error);
  EXPECT_THROW(tr.reshape({2, 4, 31}), Error);
}

TEST(Tensor, slice_and_copy_into_view) {
  Tensor t = Tensor::from_vector({0, 1, 2, 3, 4, 5, 6, 7, 8}, {3, 3}, DType::F64);
  Tensor col = t.slice(1, 1, 2);
  EXPECT_EQ(col.to_vector(), (std::vector<double>{1, 4, 7}));
  col.copy_(Tensor::from_vector({-1, -2, -3}, {3, 1}));  // f32 source into an f64 strided view
  EXPECT_EQ(t.to_vector(), (std::vector<double>{0, -1, 2, 3, -2, 5, 6, -3, 8}));
  EXPECT_THROW(t.slice(0, 2, 4), Error);
  EXPECT_THROW(col.copy_(Tensor::zeros({2})), Error);
}

TEST(Tensor, dtype_conversions_round_like_the_gpu) {
  EXPECT_EQ(round_to_bf16(1.0f), 1.0f);
  EXPECT_EQ(round_to_bf16(1.00390625f), 1.0f);        // halfway: ties to even
  EXPECT_EQ(round_to_bf16(1.01171875f), 1.015625f);   // halfway: ties to even (up)
  EXPECT_TRUE(std::isnan(round_to_bf16(NAN)));
  Tensor x = Tensor::from_vector({1.1, -2.7, 3e5}, {3});
  std::vector<double> b = x.to(DType::BF16).to_vector();
  for (int i = 0; i < 3; ++i) EXPECT_EQ(b[i], round_to_bf16(static_cast<float>(x.to_vector()[i])));
  Tensor ids = Tensor::from_ints({1, 70000, -3}, {3}, DType::I64);
  EXPECT_EQ(ids.to(DType::I32).to_vector(), (std::vector<double>{1, 70000, -3}));
  EXPECT_EQ(Tensor::from_ints({65535}, {1}, DType::U16).to_vector()[0], 65535);
}

TEST(Tensor, rng_is_reproducible) {
  Rng a(99), b(99), c(100);
  Tensor x = Tensor::randn({100}, a), y = Tensor::randn({100}, b), z = Tensor::randn({100}, c);
  EXPECT_EQ(x.to_vector(), y.to_vector());
  EXPECT_NE(x.to_vector(), z.to_vector());
  std::vector<double> v = Tensor::randn({20000}, a, DType::F64).to_vector();
  double m = 0, s = 0;
  for (double e : v) m += e;
  m /= v.size();
  for (double e : v) s += (e - m) * (e - m);
  EXPECT_NEAR(m, 0, 0.05);
  EXPECT_NEAR(s / v.size(), 1, 0.05);
  Tensor r = Tensor::randint({1000}, a, 7);
  for (double e : r.to_vector()) EXPECT_TRUE(e >= 0 && e < 7);
}

TEST(BadInput, device_mismatch_and_missing_cuda) {
  if (cuda::is_available()) GTEST_SKIP() << "a CUDA device is present: the no-device error path is not reachable";
  EXPECT_THROW(Tensor::zeros({2}, DType::F32, Device::cuda(0)), Error);
  EXPECT_THROW(parse_device("gpu"), Error);
  EXPECT_EQ(parse_device("cuda:1").index, 1);
}
