// CUDA-vs-CPU parity: every op of SK_OP_TABLE (src/ops/op_table.h) as CudaParity.<op>, plus the
// optimizer (AdamW, f32 and bf16-with-fp32-master), global gradient norm / clipping, the error
// paths of the index-taking ops, and the allocator's steady state over a training-like step.
//
// Method, per case (one op at one shape):
//   1. Draw the floating inputs as f64 CPU tensors from an sk::Rng seeded per case (the seed is in
//      the log line), never zeros.
//   2. For each GPU dtype d in {f32, bf16}: round the inputs to d on the host, so that the CPU
//      reference sees exactly the values the GPU sees. Reference: the op on the CPU in f64. GPU run:
//      the same values as d tensors on cuda:0.
//   3. Draw one random cotangent R of the output's shape (rounded through the GPU output's dtype),
//      run backward(R) on both sides, and compare the output and the gradient of every input with
//      sk::testing::compare. Every report is printed as a "[parity] ..." line.
//   The allocator fills every new device block with NaN bytes during these tests
//   (cuda::set_poison_on_alloc), so an element a kernel forgets to write shows up as non-finite.
//
// Tolerances, checked on every compared tensor and chosen by the dtype the GPU stored it in:
//   f32  rel_l2 <= 1e-5, max_abs <= 1e-5 * max|ref|. Kernels compute in fp32 (cuBLASLt with
//        CUBLAS_COMPUTE_32F, no TF32): one rounding is 6e-8, and fp32 accumulation over the
//        longest reductions here (6.3M-element sums, 8192-row dweight, K = 3072 dot products)
//        stays around 1e-6. 1e-5 leaves room for that and still catches an fp32 kernel that
//        secretly computes in bf16/tf32 (errors 1e-3).
//   bf16 rel_l2 <= 1e-2, max_abs <= 3e-2 * max|ref|. bf16 keeps 8 significant bits: one rounding
//        of a value is at most 2^-8 = 3.9e-3 of it (rms about 1.5e-3 over random data), and an op
//        that rounds twice (mean = scale(sum), softmax backward reading its bf16 output) stays
//        under 1e-2 in rel_l2; max_abs allows ~4 bf16 ulps of the largest reference value.
//   Data movement (transpose_contiguous, slice, to_dtype): exact, 0 error.
//   AdamW state and parameters, gradient norm and clip coefficient (fp32): relative 1e-5.
// Reference values equal to 0 everywhere (e.g. layernorm dx when C = 1) are compared absolutely.
// GELU (both forms) measures its errors against the input's scale instead of the output's: its
// formula x/2 (1 + erf(x/sqrt2)) cancels in fp32 for x << 0, where y ~ 1e-4 x and the kernel (like
// the CPU f32 reference) is accurate to 2^-24 |x|, i.e. to 1e-3 of y. Likewise layernorm's dx at
// C = 1 (exactly 0, computed from terms of size |R w| / sqrt(eps)). See CaseOptions.
// Measured on an H100 (issue log): f32 errors 3e-8..1.3e-6 rel_l2, bf16 7e-4..3.4e-3.
//
// Shapes: every op runs at GPT-2 124M shapes (C = 768, MLP hidden 3072, T = 1024, heads of 64,
// vocab 50257 padded to 50304) and at odd shapes (sizes 1, 17, 1000, K = 17, misaligned and
// strided views). The host side (f64 reference, conversions, comparisons) is what takes time, so
// the largest cases use fewer rows or heads than a training step (the k* constants below; the
// suite takes about a minute on an H100 host): the GPU code paths (vectorized and tail loops,
// multi-wave grids, cuBLASLt algorithms for these K and N) are the same at these counts.
//
// Without a GPU (or in a CPU-only build) every test skips via SK_REQUIRE_CUDA(), saying why.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <iomanip>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "backend/cuda_device.h"
#include "ops/ops.h"
#include "autograd/node.h"
#include "optim/adamw.h"
#include "optim/grad_clip.h"
#include "tensor/bf16.h"
#include "tensor/tensor.h"
#include "testing/parity.h"
#include "util/check.h"

namespace {

using sk::Device;
using sk::DType;
using sk::Rng;
using sk::Shape;
using sk::Tensor;
namespace ops = sk::ops;
namespace optim = sk::optim;

// ---- tolerances (see the header comment for how they were chosen) ---------------------------

struct Tol {
  double rel_l2;   // bound on ||got - ref|| / ||ref||
  double max_abs;  // bound on max |got - ref| / max |ref| (max |ref| taken as 1 when ref == 0)
};
// GPU tensors stored in f32: fp32 compute, one rounding plus fp32 accumulation (~1e-6).
constexpr Tol kF32Tol{1e-5, 1e-5};
// GPU tensors stored in bf16: one or two bf16 roundings (2^-8 = 3.9e-3 each at most).
constexpr Tol kBf16Tol{1e-2, 3e-2};
// Pure data movement: the GPU must reproduce the reference bit for bit.
constexpr Tol kExactTol{0.0, 0.0};
// AdamW parameters, masters and moments after 3 fp32 steps vs the f64 reference.
constexpr double kAdamWRelTol = 1e-5;
// Global gradient norm and clip coefficient (fp32 sum of squares) vs the f64 reference.
constexpr double kGradNormRelTol = 1e-5;

// ---- GPT-2 124M dimensions and the reduced row counts ----------------------------------------

constexpr int64_t kC = 768;              // channels
constexpr int64_t kHidden = 3072;        // MLP hidden
constexpr int64_t kT = 1024;             // context
constexpr int64_t kHeadDim = 64;         // 12 heads of 64
constexpr int64_t kVocab = 50257;        // valid vocabulary
constexpr int64_t kVocabPadded = 50304;  // padded row length of logits and wte
// Row-wise ops with per-row kernels and cross-row reductions (layernorm, sum_rows' bias gradient):
// (B, T, C) with B*T = 8192 rows, as in a B = 8 training step (several waves of a persistent grid).
constexpr int64_t kBatch = 8;
// Elementwise ops and copies (grid-stride loops, whose code paths do not depend on the row count):
// B = 2, i.e. 2048 rows of 768 (1.6M elements).
constexpr int64_t kSmallBatch = 2;
// Rows reduced for the f64 reference (its triple loops are the slow part of this suite):
constexpr int64_t kMatmulRows = 64;         // matmul (M, 768) @ (768, 3072), M = 768 in the plan
constexpr int64_t kLinearRows = 128;        // linear (N, 768) x (2304, 768)^T, N = 4096 in a step
constexpr int64_t kHeads = 4;               // attention heads (1024x64 @ 64x1024 each), 12 in GPT-2
constexpr int64_t kCrossEntropyRows = 256;  // logits (N, 50304), N = 2048..8192 in a step
constexpr int64_t kEmbeddingTokens = 4096;  // embedding lookups into the full (50304, 768) table

// ---- small helpers --------------------------------------------------------------------------

Tensor randn(const Shape& s, Rng& rng, double mean = 0.0, double std = 1.0) {
  return Tensor::randn(s, rng, DType::F64, Device::cpu(), mean, std);
}

Tensor uniform(const Shape& s, Rng& rng, double lo, double hi) {
  return Tensor::uniform(s, rng, lo, hi, DType::F64, Device::cpu());
}

// `x` (f64, CPU) rounded to `dt` the way Tensor::to(dt) rounds (f64 -> float -> bf16), from one
// host pass, returned twice: as an f64 CPU tensor (the reference's input) and, when `dev` is given,
// as a `dt` tensor on it (the GPU's input, bytes packed on the host). Plain loops here: the generic
// strided conversion behind Tensor::to costs ~10x more at the 10^7-element sizes of this suite.
struct Rounded {
  Tensor ref, dev;
};
Rounded round_to(const Tensor& x, DType dt, const Device* dev = nullptr) {
  std::vector<double> v = x.to_vector();
  Tensor packed = dev ? Tensor::empty(x.shape(), dt) : Tensor();
  for (size_t i = 0; i < v.size(); ++i) {
    const float f = static_cast<float>(v[i]);
    if (dt == DType::BF16) {
      const uint16_t b = sk::bf16::from_float(f);
      v[i] = sk::bf16::to_float(b);
      if (dev) packed.data<uint16_t>()[i] = b;
    } else {
      v[i] = f;
      if (dev) packed.data<float>()[i] = f;
    }
  }
  return {Tensor::from_vector(v, x.shape(), DType::F64), dev ? packed.to(*dev) : Tensor()};
}

// The values of `x` (f64, CPU) after rounding to dt: what the GPU will see (an f64 CPU tensor).
Tensor round_through(const Tensor& x, DType dt) { return round_to(x, dt).ref; }

// `x` (f64 CPU, values representable in dt) as a dt tensor on `dev`.
Tensor to_device(const Tensor& x, DType dt, Device dev) { return round_to(x, dt, &dev).dev; }

// Any floating tensor (any device) as a contiguous f64 CPU tensor, unpacked on the host.
Tensor to_host_f64(const Tensor& t) {
  const Tensor h = t.detach().to(Device::cpu()).contiguous();
  if (h.dtype() != DType::F32 && h.dtype() != DType::BF16) return h.to(DType::F64);
  std::vector<double> v(h.numel());
  for (size_t i = 0; i < v.size(); ++i)
    v[i] = h.dtype() == DType::F32 ? h.data<float>()[i] : sk::bf16::to_float(h.data<uint16_t>()[i]);
  return Tensor::from_vector(v, h.shape(), DType::F64);
}

// max |t| and ||t|| of a CPU tensor.
double max_abs_of(const Tensor& t) {
  const Tensor c = t.detach().to(DType::F64).contiguous();
  double m = 0;
  for (int64_t i = 0; i < c.numel(); ++i) m = std::max(m, std::abs(c.data<double>()[i]));
  return m;
}
double norm_of(const Tensor& t) {
  const Tensor c = t.detach().to(DType::F64).contiguous();
  double s = 0;
  for (int64_t i = 0; i < c.numel(); ++i) s += c.data<double>()[i] * c.data<double>()[i];
  return std::sqrt(s);
}

int64_t count_nonzero(const Tensor& t) {
  int64_t n = 0;
  for (double v : t.to_vector()) n += v != 0.0;
  return n;
}

std::string shape_str(const Shape& s) { return sk::shape_str(s); }

std::string hex(uint64_t v) {
  std::ostringstream os;
  os << "0x" << std::hex << v;
  return os.str();
}

// Error scale of a comparison: errors are measured relative to max(||ref||, norm) and
// max(max|ref|, max) (both 0: relative to the reference alone; see CaseOptions).
struct Floor {
  double norm = 0, max = 0;
};

// Compares a GPU tensor with its f64 CPU reference, prints the report and checks it against `tol`.
void expect_close(const std::string& what, const Tensor& got_dev, const Tensor& ref_in, const Tol& tol,
                  Floor floor = {}) {
  ASSERT_TRUE(got_dev.defined()) << what << ": the GPU run produced no tensor";
  ASSERT_TRUE(ref_in.defined()) << what << ": the CPU reference produced no tensor";
  EXPECT_TRUE(got_dev.is_cuda()) << what << ": GPU result lives on " << got_dev.device().str();
  const Tensor ref = ref_in.detach().to(DType::F64).contiguous();
  const sk::testing::ParityReport r = sk::testing::compare(to_host_f64(got_dev), ref);
  const double ref_norm = norm_of(ref), max_ref = max_abs_of(ref);
  // ||got - ref|| / max(||ref||, floor.norm): equals r.rel_l2 without a floor.
  const double norm_scale = std::max(ref_norm, floor.norm);
  const double rel_l2 = norm_scale > 0 ? r.rel_l2 * (ref_norm > 0 ? ref_norm : 1.0) / norm_scale : r.rel_l2;
  const double max_scale = std::max(max_ref, floor.max) > 0 ? std::max(max_ref, floor.max) : 1.0;
  std::cout << "[parity] " << what << ": " << r.str() << std::setprecision(3) << " | max|ref| " << max_ref;
  if (floor.norm > 0 || floor.max > 0) std::cout << ", rel_l2 to the floored scale " << rel_l2;
  std::cout << ", limits rel_l2 " << tol.rel_l2 << " max_abs " << tol.max_abs * max_scale << std::endl;
  EXPECT_FALSE(r.non_finite) << what << ": non-finite values (an unwritten output?): " << r.str();
  EXPECT_LE(rel_l2, tol.rel_l2) << what << ": " << r.str();
  EXPECT_LE(r.max_abs, tol.max_abs * max_scale) << what << ": " << r.str();
}

// Runs `f` and expects an sk::Error whose message contains every string of `parts`.
void expect_sk_error(const std::string& what, const std::function<void()>& f, const std::vector<std::string>& parts) {
  try {
    f();
    sk::cuda::synchronize();
  } catch (const sk::Error& e) {
    const std::string msg = e.what();
    std::cout << "[parity] " << what << " threw: " << msg << std::endl;
    for (const std::string& p : parts)
      EXPECT_NE(msg.find(p), std::string::npos) << what << ": message does not mention '" << p << "': " << msg;
    return;
  }
  ADD_FAILURE() << what << ": expected sk::Error, nothing was thrown";
}

// ---- the parity harness ---------------------------------------------------------------------

struct Input {
  std::string name;
  Tensor value;  // f64 CPU values; every input gets requires_grad and its gradient is compared
};
// The op under test, applied to inputs on `dev` (integer side inputs are captured on the CPU and
// moved with .to(dev) inside).
using OpFn = std::function<Tensor(const std::vector<Tensor>& x, Device dev)>;
// Extra checks on the GPU run after backward (its input leaves and its output).
using ExtraCheck = std::function<void(const std::vector<Tensor>& dev_inputs, const Tensor& dev_out, DType dt)>;

enum class Match { Numeric, Exact };

struct CaseOptions {
  Match match = Match::Numeric;
  // Error scales for results that are small differences of larger fp32 terms (0: none). Forward
  // errors are then measured against max(|y|, forward_floor * |x|) (x: the first input), input
  // gradients against max(|dx|, grad_floor * |R|) (R: the cotangent), in norm and in max. Used by
  // GELU, whose formula x/2 (1 + erf(x/sqrt2)) (tanh form alike) cancels for x << 0 (1 + erf =
  // 1.6e-4 at x = -3.8): fp32 is accurate to 2^-24 |x| there, not to 2^-24 |y|; and by layernorm
  // with C = 1 (see there).
  double forward_floor = 0;
  double grad_floor = 0;
  ExtraCheck extra;  // op-specific checks on the GPU run
};

CaseOptions exact_match() {
  CaseOptions o;
  o.match = Match::Exact;
  return o;
}

// The cases of one op: each gets its own seed (FNV-1a of the op name mixed with the case number).
class OpCases {
 public:
  explicit OpCases(std::string op) : op_(std::move(op)) {}

