// The whole model on CUDA (GPU only; skipped without a device): a tiny GPT-2 and a tiny NeoX
// (rotary, parallel residual, untied head) with head dims 64 (the fused attention kernels once
// flash_attention_supported says so) and 16 (the attention core's CPU fallback), kinds full and
// sliding_window, in f32 and bf16: logits, loss and every parameter gradient against the f64 CPU
// model with the same (rounded) weights.
// Also T 1024 (training_length_sequences_match_cpu).
// Tolerances (relative L2 per tensor; the loss relative):
//   f32:  1e-4 for logits, loss and gradients: fp32 kernels and cuBLASLt fp32 (no TF32) against f64.
//   bf16: logits 3e-2, loss 1e-2, gradients 1e-1: every activation and gradient is stored in bf16
//         (2^-8 relative each) through two layers and back; a wrong kernel or layout gives O(1).
//   Estimates from the per-op bf16 bounds of tests/cuda/test_cuda_parity.cpp; the "[parity]" lines
//   print the measured errors.
#include <gtest/gtest.h>

#include <iostream>
#include <map>

#include "attention/flash_attention.h"
#include "backend/cuda_device.h"
#include "model/tiny_models.h"
#include "ops/ops.h"
#include "testing/parity.h"

using namespace sk;

namespace {

// One model on the GPU in dtype dt against the f64 CPU model with the same (rounded) weights, on
// B x T random tokens: logits, loss and every parameter gradient (relative L2, tolerances above).
void check_model_on_cuda(const std::string& label, const config::ModelConfig& mc, const std::string& kind,
                         int64_t window, DType dt, int64_t B, int64_t T) {
  SCOPED_TRACE(label);
  const Device dev = Device::cuda(0);
  Rng rng(21);
  model::Gpt ref(mc, sk::testing::attention_kind(kind, window), DType::F64, Device::cpu(), rng);
  sk::testing::randomize(ref, 22);
  model::Gpt gpu(mc, sk::testing::attention_kind(kind, window), dt, dev, rng);
  sk::testing::copy_parameters(ref, gpu);
  sk::testing::copy_parameters(gpu, ref);  // the reference sees the rounded weights
  Rng trng(23);
  Tensor idx = Tensor::randint({B, T}, trng, mc.vocab_size), targets = Tensor::randint({B, T}, trng, mc.vocab_size);
  std::cout << "[model] " << label << ": fused attention kernels "
            << (attention::flash_attention_supported(Tensor::empty({1, 1, 1, mc.n_embd / mc.n_head}, dt, dev))
                    ? "on"
                    : "off (CPU fallback for the core)")
            << std::endl;
  const double logits_tol = dt == DType::F32 ? 1e-4 : 3e-2, loss_tol = dt == DType::F32 ? 1e-4 : 1e-2,
               grad_tol = dt == DType::F32 ? 1e-4 : 1e-1;
  const sk::testing::ParityReport lr =
      sk::testing::compare(gpu.forward(idx.to(dev)).to(Device::cpu()).to(DType::F64), ref.forward(idx));
  std::cout << "[parity] " << label << " logits: " << lr.str() << std::endl;
  EXPECT_FALSE(lr.non_finite);
  EXPECT_LE(lr.rel_l2, logits_tol) << "logits: " << lr.str();
  Tensor loss_ref = ref.loss(idx, targets), loss_gpu = gpu.loss(idx.to(dev), targets.to(dev));
  EXPECT_TRUE(loss_gpu.is_cuda());
  EXPECT_NEAR(loss_gpu.item(), loss_ref.item(), loss_tol * std::abs(loss_ref.item())) << "loss";
  loss_ref.backward();
  loss_gpu.backward();
  auto pr = ref.named_parameters(), pg = gpu.named_parameters();
  for (size_t i = 0; i < pr.size(); ++i) {
    ASSERT_TRUE(pg[i].second.grad().defined()) << pg[i].first << " got no gradient on the GPU";
    EXPECT_TRUE(pg[i].second.grad().is_cuda()) << pg[i].first;
    const sk::testing::ParityReport r =
        sk::testing::compare(pg[i].second.grad().to(Device::cpu()).to(DType::F64), pr[i].second.grad());
    std::cout << "[parity] " << label << " grad " << pg[i].first << ": " << r.str() << std::endl;
    EXPECT_FALSE(r.non_finite) << pg[i].first;
    EXPECT_LE(r.rel_l2, grad_tol) << "gradient of " << pg[i].first << ": " << r.str();
  }
}

}  // namespace

TEST(CudaModel, forward_backward_match_cpu) {
  SK_REQUIRE_CUDA();
  struct ModelCase {
    std::string name;
    config::ModelConfig mc;
  };
  const std::vector<ModelCase> models = {{"gpt2 D64", sk::testing::tiny_gpt2(128, 2)},
                                         {"neox D64", sk::testing::tiny_neox(128, 2)},
                                         {"gpt2 D16", sk::testing::tiny_gpt2(32, 2)},
                                         {"neox D16", sk::testing::tiny_neox(32, 2)}};
  const std::vector<std::pair<std::string, int64_t>> kinds = {{"full", 0}, {"sliding_window", 3}};
  for (const ModelCase& m : models)
    for (const auto& [kind, window] : kinds)
      for (DType dt : {DType::F32, DType::BF16})
        check_model_on_cuda(m.name + " " + kind + " " + dtype_name(dt), m.mc, kind, window, dt, 2, 16);
}

// The training-length path: T 1024 (many key and query tiles per head in the fused attention
// kernels, 2048 rows through the one-pass cross-entropy over a padded vocabulary of 512 with 500
// real tokens), GPT-2 and NeoX blocks, bf16 on the fused kernels and f32 (attention on the CPU
// fallback, everything else on the GPU).
TEST(CudaModel, training_length_sequences_match_cpu) {
  SK_REQUIRE_CUDA();
  for (const bool neox : {false, true}) {
    config::ModelConfig mc = neox ? sk::testing::tiny_neox(128, 2) : sk::testing::tiny_gpt2(128, 2);
    mc.vocab_size = 500;
    mc.pad_vocab_multiple = 128;
    mc.block_size = 1024;
    for (DType dt : {DType::BF16, DType::F32})
      check_model_on_cuda(std::string(neox ? "neox" : "gpt2") + " D64 T1024 full " + dtype_name(dt), mc, "full", 0, dt,
                          2, 1024);
  }
}
