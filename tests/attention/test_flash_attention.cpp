// The fused CUDA attention (src/attention/flash_attention.h, kernels/attention/flash_*.cu) against
// the CPU reference (src/attention/reference.h) on fresh random inputs: full causal and sliding
// window (w = 1, w < T, w > T), T in {1, 17, 128, 1000, 4096}, head dims 64 and 128, q/k/v given
// as strided views of one fused (B, T, 3, H, D) projection (as the model passes them).
// The reference runs in f64 on the same bf16-rounded inputs. Tolerances (relative L2 error):
//   out <= 1e-2 and lse max abs error <= 1e-2 (P is rounded to bf16 before P V, as in
//   FlashAttention; outputs are bf16); dq, dk, dv <= 2e-2 (bf16 P and dS in the products).
// The packed entry point (causal_attention_packed: one (B, T, 3, H, D) gradient) is checked the
// same way in the same test, and every backward kernel (mma.sync; on compute capability 9.0 at hd
// 64 the four wgmma variants: column / key-split dQ, plain / pipelined schedule, at hd 128 the
// pipelined column split); each forward
// kernel is checked explicitly too (mma.sync; the wgmma one, the default there, on 9.0). Outputs come from a
// poisoned (NaN-filled) allocator, so an unwritten element fails the test. Skipped without a CUDA device.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <sstream>
#include <string>

#include "attention/causal_attention.h"
#include "attention/flash_attention.h"
#include "backend/cuda_device.h"
#include "tensor/random.h"
#include "testing/parity.h"
#include "testing/scoped_env.h"
#include "util/check.h"

using namespace sk;
using sk::attention::CausalWindow;

namespace {

struct Case {
  int64_t B, H, T, D, window;
};

std::string case_name(const Case& c) {
  return "B" + std::to_string(c.B) + "_H" + std::to_string(c.H) + "_T" + std::to_string(c.T) + "_D" +
         std::to_string(c.D) + "_w" + std::to_string(c.window);
}

void PrintTo(const Case& c, std::ostream* os) { *os << case_name(c); }

// (B, H, T, D) view of slot `which` of a (B, T, 3, H, D) buffer.
Tensor head_view(const Tensor& qkv, int64_t which) {
  const int64_t B = qkv.size(0), T = qkv.size(1), H = qkv.size(3), D = qkv.size(4);
  return make_view(qkv, {B, H, T, D}, {T * 3 * H * D, D, 3 * H * D, 1}, which * H * D);
}

// Fresh random bf16 inputs of case c on the GPU: the fused (B, T, 3, H, D) projection with its q, k,
// v views, and dout (B, H, T, D). The reference sees exactly the same (rounded) values.
struct CaseInputs {
  Tensor qkv, q, k, v, dout;
};
CaseInputs random_inputs(const Case& c, uint64_t seed) {
  Rng rng(seed);
  const Device gpu = Device::cuda(0);
  CaseInputs in;
  in.qkv = Tensor::randn({c.B, c.T, 3, c.H, c.D}, rng, DType::F32).to(DType::BF16).to(gpu);
  in.dout = Tensor::randn({c.B, c.H, c.T, c.D}, rng, DType::F32).to(DType::BF16).to(gpu);
  in.q = head_view(in.qkv, 0), in.k = head_view(in.qkv, 1), in.v = head_view(in.qkv, 2);
  return in;
}

Tensor f64(const Tensor& x) { return x.cpu().to(DType::F64).contiguous(); }

// dq, dk, dv of a CUDA backward against the f64 reference's: finite, relative L2 <= 2e-2 each.
void expect_grads_match(const attention::AttentionGrads& g, const attention::AttentionGrads& rg, const std::string& label) {
  const auto dq = sk::testing::compare(f64(g.dq), rg.dq), dk = sk::testing::compare(f64(g.dk), rg.dk),
             dv = sk::testing::compare(f64(g.dv), rg.dv);
  for (const sk::testing::ParityReport* r : {&dq, &dk, &dv}) EXPECT_FALSE(r->non_finite) << label << " " << r->str();
  EXPECT_LE(dq.rel_l2, 2e-2) << label << " dq " << dq.str();
  EXPECT_LE(dk.rel_l2, 2e-2) << label << " dk " << dk.str();
  EXPECT_LE(dv.rel_l2, 2e-2) << label << " dv " << dv.str();
}

std::string lse_error_map(const Tensor& got, const Tensor& ref, int64_t T);

// out and lse of a CUDA forward against the f64 reference's: finite, out relative L2 <= 1e-2, lse
// max abs error <= 1e-2 (a failure also prints where, per 16 rows: lse_error_map).
void expect_forward_matches(const attention::AttentionForward& fwd, const attention::AttentionForward& ref, int64_t T,
                            const std::string& label) {
  const auto out = sk::testing::compare(f64(fwd.out), ref.out);
  const auto lse = sk::testing::compare(f64(fwd.lse), ref.lse.to(DType::F64));
  for (const sk::testing::ParityReport* r : {&out, &lse}) EXPECT_FALSE(r->non_finite) << label << " " << r->str();
  EXPECT_LE(out.rel_l2, 1e-2) << label << " out " << out.str();
  EXPECT_LE(lse.max_abs, 1e-2) << label << " lse " << lse.str() << "\n" << lse_error_map(fwd.lse.cpu(), ref.lse, T);
}

class FlashAttention : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override { cuda::set_poison_on_alloc(true); }
  void TearDown() override { cuda::set_poison_on_alloc(false); }
};