  // Starts the next case; returns the Rng to draw its inputs from.
  Rng& next() {
    ++index_;
    uint64_t h = 1469598103934665603ull;
    for (char c : op_) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ull;
    seed_ = h ^ (0x9e3779b97f4a7c15ull * static_cast<uint64_t>(index_ + 1));
    rng_.seed_with(seed_);
    return rng_;
  }

  // Forward and backward of `fn` on the CPU (f64) and on cuda:0 for each dtype; compares the output
  // and every input gradient.
  void run(const std::string& label, const std::vector<Input>& inputs, const OpFn& fn, const CaseOptions& opt = {}) {
    const Device dev = Device::cuda(0);
    Tensor cotangent;  // drawn once per case (same values for both dtypes, then rounded)
    for (DType dt : {DType::F32, DType::BF16}) {
      const std::string tag = op_ + " " + sk::dtype_name(dt) + " " + label;
      SCOPED_TRACE(tag + " [seed " + hex(seed_) + "]");
      std::vector<Tensor> ref_in, dev_in;
      for (const Input& in : inputs) {
        auto [r, d] = round_to(in.value, dt, &dev);
        r.set_requires_grad();
        d.set_requires_grad();
        ref_in.push_back(r);
        dev_in.push_back(d);
      }
      const Tensor out_ref = fn(ref_in, Device::cpu());
      const Tensor out_dev = fn(dev_in, dev);
      ASSERT_EQ(out_dev.shape(), out_ref.shape()) << tag;
      if (!cotangent.defined()) {
        Rng crng(seed_ ^ 0xc07a6e47ull);
        cotangent = randn(out_ref.shape(), crng);
      }
      const auto [cot, cot_dev] = round_to(cotangent, out_dev.dtype(), &dev);
      out_ref.backward(cot);
      out_dev.backward(cot_dev);

      auto tol_for = [&](const Tensor& t) {
        if (opt.match == Match::Exact) return kExactTol;
        return t.dtype() == DType::BF16 ? kBf16Tol : kF32Tol;
      };
      const Floor out_floor{opt.forward_floor * norm_of(ref_in[0]), opt.forward_floor * max_abs_of(ref_in[0])};
      const Floor grad_floor{opt.grad_floor * norm_of(cot), opt.grad_floor * max_abs_of(cot)};
      expect_close(tag + " forward", out_dev, out_ref, tol_for(out_dev), out_floor);
      for (size_t i = 0; i < inputs.size(); ++i) {
        ASSERT_TRUE(dev_in[i].grad().defined()) << tag << ": no gradient for " << inputs[i].name << " on the GPU";
        ASSERT_TRUE(ref_in[i].grad().defined()) << tag << ": no gradient for " << inputs[i].name << " on the CPU";
        expect_close(tag + " grad " + inputs[i].name, dev_in[i].grad(), ref_in[i].grad(), tol_for(dev_in[i].grad()),
                     grad_floor);
      }
      if (opt.extra) opt.extra(dev_in, out_dev, dt);
    }
  }

