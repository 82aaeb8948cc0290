// Bad input on the CUDA backend gets a clear sk::Error (GPU only; skipped without a device):
// CPU and CUDA tensors mixed in one op, f64 handed to a CUDA kernel, a bad embedding index and a
// bad cross-entropy target read back from the device flag.
#include <gtest/gtest.h>

#include "backend/cuda_device.h"
#include "backend/deferred_checks.h"
#include "ops/ops.h"
#include "testing/parity.h"
#include "util/check.h"

using namespace sk;

namespace {
void expect_error_mentions(const std::function<void()>& f, const std::string& needle) {
  try {
    f();
    FAIL() << "expected sk::Error mentioning '" << needle << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}
}  // namespace

TEST(CudaBadInput, device_mismatch_names_both_devices) {
  SK_REQUIRE_CUDA();
  Tensor a = Tensor::ones({4});
  Tensor b = Tensor::ones({4}, DType::F32, Device::cuda(0));
  expect_error_mentions([&] { ops::add(a, b); }, "cuda:0");
  expect_error_mentions([&] { ops::matmul(a.view({2, 2}), b.view({2, 2})); }, "cpu");
}

TEST(CudaBadInput, f64_on_cuda_is_refused) {
  SK_REQUIRE_CUDA();
  Tensor x = Tensor::ones({4}, DType::F64, Device::cuda(0));
  expect_error_mentions([&] { ops::gelu(x); }, "f64");
}

TEST(CudaBadInput, out_of_range_index_and_target) {
  SK_REQUIRE_CUDA();
  Tensor table = Tensor::ones({10, 8}, DType::BF16, Device::cuda(0));
  // Reported at the next host sync (deferred device flag), not at the launch.
  expect_error_mentions([&] {
    ops::embedding(table, Tensor::from_ints({1, 10}, {2}, DType::I32, Device::cuda(0)));
    cuda::synchronize();
  }, "index 10");
  EXPECT_EQ(cuda::pending_error_checks(), 0u);
  Tensor logits = Tensor::ones({2, 16}, DType::BF16, Device::cuda(0));
  expect_error_mentions([&] {
    ops::cross_entropy(logits, Tensor::from_ints({3, 99}, {2}, DType::I32, Device::cuda(0))).item();
  }, "target 99");
  // Valid input raises nothing at the next sync.
  ops::cross_entropy(logits, Tensor::from_ints({3, 9}, {2}, DType::I32, Device::cuda(0))).item();
}

TEST(CudaBadInput, nonexistent_device) {
  SK_REQUIRE_CUDA();
  expect_error_mentions([&] { Tensor::ones({2}, DType::F32, Device::cuda(cuda::device_count())); }, "does not exist");
}