TEST_P(FlashAttention, MatchesCpuReference) {
  SK_REQUIRE_CUDA();
  const Case c = GetParam();
  const auto [qkv, q, k, v, dout] = random_inputs(c, 1000 + c.T * 7 + c.D + c.window);
  const CausalWindow mask{c.window};

  attention::AttentionForward fwd = attention::flash_attention_forward(q, k, v, mask);
  attention::AttentionGrads grads = attention::flash_attention_backward(dout, q, k, v, fwd, mask);

  Tensor rq = f64(q), rk = f64(k), rv = f64(v), rdout = f64(dout);
  attention::AttentionForward ref = attention::attention_reference_forward(rq, rk, rv, mask);
  attention::AttentionGrads rg = attention::attention_reference_backward(rdout, rq, rk, rv, ref, mask);

  expect_forward_matches(fwd, ref, c.T, "default");
  expect_grads_match(grads, rg, "default");

  // The packed path (causal_attention_packed, as the model calls it): one autograd node whose
  // backward writes dq, dk, dv interleaved into one (B, T, 3, H, D) gradient. Same tolerances.
  Tensor qkv_leaf = qkv.detach().set_requires_grad();
  Tensor packed_out = attention::causal_attention_packed(qkv_leaf, mask);
  packed_out.backward(dout);
  const Tensor dqkv = qkv_leaf.grad();
  ASSERT_TRUE(dqkv.defined());
  ASSERT_EQ(dqkv.shape(), qkv.shape());
  const auto p_out = sk::testing::compare(f64(packed_out), ref.out);
  const auto p_dq = sk::testing::compare(f64(head_view(dqkv, 0)), rg.dq);
  const auto p_dk = sk::testing::compare(f64(head_view(dqkv, 1)), rg.dk);
  const auto p_dv = sk::testing::compare(f64(head_view(dqkv, 2)), rg.dv);
  for (const sk::testing::ParityReport* r : {&p_out, &p_dq, &p_dk, &p_dv}) EXPECT_FALSE(r->non_finite) << r->str();
  EXPECT_LE(p_out.rel_l2, 1e-2) << "packed out " << p_out.str();
  EXPECT_LE(p_dq.rel_l2, 2e-2) << "packed dq " << p_dq.str();
  EXPECT_LE(p_dk.rel_l2, 2e-2) << "packed dk " << p_dk.str();
  EXPECT_LE(p_dv.rel_l2, 2e-2) << "packed dv " << p_dv.str();

  // Every main kernel of the backward, chosen through SPARSEK_FLASH_BWD (the default above is
  // wgmma_pipelined on compute capability 9.0): mma.sync on any device; on 9.0 at hd 64 the two
  // wgmma dQ partitions with the plain and the pipelined schedule, at hd 128 the pipelined column
  // split, the only one there (kernels/attention/flash_backward_sm90.cu). Same inputs, same tolerances.
  std::vector<const char*> kernels = {"mma"};
  if (cuda::compute_capability(0) == 90) {
    if (c.D == 64)
      kernels.insert(kernels.end(), {"wgmma", "wgmma_keysplit", "wgmma_pipelined", "wgmma_pipelined_keysplit"});
    else
      kernels.push_back("wgmma_pipelined");
  }
  for (const char* kernel : kernels) {
    sk::testing::ScopedEnv env("SPARSEK_FLASH_BWD", kernel);
    expect_grads_match(attention::flash_attention_backward(dout, q, k, v, fwd, mask), rg, kernel);
  }
}