 private:
  std::string op_;
  int index_ = -1;
  uint64_t seed_ = 0;
  Rng rng_;
};

// Poisoned allocations for every parity test (unwritten outputs become NaN); reset afterwards.
class CudaParity : public ::testing::Test {
 protected:
  void SetUp() override { sk::cuda::set_poison_on_alloc(true); }
  void TearDown() override { sk::cuda::set_poison_on_alloc(false); }
};

// Elementwise shapes: the GPT-2 residual stream (B, T, C) and odd sizes (tails of vector loops).
std::vector<Shape> elementwise_shapes() { return {{kSmallBatch, kT, kC}, {1}, {17}, {1000, 17}, {17, 1000}}; }

using BinaryOp = Tensor (*)(const Tensor&, const Tensor&);

void run_binary(const std::string& op, BinaryOp f) {
  OpCases cases(op);
  auto fn = [f](const std::vector<Tensor>& x, Device) { return f(x[0], x[1]); };
  for (const Shape& s : elementwise_shapes()) {
    Rng& rng = cases.next();
    cases.run(shape_str(s), {{"a", randn(s, rng)}, {"b", randn(s, rng)}}, fn);
  }
  // A transposed (non-contiguous) operand.
  Rng& rng = cases.next();
  cases.run("a (1000, 17)^T, b (17, 1000)", {{"a", randn({1000, 17}, rng)}, {"b", randn({17, 1000}, rng)}},
            [f](const std::vector<Tensor>& x, Device) { return f(x[0].transpose(0, 1), x[1]); });
  // Contiguous views starting one element into their storage: data pointers not 16-byte aligned.
  Rng& rng2 = cases.next();
  cases.run("(1001,)[1:1001] misaligned", {{"a", randn({1001}, rng2)}, {"b", randn({1001}, rng2)}},
            [f](const std::vector<Tensor>& x, Device) { return f(x[0].slice(0, 1, 1001), x[1].slice(0, 1, 1001)); });
}

void run_gelu(const std::string& op, ops::GeluApprox approx) {
  OpCases cases(op);
  auto fn = [approx](const std::vector<Tensor>& x, Device) { return ops::gelu(x[0], approx); };
  CaseOptions opt;  // fp32 cancellation in the negative tail, see CaseOptions
  opt.forward_floor = 1.0;
  opt.grad_floor = 1.0;  // |dx| <= 1.13 |R| anyway
  // MLP activation (B, T, 3072), B*T = 1024 rows; N(0, 3) reaches both saturated tails.
  for (const Shape& s : std::vector<Shape>{{1, kT, kHidden}, {1}, {17}, {1000, 17}}) {
    Rng& rng = cases.next();
    cases.run(shape_str(s), {{"x", randn(s, rng, 0.0, 3.0)}}, fn, opt);
  }
  Rng& rng = cases.next();
  cases.run("(17, 1000) uniform in [-12, 12]", {{"x", uniform({17, 1000}, rng, -12.0, 12.0)}}, fn, opt);
  Rng& rng2 = cases.next();
  cases.run("(1001,)[1:1001] misaligned", {{"x", randn({1001}, rng2, 0.0, 3.0)}},
            [approx](const std::vector<Tensor>& x, Device) { return ops::gelu(x[0].slice(0, 1, 1001), approx); }, opt);
}

// ================================================================================================
// elementwise

TEST_F(CudaParity, add) {
  SK_REQUIRE_CUDA();
  run_binary("add", &ops::add);
}

TEST_F(CudaParity, sub) {
  SK_REQUIRE_CUDA();
  run_binary("sub", &ops::sub);
}

TEST_F(CudaParity, mul) {
  SK_REQUIRE_CUDA();
  run_binary("mul", &ops::mul);
}

TEST_F(CudaParity, scale) {
  SK_REQUIRE_CUDA();
  OpCases cases("scale");
  constexpr double kAlpha = -0.37;  // not a power of two: the product is rounded
  auto fn = [](const std::vector<Tensor>& x, Device) { return ops::scale(x[0], kAlpha); };
  for (const Shape& s : elementwise_shapes()) {
    Rng& rng = cases.next();
    cases.run(shape_str(s) + " alpha -0.37", {{"a", randn(s, rng)}}, fn);
  }
  Rng& rng = cases.next();
  cases.run("(1001,)[1:1001] misaligned, alpha -0.37", {{"a", randn({1001}, rng)}},
            [](const std::vector<Tensor>& x, Device) { return ops::scale(x[0].slice(0, 1, 1001), kAlpha); });
}

// ================================================================================================
// activations, normalisation

TEST_F(CudaParity, gelu_tanh) {
  SK_REQUIRE_CUDA();
  run_gelu("gelu_tanh", ops::GeluApprox::Tanh);
}

TEST_F(CudaParity, gelu_erf) {
  SK_REQUIRE_CUDA();
  run_gelu("gelu_erf", ops::GeluApprox::Erf);
}

TEST_F(CudaParity, layernorm) {
  SK_REQUIRE_CUDA();
  OpCases cases("layernorm");
  auto with_bias = [](const std::vector<Tensor>& x, Device) { return ops::layernorm(x[0], x[1], x[2]); };
  // x (..., C) ~ N(0.5, 2), weight ~ 1 + N(0, 0.1), bias ~ N(0, 0.1).
  auto inputs = [](const Shape& xs, Rng& rng, double mean, double std) {
    const int64_t C = xs.back();
    return std::vector<Input>{{"x", randn(xs, rng, mean, std)},
                              {"weight", randn({C}, rng, 1.0, 0.1)},
                              {"bias", randn({C}, rng, 0.0, 0.1)}};
  };
  const std::vector<Shape> shapes = {{kBatch, kT, kC},  // GPT-2 ln_1/ln_2 on a B = 8 step
                                     {1, 1},     {17, 17},  {1000, 1000}, {1, 1000},
                                     {1000, 1},  {17, 1000}, {3, 5, 17},   {4, 8191}};
  for (const Shape& s : shapes) {
    Rng& rng = cases.next();
    const std::vector<Input> in = inputs(s, rng, 0.5, 2.0);
    CaseOptions opt;
    // C = 1: every row has variance 0, so rstd = 1/sqrt(eps) = 316 and dx = rstd (g - mean(g)),
    // g = R w, is 0 as a difference of two terms of size 316 |R w|; fp32 leaves ~2^-24 of that.
    if (s.back() == 1) opt.grad_floor = max_abs_of(in[1].value) / std::sqrt(1e-5);
    cases.run("x " + shape_str(s), in, with_bias, opt);
  }
  // A large common offset (30 + N(0, 1)): catches a one-pass E[x^2] - E[x]^2 variance in fp32.
  Rng& rng = cases.next();
  cases.run("x (64, 768) offset 30", inputs({64, kC}, rng, 30.0, 1.0), with_bias);
  // No bias (the kernel gets a null bias pointer and must not write dbias).
  Rng& rng2 = cases.next();
  cases.run("x (17, 1000) no bias", {{"x", randn({17, 1000}, rng2, 0.5, 2.0)}, {"weight", randn({1000}, rng2, 1.0, 0.1)}},
            [](const std::vector<Tensor>& x, Device) { return ops::layernorm(x[0], x[1], Tensor()); });
}

// The fused residual add + LayerNorm: both outputs (the sum and y) and the gradients of x, the
// residual, weight and bias, with a cotangent on each output (OpCases' standard tolerances; the
// sum in bf16 is rounded once, as add rounds it, so it matches the rounded CPU reference).
TEST_F(CudaParity, add_layernorm) {
  SK_REQUIRE_CUDA();
  OpCases cases("add_layernorm");
  auto both = [](const std::vector<Tensor>& x, Device) {
    const ops::AddLayerNorm o = ops::add_layernorm(x[0], x[1], x[2], x[3]);
    return ops::add(ops::scale(o.sum, 0.5), o.y);
  };
  auto inputs = [](const Shape& xs, Rng& rng) {
    const int64_t C = xs.back();
    return std::vector<Input>{{"x", randn(xs, rng, 0.5, 2.0)},
                              {"residual", randn(xs, rng, -0.2, 1.0)},
                              {"weight", randn({C}, rng, 1.0, 0.1)},
                              {"bias", randn({C}, rng, 0.0, 0.1)}};
  };
  // GPT-2's residual stream on a B = 8 step (16-byte path), rows not 16-byte aligned (scalar path),
  // a wide row (several warps), one beyond the register path (C > 8192: the generic kernels).
  for (const Shape& s : std::vector<Shape>{{kBatch, kT, kC}, {17, 1000}, {3, 5, 17}, {4, 4096}, {3, 9000}}) {
    Rng& rng = cases.next();
    cases.run("x " + shape_str(s), inputs(s, rng), both);
  }
  // The final LayerNorm's form: only y carries gradient, no bias.
  Rng& rng = cases.next();
  cases.run("x (64, 768) final, no bias",
            {{"x", randn({64, kC}, rng, 0.5, 2.0)}, {"residual", randn({64, kC}, rng, 0.0, 1.0)},
             {"weight", randn({kC}, rng, 1.0, 0.1)}},
            [](const std::vector<Tensor>& x, Device) {
              return ops::add_layernorm(x[0], x[1], x[2], Tensor(), 1e-5, false).y;
            });
}

TEST_F(CudaParity, softmax) {
  SK_REQUIRE_CUDA();
  OpCases cases("softmax");
  auto fn = [](const std::vector<Tensor>& x, Device) { return ops::softmax(x[0]); };
  // Attention probabilities of one sequence (H, T, T) for kHeads heads, a vocabulary-wide row
  // (50257 wide, more than any block), and odd shapes. Logits ~ N(0, 3): peaked rows.
  const std::vector<Shape> shapes = {{kHeads, kT, kT}, {64, kVocab}, {1, 1}, {1, 17}, {17, 1000}, {1000, 17}, {1000, 1}};
  for (const Shape& s : shapes) {
    Rng& rng = cases.next();
    cases.run(shape_str(s), {{"x", randn(s, rng, 0.0, 3.0)}}, fn);
  }
}

// ================================================================================================
// embedding

TEST_F(CudaParity, embedding) {
  SK_REQUIRE_CUDA();
  OpCases cases("embedding");
  struct EmbCase {
    int64_t V, C;
    Shape idx_shape;
    DType idx_dtype;
  };
  const std::vector<EmbCase> cs = {
      {kVocabPadded, kC, {4, kEmbeddingTokens / 4}, DType::I32},  // GPT-2 wte, 4096 tokens
      {17, 1, {1000}, DType::I64},                                // ~59 hits per row: heavy scatter-add
      {17, 17, {17}, DType::I32},
      {1000, 1000, {1}, DType::I64},
      {1, 17, {3, 17}, DType::I32},  // every index 0: all lookups add into one row
      {17, 1000, {1000}, DType::I32},
  };
  for (const EmbCase& c : cs) {
    Rng& rng = cases.next();
    // Uniform values: neither direction computes with the table's values, and drawing 38.6M
    // normals would be the slowest step of this test.
    Tensor table = uniform({c.V, c.C}, rng, -1.0, 1.0);
    Tensor idx = Tensor::randint(c.idx_shape, rng, c.V, c.idx_dtype);
    cases.run("table (" + std::to_string(c.V) + ", " + std::to_string(c.C) + ") idx " + shape_str(c.idx_shape) + " " +
                  sk::dtype_name(c.idx_dtype),
              {{"table", table}},
              [idx](const std::vector<Tensor>& x, Device dev) { return ops::embedding(x[0], idx.to(dev)); });
  }
}

// ================================================================================================
// cross-entropy

struct CeCase {
  Shape logits_shape;  // (..., Vp)
  int64_t V;           // valid vocabulary (<= Vp); padding columns are filled with 1000
  ops::Reduction reduction;
  DType target_dtype;
  int64_t ignore_index = -1;
  int ignore_every = 0;  // every k-th row gets ignore_index as target (0: none)
  bool fused = false;    // logits given up (a temporary): the fused Mean path on CUDA
};

const char* reduction_name(ops::Reduction r) {
  switch (r) {
    case ops::Reduction::Mean: return "mean";
    case ops::Reduction::Sum: return "sum";
    case ops::Reduction::None: return "none";
  }
  return "?";
}

// Logits ~ N(0, 2) with the padding columns set to 1000: a kernel that lets them into the
// log-sum-exp or the gradient produces a wrong loss or inf/NaN.
void run_cross_entropy(OpCases& cases, const CeCase& c, const ExtraCheck& extra = nullptr) {
  Rng& rng = cases.next();
  const int64_t Vp = c.logits_shape.back();
  Tensor logits = randn(c.logits_shape, rng, 0.0, 2.0);
  if (c.V < Vp) logits.slice(-1, c.V, Vp).fill_(1000.0);
  Shape tshape = c.logits_shape;
  tshape.pop_back();
  std::vector<int64_t> t(sk::shape_numel(tshape));
  for (size_t i = 0; i < t.size(); ++i)
    t[i] = c.ignore_every > 0 && i % c.ignore_every == 0 ? c.ignore_index : static_cast<int64_t>(rng.below(c.V));
  if (t.size() > 2 && c.ignore_every == 0) {  // the first and last valid columns as targets
    t[1] = 0;
    t[2] = c.V - 1;
  }
  Tensor targets = Tensor::from_ints(t, tshape, c.target_dtype);
  ops::CrossEntropyOptions opts;
  opts.valid_vocab = c.V;
  opts.ignore_index = c.ignore_index;
  opts.reduction = c.reduction;
  std::ostringstream label;
  label << "logits " << shape_str(c.logits_shape) << " V " << c.V << " " << reduction_name(c.reduction) << " targets "
        << sk::dtype_name(c.target_dtype);
  if (c.ignore_every) label << " ignore_index " << c.ignore_index << " every " << c.ignore_every << " rows";
  if (c.fused) label << " fused";
  CaseOptions opt;
  opt.extra = extra;
  const bool fused = c.fused;
  cases.run(label.str(), {{"logits", logits}},
            [targets, opts, fused](const std::vector<Tensor>& x, Device dev) {
              // scale(x, 1) is exact and a temporary: the rvalue overload may consume it
              return fused ? ops::cross_entropy(ops::scale(x[0], 1.0), targets.to(dev), opts)
                           : ops::cross_entropy(x[0], targets.to(dev), opts);
            },
            opt);
}

TEST_F(CudaParity, cross_entropy) {
  SK_REQUIRE_CUDA();
  OpCases cases("cross_entropy");
  using R = ops::Reduction;
  const std::vector<CeCase> cs = {
      {{kCrossEntropyRows, kVocabPadded}, kVocab, R::Mean, DType::I64},  // GPT-2 head, rows reduced
      {{2, 16, kVocabPadded}, kVocab, R::Sum, DType::I32},                // leading dims flattened
      {{1, 17}, 17, R::Mean, DType::I32},
      {{17, 17}, 17, R::None, DType::I64},
      {{1000, 17}, 17, R::Sum, DType::I32},
      {{17, 1000}, 1000, R::None, DType::I32},
      {{1000, 1}, 1, R::Mean, DType::I64},  // V = 1: loss and gradient are exactly 0
  };
  for (const CeCase& c : cs) run_cross_entropy(cases, c);
}

TEST_F(CudaParity, cross_entropy_padded_vocab_ignore_index) {
  SK_REQUIRE_CUDA();
  OpCases cases("cross_entropy_padded_vocab_ignore_index");
  using R = ops::Reduction;
  // Besides parity: padding columns and ignored rows must get exactly 0 gradient.
  auto exact_zeros = [](const CeCase& c) {
    return [c](const std::vector<Tensor>& dev_in, const Tensor&, DType dt) {
      const int64_t Vp = c.logits_shape.back();
      const Tensor g = dev_in[0].grad().detach().to(Device::cpu()).to(DType::F64).reshape({-1, Vp});
      EXPECT_EQ(count_nonzero(g.slice(1, c.V, Vp)), 0)
          << sk::dtype_name(dt) << ": padding columns [" << c.V << ", " << Vp << ") got a nonzero gradient";
      if (c.ignore_every > 0) {
        for (int64_t r = 0; r < g.size(0); r += c.ignore_every) {
          EXPECT_EQ(count_nonzero(g.slice(0, r, r + 1)), 0)
              << sk::dtype_name(dt) << ": ignored row " << r << " got a nonzero gradient";
        }
      }
    };
  };
  const std::vector<CeCase> cs = {
      // GPT-2 padded head (rows reduced to 128), every 5th row ignored (-1), mean over the rest.
      {{128, kVocabPadded}, kVocab, R::Mean, DType::I64, -1, 5},
      {{17, 24}, 17, R::Mean, DType::I32, -100, 3},   // PyTorch's default ignore_index
      {{1000, 24}, 17, R::None, DType::I64, -1, 2},
      {{17, 24}, 17, R::Sum, DType::I32, 16, 4},      // an ignore_index inside [0, V)
      {{5, 24}, 17, R::Mean, DType::I32, -1, 1},      // every row ignored: loss 0, gradient 0
      {{33, 50}, 17, R::Mean, DType::I64},            // padding only, no ignored rows
  };
  for (const CeCase& c : cs) run_cross_entropy(cases, c, exact_zeros(c));
}

// The fused Mean path (loss and gradient in one pass over logits the caller gives up, the gradient
// written over them, rescaled in backward by OpCases' random upstream gradient): the same cases as
// above, Mean only, plus rows of different 16-byte phases (Vp 50 bf16); the extra check makes sure
// the CUDA side really took the fused path.
TEST_F(CudaParity, cross_entropy_fused_mean) {
  SK_REQUIRE_CUDA();
  OpCases cases("cross_entropy_fused_mean");
  using R = ops::Reduction;
  auto took_fused_path = [](const std::vector<Tensor>&, const Tensor& out, DType dt) {
    const auto& fn = out.impl()->grad_fn;
    ASSERT_TRUE(fn != nullptr) << sk::dtype_name(dt) << ": the loss has no autograd node";
    EXPECT_EQ(fn->name, "cross_entropy_mean_fused") << sk::dtype_name(dt) << ": the fused path was not taken";
  };
  const std::vector<CeCase> cs = {
      {{kCrossEntropyRows, kVocabPadded}, kVocab, R::Mean, DType::I64, -1, 0, true},
      {{kCrossEntropyRows, kVocabPadded}, kVocab, R::Mean, DType::I32, -1, 5, true},
      {{2, 16, kVocabPadded}, kVocab, R::Mean, DType::I32, -100, 3, true},
      {{1, 17}, 17, R::Mean, DType::I32, -1, 0, true},
      {{33, 50}, 17, R::Mean, DType::I64, -1, 0, true},
      {{17, 24}, 17, R::Mean, DType::I32, 16, 4, true},  // an ignore_index inside [0, V)
      {{5, 24}, 17, R::Mean, DType::I32, -1, 1, true},   // every row ignored: loss 0, gradient 0
      {{1000, 1}, 1, R::Mean, DType::I64, -1, 0, true},  // V = 1
  };
  for (const CeCase& c : cs) run_cross_entropy(cases, c, took_fused_path);
}

// The fused path with the usual upstream gradient of exactly 1 (the backward's rescale writes
// nothing then): the logits' gradient against the f64 CPU reference.
TEST_F(CudaParity, cross_entropy_fused_mean_unit_gradient) {
  SK_REQUIRE_CUDA();
  const Device dev = Device::cuda(0);
  Rng rng(0xce1f05edull);
  const Tensor logits = randn({kCrossEntropyRows, kVocabPadded}, rng, 0.0, 2.0);
  std::vector<int64_t> t(kCrossEntropyRows);
  for (size_t i = 0; i < t.size(); ++i) t[i] = i % 7 == 0 ? -1 : static_cast<int64_t>(rng.below(kVocab));
  const Tensor targets = Tensor::from_ints(t, {kCrossEntropyRows}, DType::I32);
  ops::CrossEntropyOptions opts;
  opts.valid_vocab = kVocab;
  for (DType dt : {DType::F32, DType::BF16}) {
    auto [ref, d] = round_to(logits, dt, &dev);
    ref.set_requires_grad();
    d.set_requires_grad();
    const Tensor want = ops::cross_entropy(ref, targets, opts);
    const Tensor got = ops::cross_entropy(ops::scale(d, 1.0), targets.to(dev), opts);
    ASSERT_TRUE(got.impl()->grad_fn != nullptr);
    EXPECT_EQ(got.impl()->grad_fn->name, "cross_entropy_mean_fused") << sk::dtype_name(dt);
    want.backward();
    got.backward();
    const Tol tol = dt == DType::BF16 ? kBf16Tol : kF32Tol;
    expect_close(std::string("fused cross_entropy loss ") + sk::dtype_name(dt), got, want, tol);
    expect_close(std::string("fused cross_entropy dlogits (upstream 1) ") + sk::dtype_name(dt), d.grad(), ref.grad(),
                 tol);
  }
}

// ================================================================================================
// matrix products

TEST_F(CudaParity, matmul) {
  SK_REQUIRE_CUDA();
  OpCases cases("matmul");
  auto mm = [](const std::vector<Tensor>& x, Device) { return ops::matmul(x[0], x[1]); };
  struct Mkn {
    int64_t m, k, n;
  };
  // (M, K) @ (K, N): the GPT-2 MLP up-projection 768 -> 3072 (rows reduced), then odd shapes.
  const std::vector<Mkn> shapes = {{kMatmulRows, kC, kHidden}, {1, 1, 1},   {1, 17, 1000}, {17, 17, 17},
                                   {1000, 17, 1},              {17, 1000, 17}, {1000, 1, 17}};
  for (const Mkn& s : shapes) {
    Rng& rng = cases.next();
    cases.run("(" + std::to_string(s.m) + ", " + std::to_string(s.k) + ") @ (" + std::to_string(s.k) + ", " +
                  std::to_string(s.n) + ")",
              {{"a", randn({s.m, s.k}, rng)}, {"b", randn({s.k, s.n}, rng)}}, mm);
  }
  // Transposed views go to cuBLASLt with a transpose flag (no copy): a stored (K, M), b stored (N, K).
  Rng& r1 = cases.next();
  cases.run("a (17, 1000)^T @ b (17, 33)", {{"a_t", randn({17, 1000}, r1)}, {"b", randn({17, 33}, r1)}},
            [](const std::vector<Tensor>& x, Device) { return ops::matmul(x[0].transpose(0, 1), x[1]); });
  Rng& r2 = cases.next();
  cases.run("a (1000, 17) @ b (33, 17)^T", {{"a", randn({1000, 17}, r2)}, {"b_t", randn({33, 17}, r2)}},
            [](const std::vector<Tensor>& x, Device) { return ops::matmul(x[0], x[1].transpose(0, 1)); });
  Rng& r3 = cases.next();
  cases.run("a (17, 1000)^T @ b (33, 17)^T", {{"a_t", randn({17, 1000}, r3)}, {"b_t", randn({33, 17}, r3)}},
            [](const std::vector<Tensor>& x, Device) {
              return ops::matmul(x[0].transpose(0, 1), x[1].transpose(0, 1));
            });
  // Column slices: leading dimension 1000 > 17 columns; the second one also starts one element in
  // (pointer aligned to the element size only).
  Rng& r4 = cases.next();
  cases.run("a (33, 1000)[:, 0:17] @ b (17, 17)", {{"a_big", randn({33, 1000}, r4)}, {"b", randn({17, 17}, r4)}},
            [](const std::vector<Tensor>& x, Device) { return ops::matmul(x[0].slice(1, 0, 17), x[1]); });
  Rng& r5 = cases.next();
  cases.run("a (33, 1000)[:, 1:18] @ b (17, 17) misaligned", {{"a_big", randn({33, 1000}, r5)}, {"b", randn({17, 17}, r5)}},
            [](const std::vector<Tensor>& x, Device) { return ops::matmul(x[0].slice(1, 1, 18), x[1]); });
}

TEST_F(CudaParity, batched_matmul) {
  SK_REQUIRE_CUDA();
  OpCases cases("batched_matmul");
  // Attention scores for one sequence: q (H, T, D) @ k^T, k (H, T, D) passed as a transposed view
  // (heads reduced from 12 to kHeads).
  Rng& r0 = cases.next();
  const Shape qk{kHeads, kT, kHeadDim};
  cases.run("q " + shape_str(qk) + " @ k^T", {{"q", randn(qk, r0)}, {"k", randn(qk, r0)}},
            [](const std::vector<Tensor>& x, Device) { return ops::matmul(x[0], x[1].transpose(1, 2)); });
  // Attention output att (H, T, T) @ v (H, T, D), T reduced to 256.
  Rng& r1 = cases.next();
  cases.run("att (4, 256, 256) @ v (4, 256, 64)", {{"att", randn({4, 256, 256}, r1)}, {"v", randn({4, 256, kHeadDim}, r1)}},
            [](const std::vector<Tensor>& x, Device) { return ops::matmul(x[0], x[1]); });
  auto bmm = [](const std::vector<Tensor>& x, Device) { return ops::matmul(x[0], x[1]); };
  struct Bmkn {
    int64_t b, m, k, n;
  };
  for (const Bmkn& s : std::vector<Bmkn>{{1, 1, 1, 1}, {3, 17, 17, 1000}, {2, 1000, 17, 1}, {5, 1, 17, 17}}) {
    Rng& rng = cases.next();
    const Shape as{s.b, s.m, s.k}, bs{s.b, s.k, s.n};
    cases.run(shape_str(as) + " @ " + shape_str(bs), {{"a", randn(as, rng)}, {"b", randn(bs, rng)}}, bmm);
  }
  // b 2-D, broadcast over the batch (backward sums db over the batch).
  Rng& r2 = cases.next();
  cases.run("(3, 17, 5) @ (5, 17) broadcast", {{"a", randn({3, 17, 5}, r2)}, {"b", randn({5, 17}, r2)}}, bmm);
  // a is (17, 3, 5).transpose(0, 1): batch stride 5, row stride 15 (interleaved matrices).
  Rng& r3 = cases.next();
  cases.run("a (17, 3, 5).transpose(0, 1) @ (3, 5, 17)", {{"a_t", randn({17, 3, 5}, r3)}, {"b", randn({3, 5, 17}, r3)}},
            [](const std::vector<Tensor>& x, Device) { return ops::matmul(x[0].transpose(0, 1), x[1]); });
}

TEST_F(CudaParity, linear) {
  SK_REQUIRE_CUDA();
  OpCases cases("linear");
  auto lin = [](const std::vector<Tensor>& x, Device) { return ops::linear(x[0], x[1], x[2]); };
  struct LinCase {
    Shape x;
    int64_t out;
  };
  // GPT-2 qkv projection (rows reduced): x (N, 768), W (2304, 768), bias (2304); then odd shapes,
  // including out = 1 and in = 1 (K = 1).
  const std::vector<LinCase> cs = {{{kLinearRows, kC}, 3 * kC}, {{17, 17}, 1}, {{1, 1000}, 17},
                                   {{2, 17, 17}, 1000},         {{1000, 1}, 17}};
  for (const LinCase& c : cs) {
    Rng& rng = cases.next();
    const int64_t in = c.x.back();
    cases.run("x " + shape_str(c.x) + " W (" + std::to_string(c.out) + ", " + std::to_string(in) + ") + bias",
              {{"x", randn(c.x, rng)}, {"weight", randn({c.out, in}, rng, 0.0, 0.02)}, {"bias", randn({c.out}, rng)}},
              lin);
  }
  Rng& rng = cases.next();
  cases.run("x (17, 1000) W (17, 1000) no bias", {{"x", randn({17, 1000}, rng)}, {"weight", randn({17, 1000}, rng)}},
            [](const std::vector<Tensor>& x, Device) { return ops::linear(x[0], x[1], Tensor()); });
}

// The fused MLP: on CUDA its GELU forward and backward come from cuBLASLt epilogues (GELU_AUX_BIAS,
// DGELU), compared with the f64 composition linear -> gelu_tanh -> linear on the CPU.
// The f32 limits (1e-5) also tell cuBLASLt's GELU from the erf form (they differ by ~1e-3).
// GPT-2 shapes (rows reduced: F = 3072 hidden), then shapes off the epilogues' 8-alignment (the
// fallback pieces) and the erf form (the composition on both sides).
TEST_F(CudaParity, mlp_gelu) {
  SK_REQUIRE_CUDA();
  OpCases cases("mlp_gelu");
  struct MlpCase {
    Shape x;
    int64_t hidden, out;
  };
  const std::vector<MlpCase> cs = {{{2, kLinearRows / 2, kC}, kHidden, kC}, {{kLinearRows, 64}, 256, 64},
                                   {{17, 24}, 40, 16}, {{3, 5, 17}, 33, 9}};
  for (const MlpCase& c : cs) {
    Rng& rng = cases.next();
    const int64_t in = c.x.back();
    cases.run("x " + shape_str(c.x) + " hidden " + std::to_string(c.hidden) + " out " + std::to_string(c.out),
              {{"x", randn(c.x, rng)},
               {"fc_w", randn({c.hidden, in}, rng, 0.0, 0.05)},
               {"fc_b", randn({c.hidden}, rng, 0.0, 0.5)},
               {"fc2_w", randn({c.out, c.hidden}, rng, 0.0, 0.05)},
               {"fc2_b", randn({c.out}, rng)}},
              [](const std::vector<Tensor>& x, Device) { return ops::mlp_gelu(x[0], x[1], x[2], x[3], x[4]); });
  }
  Rng& rng = cases.next();
  cases.run("erf form x (64, 64) hidden 256",
            {{"x", randn({64, 64}, rng)},
             {"fc_w", randn({256, 64}, rng, 0.0, 0.05)},
             {"fc_b", randn({256}, rng)},
             {"fc2_w", randn({64, 256}, rng, 0.0, 0.05)},
             {"fc2_b", randn({64}, rng)}},
            [](const std::vector<Tensor>& x, Device) {
              return ops::mlp_gelu(x[0], x[1], x[2], x[3], x[4], ops::GeluApprox::Erf);
            });
}

// ================================================================================================
// reductions

// Inputs ~ N(0.5, 1): the total is not dominated by cancellation, so its relative error measures
// the kernel's accumulation rather than the luck of the draw.
std::vector<Shape> reduction_shapes() { return {{kSmallBatch, kT, kC}, {1}, {17}, {1000, 17}, {3, 17, 1000}}; }

TEST_F(CudaParity, sum) {
  SK_REQUIRE_CUDA();
  OpCases cases("sum");
  for (const Shape& s : reduction_shapes()) {
    Rng& rng = cases.next();
    cases.run(shape_str(s), {{"x", randn(s, rng, 0.5, 1.0)}},
              [](const std::vector<Tensor>& x, Device) { return ops::sum(x[0]); });
  }
  Rng& rng = cases.next();
  cases.run("(1000, 17)^T", {{"x", randn({1000, 17}, rng, 0.5, 1.0)}},
            [](const std::vector<Tensor>& x, Device) { return ops::sum(x[0].transpose(0, 1)); });
}

TEST_F(CudaParity, mean) {
  SK_REQUIRE_CUDA();
  OpCases cases("mean");
  for (const Shape& s : reduction_shapes()) {
    Rng& rng = cases.next();
    cases.run(shape_str(s), {{"x", randn(s, rng, 0.5, 1.0)}},
              [](const std::vector<Tensor>& x, Device) { return ops::mean(x[0]); });
  }
}

TEST_F(CudaParity, sum_rows) {
  SK_REQUIRE_CUDA();
  OpCases cases("sum_rows");
  // (B, T, C) -> (C): the bias gradient of a GPT-2 linear; then odd shapes.
  const std::vector<Shape> shapes = {{kBatch, kT, kC}, {1, 1}, {1, 1000}, {1000, 1}, {17, 1000}, {3, 17, 17}};
  for (const Shape& s : shapes) {
    Rng& rng = cases.next();
    cases.run(shape_str(s), {{"x", randn(s, rng, 0.5, 1.0)}},
              [](const std::vector<Tensor>& x, Device) { return ops::sum_rows(x[0]); });
  }
}

// ================================================================================================
// views and copies (exact)

TEST_F(CudaParity, transpose_contiguous) {
  SK_REQUIRE_CUDA();
  OpCases cases("transpose_contiguous");
  // (B, T, H, D) -> (B, H, T, D): splitting attention heads.
  auto fn = [](const std::vector<Tensor>& x, Device) { return x[0].transpose(1, 2).contiguous(); };
  for (const Shape& s :
       std::vector<Shape>{{kSmallBatch, kT, 12, kHeadDim}, {1, 1, 1, 1}, {2, 17, 3, 5}, {1, 1000, 17, 1}}) {
    Rng& rng = cases.next();
    cases.run(shape_str(s) + ".transpose(1, 2)", {{"x", randn(s, rng)}}, fn, exact_match());
  }
}

TEST_F(CudaParity, slice) {
  SK_REQUIRE_CUDA();
  OpCases cases("slice");
  // The backward writes the gradient into a strided view of a zero tensor (copy_ to a strided view).
  struct SliceCase {
    Shape s;
    int64_t dim, start, end;
  };
  const std::vector<SliceCase> cs = {
      {{kSmallBatch, kT, kC}, 1, 17, 1017},  // a window of T: middle dim
      {{1024, 3 * kC}, 1, kC, 2 * kC},       // k out of a fused qkv (N, 2304)
      {{17, 17, 17}, 1, 16, 17},
      {{3, 1000, 5}, 1, 1, 1000},
      {{1, 17, 1}, 1, 0, 17},
  };
  for (const SliceCase& c : cs) {
    Rng& rng = cases.next();
    std::ostringstream label;
    label << shape_str(c.s) << ".slice(" << c.dim << ", " << c.start << ", " << c.end << ")";
    cases.run(label.str(), {{"x", randn(c.s, rng)}},
              [c](const std::vector<Tensor>& x, Device) { return x[0].slice(c.dim, c.start, c.end); },
              exact_match());
  }
}

// f32 tensor with the given bit patterns (CPU).
Tensor f32_from_bits(const std::vector<uint32_t>& bits) {
  Tensor t = Tensor::empty({static_cast<int64_t>(bits.size())}, DType::F32);
  std::memcpy(t.data_ptr(), bits.data(), bits.size() * sizeof(uint32_t));
  return t;
}

bool bf16_bits_nan(uint16_t b) { return (b & 0x7f80u) == 0x7f80u && (b & 0x007fu) != 0; }

TEST_F(CudaParity, to_dtype) {
  SK_REQUIRE_CUDA();
  const Device dev = Device::cuda(0);
  Rng rng(0x70d7e);
  // 1. f32 -> bf16 on the GPU vs sk::bf16::from_float on the host, bit for bit, over random bit
  //    patterns (every exponent, denormals, inf, NaN) plus hand-picked rounding cases.
  std::vector<uint32_t> bits = {
      0x00000000u, 0x80000000u,  // +-0
      0x3f800000u, 0xbf800000u,  // +-1
      0x3f808000u,               // tie, even below: rounds down to 0x3f80
      0x3f818000u,               // tie, odd below: rounds up to 0x3f82
      0x3f80c000u, 0x3f807fffu,  // above / below a tie
      0x7f7fffffu, 0xff7fffffu,  // +-FLT_MAX: round to +-inf
      0x7f7f7fffu,               // just below the largest tie: stays finite
      0x7f800000u, 0xff800000u,  // +-inf
      0x00000001u, 0x80000001u,  // smallest denormals: round to +-0
      0x007fffffu,               // largest denormal: rounds up to the smallest normal
      0x00408000u,               // denormal tie
      0x7fc00000u, 0x7f800001u, 0xffc00001u,  // quiet, signalling, negative NaN (only NaN-ness is checked)
  };
  for (int i = 0; i < (1 << 20); ++i) bits.push_back(static_cast<uint32_t>(rng.next_u64() >> 32));
  const Tensor x = f32_from_bits(bits);
  const Tensor y = x.to(dev).to(DType::BF16).to(Device::cpu());  // converted on the GPU
  const Tensor z = x.to(dev).to(DType::BF16).to(DType::F32).to(Device::cpu());
  ASSERT_EQ(y.dtype(), DType::BF16);
  const uint16_t* yb = y.data<uint16_t>();
  const float* xf = x.data<float>();
  const float* zf = z.data<float>();
  int64_t bad_bits = 0, bad_round_trip = 0;
  for (size_t i = 0; i < bits.size(); ++i) {
    const bool nan_in = std::isnan(xf[i]);
    const uint16_t want = sk::bf16::from_float(xf[i]);
    const bool ok = nan_in ? bf16_bits_nan(yb[i]) : yb[i] == want;
    if (!ok && bad_bits++ < 5)
      ADD_FAILURE() << "f32 bits " << hex(bits[i]) << " -> bf16 " << hex(yb[i]) << ", host rounding gives " << hex(want);
    const float rt = sk::round_to_bf16(xf[i]);
    const bool ok_rt = nan_in ? std::isnan(zf[i]) : std::memcmp(&zf[i], &rt, sizeof(float)) == 0;
    if (!ok_rt && bad_round_trip++ < 5)
      ADD_FAILURE() << "f32 bits " << hex(bits[i]) << ": f32 -> bf16 -> f32 gives " << zf[i] << ", round_to_bf16 gives "
                    << rt;
  }
  std::cout << "[parity] to_dtype f32->bf16 on " << bits.size() << " bit patterns: " << bad_bits
            << " mismatches; f32->bf16->f32: " << bad_round_trip << " mismatches" << std::endl;
  EXPECT_EQ(bad_bits, 0);
  EXPECT_EQ(bad_round_trip, 0);

  // 2. bf16 -> f32 -> bf16 is lossless for every bf16 bit pattern.
  std::vector<uint16_t> all16(1 << 16);
  for (uint32_t i = 0; i < all16.size(); ++i) all16[i] = static_cast<uint16_t>(i);
  Tensor h16 = Tensor::empty({static_cast<int64_t>(all16.size())}, DType::BF16);
  std::memcpy(h16.data_ptr(), all16.data(), all16.size() * sizeof(uint16_t));
  const Tensor back = h16.to(dev).to(DType::F32).to(DType::BF16).to(Device::cpu());
  int64_t bad16 = 0;
  for (size_t i = 0; i < all16.size(); ++i) {
    const uint16_t b = back.data<uint16_t>()[i];
    const bool ok = bf16_bits_nan(all16[i]) ? bf16_bits_nan(b) : b == all16[i];
    if (!ok && bad16++ < 5) ADD_FAILURE() << "bf16 " << hex(all16[i]) << " -> f32 -> bf16 gives " << hex(b);
  }
  std::cout << "[parity] to_dtype bf16->f32->bf16 on all 65536 patterns: " << bad16 << " mismatches" << std::endl;
  EXPECT_EQ(bad16, 0);

  // 3. Differentiable round trip on a (2048, 768) leaf: out = x.to(bf16).to(f32) equals the host
  //    rounding of x, and x.grad = R.to(bf16).to(f32) equals the host rounding of the cotangent R.
  const Shape s{kSmallBatch * kT, kC};
  const Tensor x64 = round_through(randn(s, rng, 0.0, 10.0), DType::F32);
  const Tensor r64 = round_through(randn(s, rng), DType::F32);
  auto host_round = [](const Tensor& t) {
    std::vector<double> v = t.to_vector();
    for (double& e : v) e = sk::round_to_bf16(static_cast<float>(e));
    return Tensor::from_vector(v, t.shape(), DType::F64);
  };
  Tensor xd = to_device(x64, DType::F32, dev);
  xd.set_requires_grad();
  const Tensor out = xd.to(DType::BF16).to(DType::F32);
  out.backward(to_device(r64, DType::F32, dev));
  expect_close("to_dtype f32 (2048, 768) f32->bf16->f32 forward", out, host_round(x64), kExactTol);
  expect_close("to_dtype f32 (2048, 768) f32->bf16->f32 grad x", xd.grad(), host_round(r64), kExactTol);
}

// ================================================================================================
// optimizer and clipping

struct ParamSpec {
  Shape shape;
  bool decay;
  double grad_std;  // gradient scale of this parameter (spread to exercise the second moment)
};

const std::vector<ParamSpec>& adamw_params() {
  static const std::vector<ParamSpec> specs = {
      {{kC, kHidden}, true, 1.0},  // a GPT-2 MLP weight
      {{kHidden}, false, 1e-2},    // its bias (no weight decay)
      {{17, 1000}, true, 1e-3},
      {{17}, false, 1.0},
      {{1}, true, 0.3},
  };
  return specs;
}

optim::AdamWConfig adamw_config() {
  optim::AdamWConfig cfg;
  cfg.lr = 1e-3;
  cfg.beta1 = 0.9;
  cfg.beta2 = 0.95;
  cfg.eps = 1e-8;
  cfg.weight_decay = 0.1;
  return cfg;
}

// Three AdamW steps on the CPU (f64) and on cuda:0 (f32 params, or bf16 params with an fp32 master),
// with a per-step learning rate and a grad_scale tensor; then compares parameters (masters for
// bf16), m and v with relative tolerance kAdamWRelTol.
void run_adamw(DType param_dtype) {
  const Device dev = Device::cuda(0);
  const std::string tag = std::string("adamw ") + sk::dtype_name(param_dtype) + " params";
  Rng rng(param_dtype == DType::F32 ? 0xada3f32ull : 0xada3b16ull);
  optim::AdamW ref(adamw_config()), gpu(adamw_config());
  std::vector<Tensor> p_ref, p_gpu;
  for (const ParamSpec& ps : adamw_params()) {
    auto [v, d] = round_to(randn(ps.shape, rng, 0.0, 0.02), param_dtype, &dev);  // GPT-2 init scale
    v.set_requires_grad();
    d.set_requires_grad();
    ref.add_param(v, ps.decay);
    gpu.add_param(d, ps.decay);
    p_ref.push_back(v);
    p_gpu.push_back(d);
  }
  const double lrs[3] = {1e-3, 6e-4, 3e-4};
  const double grad_scales[3] = {0.37, 1.0, 0.81};
  for (int step = 0; step < 3; ++step) {
    for (size_t i = 0; i < p_ref.size(); ++i) {
      const auto [g, g_dev] = round_to(randn(adamw_params()[i].shape, rng, 0.0, adamw_params()[i].grad_std),
                                       param_dtype, &dev);
      p_ref[i].set_grad(g);
      p_gpu[i].set_grad(g_dev);
    }
    const double gs = static_cast<float>(grad_scales[step]);  // the value the fp32 scalar holds
    ref.step(lrs[step], Tensor::full({}, gs, DType::F64));
    gpu.step(lrs[step], Tensor::full({}, gs, DType::F32, dev));
  }
  const Tol tol{kAdamWRelTol, kAdamWRelTol};
  for (size_t i = 0; i < p_ref.size(); ++i) {
    const optim::AdamW::Slot& r = ref.slots()[i];
    const optim::AdamW::Slot& g = gpu.slots()[i];
    const std::string name = tag + " " + shape_str(adamw_params()[i].shape) + " after 3 steps";
    if (param_dtype == DType::BF16) {
      ASSERT_TRUE(g.master.defined()) << name << ": no fp32 master for a bf16 parameter";
      EXPECT_EQ(g.master.dtype(), DType::F32);
      expect_close(name + " master", g.master, r.param, tol);
      // The bf16 working copy is the master rounded to bf16, bit for bit.
      const Tensor master = g.master.to(Device::cpu());
      const Tensor param = g.param.detach().to(Device::cpu());
      int64_t bad = 0;
      for (int64_t k = 0; k < param.numel(); ++k) {
        const uint16_t want = sk::bf16::from_float(master.data<float>()[k]);
        const uint16_t got = param.data<uint16_t>()[k];
        if (got != want && bad++ < 5)
          ADD_FAILURE() << name << ": element " << k << " bf16 param " << hex(got) << " != round_to_bf16(master) "
                        << hex(want);
      }
      EXPECT_EQ(bad, 0) << name << ": bf16 params that differ from round_to_bf16(master)";
    } else {
      expect_close(name + " param", g.param, r.param, tol);
    }
    expect_close(name + " m", g.m, r.m, tol);
    expect_close(name + " v", g.v, r.v, tol);
  }
}

TEST_F(CudaParity, adamw) {
  SK_REQUIRE_CUDA();
  run_adamw(DType::F32);
}

TEST_F(CudaParity, adamw_bf16_master) {
  SK_REQUIRE_CUDA();
  run_adamw(DType::BF16);
}

// Many parameters at once: AdamW::step on CUDA updates them in multi-tensor launches (up to 56 tensors
// per launch, one launch per gradient dtype), so 150 parameters of mixed dtypes (bf16 with fp32
// masters, f32) and sizes (1 value to several 8192-value chunks, lengths not multiples of 8 for the
// scalar tails) check the launch splitting, the chunk-to-tensor lookup and the per-tensor weight
// decay: two steps against the f64 CPU reference, relative tolerance kAdamWRelTol.
TEST_F(CudaParity, adamw_many_tensors) {
  SK_REQUIRE_CUDA();
  const Device dev = Device::cuda(0);
  Rng rng(0xada3a11ull);
  optim::AdamW ref(adamw_config()), gpu(adamw_config());
  std::vector<Tensor> p_ref, p_gpu;
  std::vector<DType> dts;
  for (int i = 0; i < 150; ++i) {
    const int64_t n = i % 7 == 0 ? 1 + static_cast<int64_t>(rng.below(30000)) : 1 + static_cast<int64_t>(rng.below(3000));
    const DType dt = i % 3 == 0 ? DType::F32 : DType::BF16;
    auto [v, d] = round_to(randn({n}, rng, 0.0, 0.02), dt, &dev);
    v.set_requires_grad();
    d.set_requires_grad();
    ref.add_param(v, i % 2 == 0);
    gpu.add_param(d, i % 2 == 0);
    p_ref.push_back(v);
    p_gpu.push_back(d);
    dts.push_back(dt);
  }
  for (int step = 0; step < 2; ++step) {
    for (size_t i = 0; i < p_ref.size(); ++i) {
      const auto [g, g_dev] = round_to(randn(p_ref[i].shape(), rng, 0.0, i % 5 == 0 ? 1e-3 : 1.0), dts[i], &dev);
      p_ref[i].set_grad(g);
      p_gpu[i].set_grad(g_dev);
    }
    ref.step(step == 0 ? 1e-3 : 6e-4, Tensor::full({}, 0.5, DType::F64));
    gpu.step(step == 0 ? 1e-3 : 6e-4, Tensor::full({}, 0.5, DType::F32, dev));
  }
  const Tol tol{kAdamWRelTol, kAdamWRelTol};
  for (size_t i = 0; i < p_ref.size(); ++i) {
    const optim::AdamW::Slot& r = ref.slots()[i];
    const optim::AdamW::Slot& g = gpu.slots()[i];
    const std::string name = "adamw tensor " + std::to_string(i) + " of 150 (" + sk::dtype_name(dts[i]) + ", " +
                             std::to_string(p_ref[i].numel()) + " values) after 2 steps";
    expect_close(name + " param", g.master.defined() ? g.master : g.param, r.param, tol);
    expect_close(name + " m", g.m, r.m, tol);
    expect_close(name + " v", g.v, r.v, tol);
  }
}

TEST_F(CudaParity, grad_norm_clip) {
  SK_REQUIRE_CUDA();
  const Device dev = Device::cuda(0);
  Rng rng(0x9a0c1);
  // GPT-2-sized gradients (the MLP's two weights and a bias: 4.7M values, many reduction blocks)
  // plus odd ones, magnitudes 1 and 1e-2; drawn once, rounded per dtype. A last parameter has no
  // gradient and must be skipped.
  const std::vector<Shape> shapes = {{kC, kHidden}, {kHidden}, {kHidden, kC}, {17, 1000}, {17}, {1}};
  std::vector<Tensor> grads;
  for (size_t i = 0; i < shapes.size(); ++i) grads.push_back(randn(shapes[i], rng, 0.0, i % 2 ? 1e-2 : 1.0));
  for (DType dt : {DType::F32, DType::BF16}) {
    const std::string tag = std::string("grad_norm_clip ") + sk::dtype_name(dt) + " grads";
    SCOPED_TRACE(tag);
    std::vector<Tensor> p_ref, p_gpu;
    for (size_t i = 0; i < shapes.size(); ++i) {
      Tensor r = Tensor::zeros(shapes[i], DType::F64);
      Tensor d = Tensor::zeros(shapes[i], dt, dev);
      r.set_requires_grad();
      d.set_requires_grad();
      const auto [g, g_dev] = round_to(grads[i], dt, &dev);
      r.set_grad(g);
      d.set_grad(g_dev);
      p_ref.push_back(r);
      p_gpu.push_back(d);
    }
    Tensor no_grad_ref = Tensor::zeros({5}, DType::F64), no_grad_gpu = Tensor::zeros({5}, dt, dev);
    no_grad_ref.set_requires_grad();
    no_grad_gpu.set_requires_grad();
    p_ref.push_back(no_grad_ref);
    p_gpu.push_back(no_grad_gpu);

    const double norm_ref = optim::global_grad_norm(p_ref, 1.0).norm();
    // Clipping active (max_norm = norm / 2: coefficient ~0.5) and inactive (max_norm = 2 norm: 1).
    for (double factor : {0.5, 2.0}) {
      const double max_norm = factor * norm_ref;
      const optim::GradNorm r = optim::global_grad_norm(p_ref, max_norm);
      const optim::GradNorm g = optim::global_grad_norm(p_gpu, max_norm);
      EXPECT_TRUE(g.sumsq.is_cuda() && g.coefficient.is_cuda()) << tag << ": norm and coefficient stay on the GPU";
      EXPECT_EQ(g.sumsq.dtype(), DType::F32);
      EXPECT_EQ(g.coefficient.numel(), 1);
      const double norm_err = std::abs(g.norm() - r.norm()) / r.norm();
      const double coef_ref = r.coefficient.item(), coef_gpu = g.coefficient.item();
      const double coef_err = std::abs(coef_gpu - coef_ref) / coef_ref;
      std::cout << "[parity] " << tag << " max_norm " << factor << " x norm: norm " << g.norm() << " vs " << r.norm()
                << " (rel err " << norm_err << "), coefficient " << coef_gpu << " vs " << coef_ref << " (rel err "
                << coef_err << ")" << std::endl;
      EXPECT_LE(norm_err, kGradNormRelTol) << tag;
      EXPECT_LE(coef_err, kGradNormRelTol) << tag;
      if (factor > 1) {
        EXPECT_EQ(coef_gpu, 1.0) << tag << ": no clipping below max_norm";
      }
    }
    // scale_grads_ with the active coefficient: g *= coefficient on every gradient.
    const double max_norm = 0.5 * norm_ref;
    optim::scale_grads_(p_ref, optim::global_grad_norm(p_ref, max_norm).coefficient);
    optim::scale_grads_(p_gpu, optim::global_grad_norm(p_gpu, max_norm).coefficient);
    for (size_t i = 0; i + 1 < p_ref.size(); ++i)
      expect_close(tag + " scale_grads_ " + shape_str(shapes[i]), p_gpu[i].grad(), p_ref[i].grad(),
                   dt == DType::BF16 ? kBf16Tol : kF32Tol);
    EXPECT_FALSE(p_gpu.back().grad().defined()) << tag << ": a parameter without gradient got one";
  }
}

// The norm over many gradients (the multi-tensor reduction batches 96 tensors per launch): 150
// gradients of 1..5000 values, several longer than one 16,384-value chunk, some starting 1-3
// elements past a 16-byte boundary (the scalar path), one empty, in both dtypes.
TEST_F(CudaParity, grad_norm_many_tensors) {
  SK_REQUIRE_CUDA();
  const Device dev = Device::cuda(0);
  Rng rng(77);
  for (DType dt : {DType::F32, DType::BF16}) {
    SCOPED_TRACE(sk::dtype_name(dt));
    std::vector<Tensor> p_ref, p_gpu;
    for (int i = 0; i < 150; ++i) {
      const int64_t n = i == 7 ? 0 : (i % 10 == 3 ? 40000 + i : 1 + (i * 37) % 5000), offset = i % 4;
      const auto [g, g_dev_full] = round_to(randn({n + offset}, rng, 0.0, i % 3 ? 1.0 : 1e-2), dt, &dev);
      const Tensor g_ref = make_view(g, {n}, {1}, offset).contiguous();
      const Tensor g_dev = make_view(g_dev_full, {n}, {1}, offset);  // a view: data pointer not 16-byte aligned when offset > 0
      Tensor r = Tensor::zeros({n}, DType::F64), d = Tensor::zeros({n}, dt, dev);
      r.set_requires_grad();
      d.set_requires_grad();
      r.set_grad(g_ref);
      d.set_grad(g_dev);
      p_ref.push_back(r);
      p_gpu.push_back(d);
    }
    const double ref = optim::global_grad_norm(p_ref, 1.0).norm(), got = optim::global_grad_norm(p_gpu, 1.0).norm();
    std::cout << "[parity] grad_norm_many_tensors " << sk::dtype_name(dt) << ": " << got << " vs " << ref << std::endl;
    EXPECT_LE(std::abs(got - ref) / ref, kGradNormRelTol);
  }
}

// ================================================================================================
// allocator steady state

// A small training-like forward + backward (embedding, layernorm, linear + bias, GELU, residual,
// tied head via a transposed weight, padded cross-entropy) run twice: the second run must be
// served entirely from the allocator's cache.
TEST_F(CudaParity, allocator_steady_state) {
  SK_REQUIRE_CUDA();
  const Device dev = Device::cuda(0);
  Rng rng(0xa110c);
  const int64_t V = 1000, Vp = 1024, C = 64, H = 256, B = 2, T = 32;
  auto param = [&](const Shape& s, double mean, double std) {
    Tensor p = Tensor::randn(s, rng, DType::F32, dev, mean, std);
    p.set_requires_grad();
    return p;
  };
  Tensor wte = param({Vp, C}, 0, 0.02), ln_w = param({C}, 1, 0.1), ln_b = param({C}, 0, 0.1);
  Tensor w1 = param({H, C}, 0, 0.02), b1 = param({H}, 0, 0.02), w2 = param({C, H}, 0, 0.02), b2 = param({C}, 0, 0.02);
  const std::vector<Tensor> params = {wte, ln_w, ln_b, w1, b1, w2, b2};
  const Tensor idx = Tensor::randint({B, T}, rng, V, DType::I32, dev);
  const Tensor targets = Tensor::randint({B, T}, rng, V, DType::I64, dev);

  auto step = [&]() {
    Tensor h = ops::embedding(wte, idx);
    Tensor a = ops::gelu(ops::linear(ops::layernorm(h, ln_w, ln_b), w1, b1));
    Tensor z = ops::add(h, ops::linear(a, w2, b2));
    Tensor logits = ops::matmul(z.view({B * T, C}), wte.transpose(0, 1)).view({B, T, Vp});
    ops::CrossEntropyOptions opts;
    opts.valid_vocab = V;
    Tensor loss = ops::cross_entropy(logits, targets, opts);
    loss.backward();
    const double value = loss.item();
    for (Tensor p : params) {
      EXPECT_TRUE(p.grad().defined());
      p.zero_grad();  // dropped: its block goes back to the cache
    }
    return value;
  };

  const double loss1 = step();
  const sk::cuda::MemoryStats s1 = sk::cuda::memory_stats(0);
  const double loss2 = step();
  const sk::cuda::MemoryStats s2 = sk::cuda::memory_stats(0);
  std::cout << "[parity] allocator_steady_state after run 1: " << sk::cuda::memory_report(0) << std::endl;
  std::cout << "[parity] allocator_steady_state run 1: cudaMalloc " << s1.cuda_malloc_calls << ", hits " << s1.cache_hits
            << "; run 2: cudaMalloc " << s2.cuda_malloc_calls << ", hits " << s2.cache_hits << "; losses " << loss1
            << ", " << loss2 << std::endl;
  EXPECT_TRUE(std::isfinite(loss1));
  EXPECT_EQ(loss1, loss2) << "the same forward twice gave different losses";
  EXPECT_EQ(s2.cuda_malloc_calls, s1.cuda_malloc_calls) << "the second identical step called cudaMalloc";
  EXPECT_GT(s2.cache_hits, s1.cache_hits);
  EXPECT_EQ(s2.allocated_bytes, s1.allocated_bytes) << "memory still allocated after the second step (a leak)";
}

// ================================================================================================
// error paths (last: a kernel that reads out of bounds here could break the CUDA context)

// Bad indices are reported at the next host sync: backend/deferred_checks.h.
TEST_F(CudaParity, embedding_bad_index_throws) {
  SK_REQUIRE_CUDA();
  const Device dev = Device::cuda(0);
  Rng rng(0xbad1d);
  for (DType dt : {DType::F32, DType::BF16}) {
    const Tensor table = Tensor::randn({17, 8}, rng, dt, dev);
    const std::string tag = std::string("embedding ") + sk::dtype_name(dt);
    expect_sk_error(tag + " index 17 of 17 rows (i32)",
                    [&] { ops::embedding(table, Tensor::from_ints({0, 3, 17, 1, 2}, {5}, DType::I32, dev)); sk::cuda::synchronize(); },
                    {"embedding", "index 17", "out of range"});
    expect_sk_error(tag + " index -1 (i64)",
                    [&] { ops::embedding(table, Tensor::from_ints({0, -1}, {2}, DType::I64, dev)); sk::cuda::synchronize(); },
                    {"embedding", "index -1", "out of range"});
    expect_sk_error(tag + " index 2^40 (i64)",
                    [&] { ops::embedding(table, Tensor::from_ints({int64_t(1) << 40}, {1}, DType::I64, dev)); sk::cuda::synchronize(); },
                    {"embedding", "out of range"});
    // The device is still usable and correct after the errors.
    const Tensor idx = Tensor::from_ints({16, 0, 5}, {3}, DType::I32);
    const Tensor got = ops::embedding(table, idx.to(dev));
    const Tensor want = ops::embedding(table.to(Device::cpu()).to(DType::F64), idx);
    expect_close(tag + " valid lookup after the errors", got, want, kExactTol);
  }
}

// Bad targets are reported at the next host read (here .item()): backend/deferred_checks.h.
TEST_F(CudaParity, cross_entropy_bad_target_throws) {
  SK_REQUIRE_CUDA();
  const Device dev = Device::cuda(0);
  Rng rng(0xbad7a);
  for (DType dt : {DType::F32, DType::BF16}) {
    const Tensor logits = Tensor::randn({4, 24}, rng, dt, dev);
    const std::string tag = std::string("cross_entropy ") + sk::dtype_name(dt);
    ops::CrossEntropyOptions opts;
    opts.valid_vocab = 17;
    opts.ignore_index = -100;
    auto ce = [&](const std::vector<int64_t>& t, DType tdt) {
      return ops::cross_entropy(logits, Tensor::from_ints(t, {4}, tdt, dev), opts);
    };
    expect_sk_error(tag + " target 17 in the padding (V 17, Vp 24)", [&] { ce({0, 17, 2, 3}, DType::I32).item(); },
                    {"cross_entropy", "target 17", "out of range"});
    expect_sk_error(tag + " target 24 past the row", [&] { ce({0, 1, 24, 3}, DType::I64).item(); },
                    {"cross_entropy", "target 24", "out of range"});
    expect_sk_error(tag + " target -1 (ignore_index is -100)", [&] { ce({0, 1, 2, -1}, DType::I32).item(); },
                    {"cross_entropy", "target -1", "out of range"});
    expect_sk_error(tag + " target 2^40", [&] { ce({int64_t(1) << 40, 1, 2, 3}, DType::I64).item(); },
                    {"cross_entropy", "out of range"});
    // Valid targets (one ignored) still work and match the CPU.
    const std::vector<int64_t> ok = {0, 16, -100, 5};
    const Tensor got = ce(ok, DType::I32);
    const Tensor want = ops::cross_entropy(logits.to(Device::cpu()).to(DType::F64), Tensor::from_ints(ok, {4}), opts);
    expect_close(tag + " valid targets after the errors", got, want, kF32Tol);
  }
}

}  // namespace
