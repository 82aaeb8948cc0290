// Golden test of the model (src/model/gpt.cpp) against PyTorch + transformers: a tiny GPT-2 and
// two tiny GPT-NeoX models (parallel residual with partial rotary; sequential with full rotary),
// fixtures made by scripts/golden/make_gpt_golden.py on the GPU machine. fp32 on the CPU:
// logits, loss and every parameter gradient within 1e-5 relative (L2, per tensor), then 3 AdamW
// steps whose losses match within 1e-5 relative. Also a gradcheck of the whole model in fp64.
// bf16 on CUDA (GPU only; skipped without a device), the same fixtures and steps (AdamW with fp32
// masters): logits 3e-2, loss 1e-2, gradients 1e-1 relative L2, losses after steps 2e-2: every
// activation and gradient is stored in bf16 (2^-8 relative each) through the layers and back; a
// wrong kernel or layout gives O(1). These fixtures have head dim 16, so attention takes the
// attention core's fallback; the fused kernels are covered by tests/model/test_gpt_cuda.cpp.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "backend/cuda_device.h"
#include "model/gpt.h"
#include "ops/ops.h"
#include "optim/adamw.h"
#include "testing/gradcheck.h"
#include "testing/parity.h"

using namespace sk;

namespace {

struct Precision {
  DType dtype = DType::F32;
  Device device = Device::cpu();
  double logits = 1e-5, loss = 1e-5, grads = 1e-5, step_losses = 1e-5;
};
// fp32 arithmetic against fp32 PyTorch: errors ~1e-7..1e-6.
const Precision kCpuF32{};
const Precision kCudaBf16{DType::BF16, Device::cuda(0), 3e-2, 1e-2, 1e-1, 2e-2};

std::vector<double> host_values(const Tensor& t) { return t.to(Device::cpu()).to(DType::F64).to_vector(); }

double rel_l2(const std::vector<double>& a, const std::vector<double>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num += (a[i] - b[i]) * (a[i] - b[i]);
    den += b[i] * b[i];
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

void run_golden(const std::string& name, const Precision& pr = kCpuF32) {
  const auto path = std::filesystem::path(SPARSEK_SOURCE_DIR) / "tests/model/fixtures" / (name + ".json");
  if (!std::filesystem::exists(path)) GTEST_SKIP() << "fixture " << path << " not generated yet (scripts/golden/make_gpt_golden.py)";
  nlohmann::json j = nlohmann::json::parse(std::ifstream(path));
  config::ModelConfig mc;
  config::AttentionConfig ac;
  const auto& m = j["model"];
  mc.n_layer = m["n_layer"];
  mc.n_head = m["n_head"];
  mc.n_embd = m["n_embd"];
  mc.vocab_size = m["vocab_size"];
  mc.pad_vocab_multiple = m["pad_vocab_multiple"];
  mc.block_size = m["block_size"];
  mc.gelu = m["gelu"];
  mc.tied_embeddings = m["tied_embeddings"];
  mc.learned_positions = m["learned_positions"];
  mc.rotary_pct = m.value("rotary_pct", 0.0);
  mc.rotary_base = m.value("rotary_base", 10000.0);
  mc.parallel_residual = m.value("parallel_residual", false);
  Rng rng(0);
  model::Gpt gpt(mc, ac, pr.dtype, pr.device, rng);
  auto params = gpt.named_parameters();
  ASSERT_EQ(params.size(), j["params"].size());
  for (auto& [pname, t] : params) {
    ASSERT_TRUE(j["params"].contains(pname)) << "fixture has no parameter " << pname;
    const auto& p = j["params"][pname];
    Shape shape = p["shape"].get<Shape>();
    ASSERT_EQ(shape, t.shape()) << pname;
    t.copy_(Tensor::from_vector(p["data"].get<std::vector<double>>(), shape).to(pr.dtype).to(pr.device));
  }
  const int64_t B = j["B"], T = j["T"], V = j["vocab"], Vp = j["padded_vocab"];
  Tensor idx = Tensor::from_ints(j["idx"].get<std::vector<int64_t>>(), {B, T}).to(pr.device);
  Tensor targets = Tensor::from_ints(j["targets"].get<std::vector<int64_t>>(), {B, T}).to(pr.device);

  Tensor logits = gpt.forward(idx);
  ASSERT_EQ(logits.shape(), (Shape{B, T, Vp}));
  std::vector<double> lv = host_values(logits.slice(2, 0, V));
  const double logits_err = rel_l2(lv, j["logits"].get<std::vector<double>>());
  EXPECT_LT(logits_err, pr.logits) << "logits";
  Tensor loss = gpt.loss(idx, targets);
  EXPECT_NEAR(loss.item(), j["loss"].get<double>(), pr.loss * std::abs(j["loss"].get<double>()));
  double worst_grad = 0;
  loss.backward();
  for (auto& [pname, t] : params) {
    ASSERT_TRUE(t.grad().defined()) << pname << " got no gradient";
    const double e = rel_l2(host_values(t.grad()), j["grads"][pname].get<std::vector<double>>());
    worst_grad = std::max(worst_grad, e);
    EXPECT_LT(e, pr.grads) << "gradient of " << pname;
  }
  std::printf("[golden %s %s %s] logits %.2e, loss %.2e, worst gradient %.2e (relative)\n", name.c_str(),
              dtype_name(pr.dtype), pr.device.str().c_str(), logits_err,
              std::abs(loss.item() - j["loss"].get<double>()) / std::abs(j["loss"].get<double>()), worst_grad);
  // Three AdamW steps (weight decay on every parameter, as the fixture's PyTorch run).
  const auto& a = j["adamw"];
  optim::AdamW opt({.lr = a["lr"], .beta1 = a["beta1"], .beta2 = a["beta2"], .eps = a["eps"],
                    .weight_decay = a["weight_decay"]});
  for (auto& [pname, t] : params) opt.add_param(t, true);
  std::vector<double> want = j["losses_before_steps"].get<std::vector<double>>();
  for (int s = 0; s < 3; ++s) {
    opt.zero_grad();
    Tensor l = gpt.loss(idx, targets);
    EXPECT_NEAR(l.item(), want[s], pr.step_losses * std::abs(want[s])) << "loss before step " << s;
    l.backward();
    opt.step();
  }
  EXPECT_NEAR(gpt.loss(idx, targets).item(), j["loss_after_3_steps"].get<double>(),
              pr.step_losses * std::abs(j["loss_after_3_steps"].get<double>()));
}

}  // namespace

TEST(GptGolden, gpt2_tiny) { run_golden("gpt2_tiny"); }
TEST(GptGolden, neox_tiny_parallel) { run_golden("neox_tiny_parallel"); }
TEST(GptGolden, neox_tiny_sequential) { run_golden("neox_tiny_sequential"); }

TEST(CudaGptGolden, gpt2_tiny_bf16) {
  SK_REQUIRE_CUDA();
  run_golden("gpt2_tiny", kCudaBf16);
}
TEST(CudaGptGolden, neox_tiny_parallel_bf16) {
  SK_REQUIRE_CUDA();
  run_golden("neox_tiny_parallel", kCudaBf16);
}
TEST(CudaGptGolden, neox_tiny_sequential_bf16) {
  SK_REQUIRE_CUDA();
  run_golden("neox_tiny_sequential", kCudaBf16);
}

TEST(Gradcheck, gpt_model_fp64) {
  // The whole model in fp64: loss w.r.t. a few parameters (NeoX options on, so rotary, parallel
  // residual and the untied head are all in the graph).
  config::ModelConfig mc;
  mc.n_layer = 1;
  mc.n_head = 2;
  mc.n_embd = 8;
  mc.vocab_size = 11;
  mc.pad_vocab_multiple = 4;
  mc.block_size = 8;
  mc.learned_positions = false;
  mc.rotary_pct = 0.5;
  mc.parallel_residual = true;
  mc.tied_embeddings = false;
  mc.gelu = "erf";
  config::AttentionConfig ac;
  Rng rng(5);
  model::Gpt gpt(mc, ac, DType::F64, Device::cpu(), rng);
  Tensor idx = Tensor::from_ints({1, 4, 7, 2, 9, 0}, {1, 6});
  Tensor targets = Tensor::from_ints({4, 7, 2, 9, 0, 3}, {1, 6});
  std::vector<Tensor> ps;
  for (auto& [n, t] : gpt.named_parameters())
    if (n == "h.0.qkv_w" || n == "h.0.fc_b" || n == "lm_head" || n == "h.0.ln1_w") ps.push_back(t);
  sk::testing::GradcheckOptions o;
  o.atol = 1e-6;
  o.rtol = 1e-5;
  EXPECT_GRADCHECK([&](const std::vector<Tensor>&) { return gpt.loss(idx, targets); }, ps, o);
}