// The kernels with exp2f in the softmax (SPARSEK_FLASH_EXP2=accurate; the default is one
// ex2.approx.ftz instruction, tested by the cases above) against the CPU reference on every parity
// case: the device's default kernels (wgmma on compute capability 9.0, else mma.sync),
// tolerances as above; a test of its own so that a failure of the opt-out path does not read as
// one of the default's.
TEST_P(FlashAttention, AccurateExp2MatchesCpuReference) {
  SK_REQUIRE_CUDA();
  const Case c = GetParam();
  const auto [qkv, q, k, v, dout] = random_inputs(c, 1000 + c.T * 7 + c.D + c.window);
  const CausalWindow mask{c.window};
  sk::testing::ScopedEnv env("SPARSEK_FLASH_EXP2", "accurate");
  attention::AttentionForward fwd = attention::flash_attention_forward(q, k, v, mask);
  attention::AttentionGrads g = attention::flash_attention_backward(dout, q, k, v, fwd, mask);
  attention::AttentionForward ref = attention::attention_reference_forward(f64(q), f64(k), f64(v), mask);
  attention::AttentionGrads rg = attention::attention_reference_backward(f64(dout), f64(q), f64(k), f64(v), ref, mask);
  expect_forward_matches(fwd, ref, c.T, "accurate exp2");
  expect_grads_match(g, rg, "accurate exp2");
}

// Where a forward's LSE is wrong, by 16-row group (one warp's rows in both forward kernels) of the
// first (batch, head): a line "block B wg W: e0 e1 e2 e3" per 64 rows gives each group's max |error|
// (128-row blocks of two 64-row warpgroups). Printed only when the LSE check fails, to localise a fault in one run.
std::string lse_error_map(const Tensor& got, const Tensor& ref, int64_t T) {
  const Tensor g = got.to(DType::F64).contiguous(), r = ref.to(DType::F64).contiguous();
  std::ostringstream os;
  os << "lse max |error| per 16 rows of (b 0, h 0):";
  for (int64_t row0 = 0; row0 < T; row0 += 16) {
    if (row0 % 64 == 0) os << "\n  block " << row0 / 128 << " wg " << (row0 / 64) % 2 << ":";
    double e = 0;
    for (int64_t i = row0; i < std::min(T, row0 + 16); ++i) e = std::max(e, std::abs(g.data<double>()[i] - r.data<double>()[i]));
    os << " " << e;
  }
  return os.str();
}

// One forward kernel chosen explicitly (SPARSEK_FLASH_FWD) against the CPU reference on case c.
// Same tolerances as the default kernel (MatchesCpuReference covers whichever is the default).
void expect_forward_kernel_matches_reference(const Case& c, const std::string& kernel) {
  const auto [qkv, q, k, v, dout] = random_inputs(c, 2000 + c.T * 7 + c.D + c.window);
  const CausalWindow mask{c.window};
  attention::AttentionForward ref = attention::attention_reference_forward(f64(q), f64(k), f64(v), mask);
  sk::testing::ScopedEnv env("SPARSEK_FLASH_FWD", kernel.c_str());
  attention::AttentionForward fwd = attention::flash_attention_forward(q, k, v, mask);
  expect_forward_matches(fwd, ref, c.T, kernel);
}

// Each forward kernel chosen explicitly: mma.sync on any device, and the wgmma one
// (kernels/attention/flash_forward_sm90.cu, hd 64 and 128) on compute capability 9.0.
TEST_P(FlashAttention, EachForwardKernelMatchesCpuReference) {
  SK_REQUIRE_CUDA();
  const Case c = GetParam();
  expect_forward_kernel_matches_reference(c, "mma");
  if (cuda::compute_capability(0) == 90) expect_forward_kernel_matches_reference(c, "wgmma");
}

// The wgmma forward's operands and products, read back from single blocks through the test-only
// dump (attention::wgmma_forward_dump): the Q tile and every visited K tile as they sit in shared
// memory equal the bf16 inputs exactly (0 past the end of the sequence), and every raw S tile
// equals Q K^T of those inputs within 1e-3 * (1 + |S|) (fp32 accumulation of 64 bf16 products).
// Blocks whose K tiles pass through all three shared-memory buffers, with and without a window.
// On failure it prints, per visited tile (and its buffer), the max S error of each 16-row warp.
TEST(FlashAttentionWgmmaForward, OperandsAndScoreTilesMatchTheInputs) {
  SK_REQUIRE_CUDA();
  if (cuda::compute_capability(0) != 90) GTEST_SKIP() << "the wgmma forward runs on compute capability 9.0 only";
  struct DumpCase {
    int64_t T, window, block;
  };
  for (const DumpCase dc : {DumpCase{256, 0, 1}, DumpCase{256, 1, 1}, DumpCase{1000, 100, 5}, DumpCase{1000, 0, 7}}) {
    SCOPED_TRACE("T " + std::to_string(dc.T) + " window " + std::to_string(dc.window) + " block " + std::to_string(dc.block));
    Rng rng(3000 + dc.T + dc.window);
    Tensor qkv = Tensor::randn({1, dc.T, 3, 2, 64}, rng, DType::F32).to(DType::BF16).to(Device::cuda(0));
    const attention::WgmmaForwardDump d =
        attention::wgmma_forward_dump(head_view(qkv, 0), head_view(qkv, 1), head_view(qkv, 2), CausalWindow{dc.window}, dc.block);
    // Head 0 of batch 0: rows 0..T-1 of (T, 64).
    const Tensor q = head_view(qkv, 0).cpu().to(DType::F64).contiguous(), k = head_view(qkv, 1).cpu().to(DType::F64).contiguous();
    const double* qd = q.data<double>();
    const double* kd = k.data<double>();
    const Tensor qt = d.q_tile.to(DType::F64), kt = d.k_tiles.to(DType::F64), st = d.s_tiles.to(DType::F64);
    const int64_t m0 = dc.block * 128, tiles = kt.size(0);
    auto q_at = [&](int64_t row, int64_t c) { return row < dc.T ? qd[row * 64 + c] : 0.0; };
    auto k_at = [&](int64_t key, int64_t c) { return key < dc.T ? kd[key * 64 + c] : 0.0; };
    double q_err = 0;
    for (int64_t r = 0; r < 128; ++r)
      for (int64_t c = 0; c < 64; ++c) q_err = std::max(q_err, std::abs(qt.data<double>()[r * 64 + c] - q_at(m0 + r, c)));
    EXPECT_EQ(q_err, 0.0) << "the Q tile in shared memory differs from the input";
    std::ostringstream map;
    bool s_ok = true;
    for (int64_t i = 0; i < tiles; ++i) {
      const int64_t n0 = (d.first_key_tile + i) * 64;
      double k_err = 0;
      for (int64_t r = 0; r < 64; ++r)
        for (int64_t c = 0; c < 64; ++c)
          k_err = std::max(k_err, std::abs(kt.data<double>()[(i * 64 + r) * 64 + c] - k_at(n0 + r, c)));
      EXPECT_EQ(k_err, 0.0) << "K tile " << d.first_key_tile + i << " (buffer " << i % 3 << ") in shared memory differs from the input";
      map << "\n  tile " << d.first_key_tile + i << " (buffer " << i % 3 << ", K max err " << k_err << "): S max err per warp:";
      for (int64_t w = 0; w < 8; ++w) {
        double e = 0;
        for (int64_t r = w * 16; r < w * 16 + 16; ++r)
          for (int64_t j = 0; j < 64; ++j) {
            double ref = 0;
            for (int64_t c = 0; c < 64; ++c) ref += q_at(m0 + r, c) * k_at(n0 + j, c);
            const double got = st.data<double>()[(i * 128 + r) * 64 + j];
            const double err = std::abs(got - ref);
            e = std::max(e, err);
            if (!(err <= 1e-3 * (1 + std::abs(ref)))) s_ok = false;
          }
        map << " " << e;
      }
    }
    EXPECT_TRUE(s_ok) << "raw S tiles differ from Q K^T; per tile (buffer) and warp (16 rows; warps 4-7 = warpgroup 1):" << map.str();
  }
}

// One head of 8 positions on the GPU: q, k, v as views of one (1, 8, 3, 1, D) buffer, and dout.
struct TinyInputs {
  Tensor q, k, v, dout;
};
TinyInputs tiny_inputs(int64_t D, uint64_t seed) {
  Rng rng(seed);
  const Device gpu = Device::cuda(0);
  Tensor qkv = Tensor::randn({1, 8, 3, 1, D}, rng, DType::F32).to(DType::BF16).to(gpu);
  Tensor dout = Tensor::randn({1, 1, 8, D}, rng, DType::F32).to(DType::BF16).to(gpu);
  return {head_view(qkv, 0), head_view(qkv, 1), head_view(qkv, 2), dout};
}

// An unknown SPARSEK_FLASH_BWD value is refused with a message naming the variable and the choices.
TEST(FlashAttentionArgs, RejectsAnUnknownBackwardKernel) {
  SK_REQUIRE_CUDA();
  const auto [q, k, v, dout] = tiny_inputs(64, 5);
  attention::AttentionForward fwd = attention::flash_attention_forward(q, k, v, CausalWindow{0});
  sk::testing::ScopedEnv env("SPARSEK_FLASH_BWD", "fastest");
  try {
    attention::flash_attention_backward(dout, q, k, v, fwd, CausalWindow{0});
    FAIL() << "expected an error";
  } catch (const sk::Error& e) {
    EXPECT_NE(std::string(e.what()).find("SPARSEK_FLASH_BWD must be auto, mma, wgmma, wgmma_keysplit"),
              std::string::npos) << e.what();
  }
}

// Asking for a wgmma kernel where it cannot run (at head dim 128, the backward's variants other than
// wgmma_pipelined; any wgmma kernel on a GPU other than compute capability 9.0) is an error
// naming the variable and the head dim (or the device), not a bare "bad argument" from the launcher.
TEST(FlashAttentionArgs, RejectsWgmmaWhereItCannotRun) {
  SK_REQUIRE_CUDA();
  const auto [q, k, v, dout] = tiny_inputs(128, 6);
  const bool hopper = cuda::compute_capability(0) == 90;
  auto expect_error = [&](const char* variable, const char* kernel, const std::function<void()>& call,
                          const std::string& hopper_text) {
    sk::testing::ScopedEnv env(variable, kernel);
    try {
      call();
      FAIL() << "expected an error for " << variable << "=" << kernel;
    } catch (const sk::Error& e) {
      const std::string text = std::string(variable) + (hopper ? hopper_text : ": the wgmma kernels need compute capability 9.0");
      EXPECT_NE(std::string(e.what()).find(text), std::string::npos) << e.what();
      if (hopper) EXPECT_NE(std::string(e.what()).find("got head dim 128"), std::string::npos) << e.what();
    }
  };
  if (!hopper)
    expect_error("SPARSEK_FLASH_FWD", "wgmma", [&] { attention::flash_attention_forward(q, k, v, CausalWindow{0}); }, "");
  attention::AttentionForward fwd = attention::flash_attention_forward(q, k, v, CausalWindow{0});
  for (const char* kernel : {"wgmma", "wgmma_keysplit", "wgmma_pipelined_keysplit"})
    expect_error("SPARSEK_FLASH_BWD", kernel,
                 [&] { attention::flash_attention_backward(dout, q, k, v, fwd, CausalWindow{0}); },
                 ": this wgmma kernel needs head dim 64 (at 128 only wgmma_pipelined runs)");
}

std::vector<Case> cases() {
  std::vector<Case> v;
  for (int64_t D : {64, 128}) {
    for (int64_t T : {1, 17, 128, 1000}) {
      for (int64_t w : {int64_t(0), int64_t(1), int64_t(100), T + 5}) v.push_back({2, 3, T, D, w});
    }
    v.push_back({1, 1, 4096, D, 0});
    v.push_back({1, 1, 4096, D, 1024});
  }
  return v;
}

INSTANTIATE_TEST_SUITE_P(Kinds, FlashAttention, ::testing::ValuesIn(cases()),
                         [](const ::testing::TestParamInfo<Case>& i) { return case_name(i.param); });

TEST(FlashAttentionArgs, RejectsUnsupportedInputs) {
  SK_REQUIRE_CUDA();
  Rng rng(3);
  const Device gpu = Device::cuda(0);
  Tensor q32 = Tensor::randn({1, 2, 8, 64}, rng, DType::F32, gpu);
  EXPECT_THROW(attention::flash_attention_forward(q32, q32, q32, CausalWindow{0}), sk::Error);  // f32
  Tensor q48 = Tensor::randn({1, 2, 8, 48}, rng, DType::F32).to(DType::BF16).to(gpu);
  EXPECT_THROW(attention::flash_attention_forward(q48, q48, q48, CausalWindow{0}), sk::Error);  // D = 48
  Tensor q = Tensor::randn({1, 2, 8, 64}, rng, DType::F32).to(DType::BF16).to(gpu);
  Tensor k9 = Tensor::randn({1, 2, 9, 64}, rng, DType::F32).to(DType::BF16).to(gpu);
  EXPECT_THROW(attention::flash_attention_forward(q, k9, k9, CausalWindow{0}), sk::Error);  // T mismatch
  EXPECT_FALSE(attention::flash_attention_supported(q.cpu()));
}

}  // namespace
