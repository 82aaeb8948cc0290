// LSH attention on CUDA (src/attention/lsh/lsh_cuda.h, kernels/attention/lsh/) against the CPU
// reference (lsh_reference.h) on fresh random inputs (normal q, v, dout; never zeros). Skipped,
// saying so, without a CUDA device (the CPU-only CI).
//  - Buckets vs lsh_hash on the same values in f32 (q rounded to bf16, then f32). SIMT kernels:
//    EXACTLY equal (the same fp32 operations in the same order: unfused multiply and add,
//    d = 0 .. D-1; first maximum). Tensor-core hash (v1: rotations split into 3 bf16 terms per
//    block; v2: rows of q and each round's rotations scaled by powers of two, R split into 2 fp16
//    terms once per call; exact products, fp32 accumulation in the MMA's order): equal except at
//    near ties, at most max(3, 1e-4 of all) differences, each within 1e-5 of the largest |q R| of
//    its row (f64); also for rows of q from 1e-4 to 3e4 and rotations scaled by 1e6 and 1e-6
//    (CudaLshHash). Mismatches are printed.
//  - Sorted order: equal to lsh_layout's stable sort of those buckets, exactly.
//  - Forward and backward vs the reference in f64 on the same bf16-rounded q, v, dout and the GPU's
//    buckets (lsh_attention_forward_buckets, so the layouts are the same by construction), at
//    T in {1, 17, 1000, 4096} x n_hashes {1, 2, 4} x chunk {32, 64, 128} (T <= chunk: the plain
//    path; 1000 and 4096 are not multiples of every chunk... 1000 of none), B, H > 1, D 64 and
//    128, q and v as strided views of a (B, T, 2, H, D) buffer; plus odd chunks (4, 7, 16 with
//    n_buckets 6, 200) and f32 inputs; bf16 cases run every chunk-kernel variant (tensor cores
//    "_mma" with the fused one-kernel backward for chunk <= 128, the first tensor-core version
//    "_mmav1" with the two-kernel backward, and SIMT "_simt", LshCudaKernels), f32 the SIMT ones.
//    Tolerances:
//      bf16: out relative L2 <= 1e-2 (the kernels accumulate in fp32; the bf16 rounding of out
//      alone is ~2^-9 ~ 2e-3 relative, and the tensor-core kernels round P, dS to bf16 for their
//      products, as the flash tests); dq, dv relative L2 <= 2e-2 (the
//      gradients are bf16-rounded, and dq sums the query-side and key-side terms, which partly
//      cancel: relative errors grow a few times over the output's, as in the flash tests);
//      f32: out, dq, dv relative L2 <= 1e-3 (fp32 sums against f64; the -1e5 self-mask value
//      has an fp32 ulp of 0.0078, docs/LSH.md's precision note).
//      lse (every entry): max |lse - lse_ref| / (1 + |lse_ref|) <= 1e-4; key scales (every
//      position) within 1e-5 relative of the f64 formula.
//  - The autograd op (one node of q, v) returns the same gradients as lsh_cuda_backward, and the
//    backward is bitwise deterministic (no atomics: two runs equal exactly; default kernels, i.e.
//    the fused tensor-core backward with its two per-key partials summed in a fixed order).
//  - Module: LshAttention with bf16 parameters on CUDA equals the CPU reference core on its own
//    q, v heads (hashed) and tracks the CPU f32 module (T <= chunk, where no hashing can flip);
//    its prefix decode on the GPU (SPARSEK_LSH_DECODE=prefix, cache on the device) equals the last
//    row of its own forward over each prefix (f32 1e-5, bf16 2e-2 relative L2); the incremental
//    decode (SPARSEK_LSH_DECODE=incremental, the default) equals that decode position by position
//    (f32 1e-5; bf16 2e-2 at all but 2% of positions), and the decode with the variable unset
//    equals the incremental one exactly.
// Outputs come from a poisoned (NaN-filled) allocator, so an unwritten element fails the test.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "attention/lsh/lsh_attention.h"
#include "attention/lsh/lsh_cuda.h"
#include "attention/lsh/lsh_reference.h"
#include "autograd/node.h"
#include "backend/cuda_device.h"
#include "tensor/random.h"
#include "testing/attention_helpers.h"
#include "testing/parity.h"
#include "testing/scoped_env.h"
#include "util/check.h"

using namespace sk;
using namespace sk::attention::lsh;

namespace {

struct LshCase {
  int64_t B, H, T, D, R, chunk, NB;  // NB 0: lsh_default_buckets(T, chunk)
  DType dtype = DType::BF16;
  LshCudaKernels kernels = LshCudaKernels::TensorCores;  // f32: SIMT
};

std::string case_name(const LshCase& c) {
  return "B" + std::to_string(c.B) + "_H" + std::to_string(c.H) + "_T" + std::to_string(c.T) + "_D" +
         std::to_string(c.D) + "_R" + std::to_string(c.R) + "_c" + std::to_string(c.chunk) + "_NB" +
         std::to_string(c.NB) + (c.dtype == DType::F32 ? "_f32" : "_bf16") +
         (c.kernels == LshCudaKernels::TensorCores     ? "_mma"
          : c.kernels == LshCudaKernels::TensorCoresV1 ? "_mmav1"
                                                       : "_simt");
}

// (B, H, T, D) view of slot `which` of a (B, T, 2, H, D) buffer.
Tensor head_view(const Tensor& qv, int64_t which) {
  const int64_t B = qv.size(0), T = qv.size(1), H = qv.size(3), D = qv.size(4);
  return make_view(qv, {B, H, T, D}, {T * 2 * H * D, D, 2 * H * D, 1}, which * H * D);
}

std::vector<int64_t> to_i64(const Tensor& t) {
  std::vector<int64_t> out;
  for (double x : t.cpu().to_vector()) out.push_back(int64_t(x));
  return out;
}

// max |got - ref| / (1 + |ref|) and where.
std::pair<double, int64_t> lse_error(const std::vector<double>& got, const std::vector<double>& ref) {
  double worst = 0;
  int64_t at = -1;
  for (size_t i = 0; i < got.size(); ++i) {
    const double e = std::isfinite(got[i]) ? std::abs(got[i] - ref[i]) / (1.0 + std::abs(ref[i])) : INFINITY;
    if (at < 0 || e > worst) worst = e, at = int64_t(i);
  }
  return {worst, at};
}

// GPU buckets (B, H, R, T) vs lsh_hash on the same f32 values of q (B, H, T, D): exactly equal
// (exact), else equal except at near ties (each difference within 1e-5 of the row's largest |q R|
// in f64; at most max(3, 1e-4 of all)). Mismatches are printed.
void check_buckets_against_cpu(const std::vector<int64_t>& buckets, const Tensor& q, const Tensor& rot,
                               const std::string& name, bool exact) {
  const Tensor q32 = q.cpu().to(DType::F32).contiguous();
  const std::vector<int64_t> cpu = lsh_hash(q32, rot);
  ASSERT_EQ(buckets.size(), cpu.size()) << name;
  const int64_t H = q.size(1), T = q.size(2), D = q.size(3), R = rot.size(2), half = rot.size(3);
  const std::vector<double> qh = q32.to_vector(), rh = rot.to_vector();
  int64_t bad = 0, not_tie = 0;
  for (size_t i = 0; i < cpu.size(); ++i) {
    if (buckets[i] == cpu[i]) continue;
    const int64_t bh = int64_t(i) / (R * T), r = (int64_t(i) / T) % R, j = int64_t(i) % T, h = bh % H;
    auto proj = [&](int64_t k) {  // [qR, -qR]_k in f64
      double y = 0;
      for (int64_t d = 0; d < D; ++d)
        y += qh[size_t((bh * T + j) * D + d)] * rh[size_t(((h * D + d) * R + r) * half + (k % half))];
      return k < half ? y : -y;
    };
    double ymax = 0;
    for (int64_t k = 0; k < half; ++k) ymax = std::max(ymax, std::abs(proj(k)));
    const double gap = std::abs(proj(cpu[i]) - proj(buckets[i]));
    const bool tie = gap <= 1e-5 * ymax;
    not_tie += tie ? 0 : 1;
    if (bad++ < 5 || !tie)
      std::cout << name << ": bucket " << i << " (bh " << bh << ", round " << r << ", pos " << j << ") GPU "
                << buckets[i] << ", CPU f32 " << cpu[i] << ", f64 gap " << gap << " (max |qR| " << ymax << ")\n";
  }
  if (exact) {
    EXPECT_EQ(bad, 0) << name << ": " << bad << " of " << cpu.size() << " buckets differ from lsh_hash";
  } else {
    EXPECT_EQ(not_tie, 0) << name << ": " << not_tie << " bucket differences are not near ties";
    EXPECT_LE(bad, std::max<int64_t>(3, int64_t(cpu.size()) / 10000)) << name << ": " << bad << " of " << cpu.size()
                                                                        << " buckets differ from lsh_hash";
  }
}

class CudaLshAttention : public ::testing::TestWithParam<LshCase> {
 protected:
  void SetUp() override { cuda::set_poison_on_alloc(true); }
  void TearDown() override { cuda::set_poison_on_alloc(false); }
};

TEST_P(CudaLshAttention, MatchesCpuReference) {
  SK_REQUIRE_CUDA();
  const LshCase c = GetParam();
  const std::string name = case_name(c);
  Rng rng(900 + c.T * 31 + c.D + c.R * 7 + c.chunk * 3 + c.NB + (c.dtype == DType::F32 ? 1 : 0));
  const Device gpu = Device::cuda(0);
  const int64_t NB = c.NB > 0 ? c.NB : lsh_default_buckets(c.T, c.chunk);
  const bool hashed = c.T > c.chunk;
  // Inputs rounded to bf16 (also in the f32 case, so both sides see the same values).
  Tensor qv = Tensor::randn({c.B, c.T, 2, c.H, c.D}, rng, DType::F32).to(DType::BF16).to(c.dtype).to(gpu);
  Tensor q = head_view(qv, 0), v = head_view(qv, 1);
  Tensor rot = lsh_random_rotations(c.H, c.D, c.R, NB, 1234 + c.T, DType::F32);
  Tensor dout = Tensor::randn({c.B, c.H, c.T, c.D}, rng, DType::F32).to(DType::BF16).to(c.dtype).to(gpu);

  LshCudaForward fwd = lsh_cuda_forward(q, v, rot, c.chunk, c.kernels);
  LshGrads grads = lsh_cuda_backward(dout, q, v, fwd);

  auto f64 = [](const Tensor& x) { return x.cpu().to(DType::F64).contiguous(); };
  Tensor rq = f64(q), rv = f64(v);
  const int64_t R = hashed ? c.R : 1, T = c.T;
  ASSERT_EQ(fwd.rounds, R) << name;

  std::vector<int64_t> buckets;
  if (hashed) {
    // Buckets: the CPU hash of the same f32 values. SIMT: exactly. Tensor cores: equal except at
    // near ties (fp32 accumulation order), at most max(3, 1e-4 of all), each a tie within 1e-5 of
    // the row's largest |q R| (checked in f64).
    buckets = to_i64(fwd.buckets);
    check_buckets_against_cpu(buckets, q, rot, name, c.kernels == LshCudaKernels::Simt);
    for (int64_t b : buckets) ASSERT_TRUE(b >= 0 && b < NB) << name << ": bucket " << b << " outside [0, " << NB << ")";
  }
  LshForward ref = lsh_attention_forward_buckets(rq, rv, buckets, c.R, NB, c.chunk);
  // Sorted order: the reference's stable sort of the same buckets.
  const std::vector<int64_t> order = to_i64(fwd.order);
  for (int64_t bh = 0; bh < c.B * c.H; ++bh) {
    const LshLayout& L = ref.layouts[size_t(bh)];
    ASSERT_EQ(L.entries(), R * T) << name;
    for (int64_t s = 0; s < R * T; ++s)
      ASSERT_EQ(order[size_t(bh * R * T + s)], L.order[size_t(s)]) << name << ": row " << bh << " sorted slot " << s;
  }
  LshGrads rg = lsh_attention_backward(f64(dout), rq, rv, ref);

  const auto out = sk::testing::compare(f64(fwd.out), ref.out);
  const auto dq = sk::testing::compare(f64(grads.dq), rg.dq);
  const auto dv = sk::testing::compare(f64(grads.dv), rg.dv);
  const auto [lse_err, lse_at] = lse_error(fwd.lse.cpu().to_vector(), ref.lse_rounds.to_vector());
  std::cout << name << " (NB " << NB << (hashed ? "" : ", plain causal") << ")\n  out " << out.str() << "\n  dq "
            << dq.str() << "\n  dv " << dv.str() << "\n  lse max rel " << lse_err << " at entry " << lse_at << "\n";
  for (const sk::testing::ParityReport* r : {&out, &dq, &dv}) EXPECT_FALSE(r->non_finite) << name << " " << r->str();
  const bool bf16 = c.dtype == DType::BF16;
  EXPECT_LE(out.rel_l2, bf16 ? 1e-2 : 1e-3) << name << " out " << out.str();
  EXPECT_LE(dq.rel_l2, bf16 ? 2e-2 : 1e-3) << name << " dq " << dq.str();
  EXPECT_LE(dv.rel_l2, bf16 ? 2e-2 : 1e-3) << name << " dv " << dv.str();
  EXPECT_LE(lse_err, 1e-4) << name << " lse worst entry " << lse_at;

  // Key scales (written by the hash v2 kernel on the tensor-core path, by the key-scale pass
  // otherwise): 1 / sqrt(mean(q^2) + 1e-6) / sqrt(D) per position, fp32 sums vs f64: 1e-5 relative.
  const std::vector<double> ks = fwd.kscale.cpu().to_vector(), qh = rq.to_vector();
  ASSERT_EQ(int64_t(ks.size()), c.B * c.H * T) << name;
  double ks_err = 0;
  for (int64_t row = 0; row < c.B * c.H * T; ++row) {
    double ms = 0;
    for (int64_t d = 0; d < c.D; ++d) ms += qh[size_t(row * c.D + d)] * qh[size_t(row * c.D + d)];
    const double want = 1.0 / std::sqrt(ms / double(c.D) + 1e-6) / std::sqrt(double(c.D));
    ks_err = std::max(ks_err, std::isfinite(ks[size_t(row)]) ? std::abs(ks[size_t(row)] - want) / want : INFINITY);
  }
  EXPECT_LE(ks_err, 1e-5) << name << " key scales";
}

std::vector<LshCase> cases() {
  std::vector<LshCase> v;
  for (int64_t T : {1, 17, 1000, 4096})
    for (int64_t R : {1, 2, 4})
      for (int64_t chunk : {32, 64, 128})
        for (int64_t D : {64, 128}) {
          if (T == 4096 && D == 128 && chunk != 128) continue;  // keep the f64 reference's time down
          const int64_t B = T == 4096 ? 1 : 2, H = 2;
          v.push_back({B, H, T, D, R, chunk, 0});  // tensor cores (fused backward)
          v.push_back({B, H, T, D, R, chunk, 0, DType::BF16, LshCudaKernels::TensorCoresV1});  // two-kernel bwd
          if (T < 4096 || chunk == 128) v.push_back({B, H, T, D, R, chunk, 0, DType::BF16, LshCudaKernels::Simt});
        }
  // Odd chunk sizes (not multiples of 16 or 32), a non-power-of-two NB, many short chunks.
  for (LshCudaKernels k : {LshCudaKernels::TensorCores, LshCudaKernels::TensorCoresV1, LshCudaKernels::Simt}) {
    v.push_back({2, 3, 17, 64, 2, 4, 0, DType::BF16, k});
    v.push_back({1, 2, 100, 64, 3, 7, 0, DType::BF16, k});
    v.push_back({2, 2, 257, 128, 2, 16, 6, DType::BF16, k});
    v.push_back({1, 1, 33, 64, 1, 32, 2, DType::BF16, k});  // two chunks: each looks back at the other
    v.push_back({1, 2, 700, 64, 2, 200, 0, DType::BF16, k});  // chunk > 128: several 64-row tiles
  }
  // f32 inputs (SIMT kernels).
  v.push_back({2, 2, 17, 64, 2, 32, 0, DType::F32, LshCudaKernels::Simt});
  v.push_back({2, 2, 1000, 64, 2, 64, 0, DType::F32, LshCudaKernels::Simt});
  v.push_back({1, 2, 1000, 128, 4, 32, 0, DType::F32, LshCudaKernels::Simt});
  return v;
}

INSTANTIATE_TEST_SUITE_P(Cases, CudaLshAttention, ::testing::ValuesIn(cases()),
                         [](const ::testing::TestParamInfo<LshCase>& i) { return case_name(i.param); });

// The differentiable op returns lsh_cuda_backward's gradients, and two backward runs are equal
// bit for bit (per-entry partial gradients, fixed summation order).
// The fp16 hash scales each round's rotations and each q row by powers of two: rows of very
// different magnitudes (1e-4 .. 3e4, beyond fp16's range unscaled) and rotations scaled by 1e6 and
// 1e-6 still give the CPU's buckets (up to near ties), as do the SIMT kernels exactly.
TEST(CudaLshHash, buckets_follow_the_cpu_hash_at_any_scale_of_q_and_rotations) {
  SK_REQUIRE_CUDA();
  const int64_t B = 2, H = 3, T = 1000, D = 64, R = 2, chunk = 64, NB = lsh_default_buckets(T, chunk);
  Rng rng(4242);
  Tensor base = Tensor::randn({B, H, T, D}, rng, DType::F32);
  std::vector<double> vals = base.to_vector();
  const double row_scale[] = {1e-4, 1.0, 3e4, 0.07};
  for (size_t i = 0; i < vals.size(); ++i) vals[i] *= row_scale[(i / size_t(D)) % 4];
  const Tensor q = Tensor::from_vector(vals, {B, H, T, D}).to(DType::BF16).to(Device::cuda(0));
  for (double rs : {1e6, 1e-6, 1.0}) {
    Tensor rot = lsh_random_rotations(H, D, R, NB, 77, DType::F32);
    std::vector<double> rv = rot.to_vector();
    for (double& x : rv) x *= rs;
    rot = Tensor::from_vector(rv, rot.shape());
    for (LshCudaKernels k : {LshCudaKernels::TensorCores, LshCudaKernels::Simt}) {
      const LshCudaLayout L = lsh_cuda_layout(q, rot, chunk, k);
      const std::string name = std::string(k == LshCudaKernels::Simt ? "simt" : "mma") + " rot x " + std::to_string(rs);
      check_buckets_against_cpu(to_i64(L.buckets), q, rot, name, k == LshCudaKernels::Simt);
    }
  }
}

TEST(CudaLshAutograd, op_gradients_equal_the_backward_and_are_deterministic) {
  SK_REQUIRE_CUDA();
  Rng rng(91);
  const Device gpu = Device::cuda(0);
  auto leaf = [&](const Shape& s) { return Tensor::randn(s, rng, DType::F32).to(DType::BF16).to(gpu).set_requires_grad(); };
  Tensor q = leaf({2, 2, 300, 64}), v = leaf({2, 2, 300, 64});
  Tensor rot = lsh_random_rotations(2, 64, 2, 8, 7, DType::F32);
  Tensor dout = Tensor::randn({2, 2, 300, 64}, rng, DType::F32).to(DType::BF16).to(gpu);
  Tensor out = lsh_attention_cuda(q, v, rot, 32);
  out.backward(dout);
  LshCudaForward f = lsh_cuda_forward(q.detach(), v.detach(), rot, 32);
  LshGrads g1 = lsh_cuda_backward(dout, q.detach(), v.detach(), f);
  LshGrads g2 = lsh_cuda_backward(dout, q.detach(), v.detach(), f);
  auto f64 = [](const Tensor& x) { return x.cpu().to(DType::F64).contiguous(); };
  EXPECT_EQ(sk::testing::compare(f64(out), f64(f.out)).max_abs, 0.0);
  EXPECT_EQ(sk::testing::compare(f64(q.grad()), f64(g1.dq)).max_abs, 0.0);
  EXPECT_EQ(sk::testing::compare(f64(v.grad()), f64(g1.dv)).max_abs, 0.0);
  EXPECT_EQ(sk::testing::compare(f64(g2.dq), f64(g1.dq)).max_abs, 0.0);
  EXPECT_EQ(sk::testing::compare(f64(g2.dv), f64(g1.dv)).max_abs, 0.0);
}

TEST(CudaLshArgs, RejectsUnsupportedInputs) {
  SK_REQUIRE_CUDA();
  Rng rng(3);
  const Device gpu = Device::cuda(0);
  Tensor q = Tensor::randn({1, 2, 80, 64}, rng, DType::F32).to(DType::BF16).to(gpu);
  Tensor rot = lsh_random_rotations(2, 64, 2, 4, 1, DType::F32);
  EXPECT_THROW(lsh_cuda_forward(q, q.to(DType::F32), rot, 32), sk::Error);                   // dtype mismatch
  EXPECT_THROW(lsh_cuda_forward(q, q, lsh_random_rotations(3, 64, 2, 4, 1, DType::F32), 32), sk::Error);  // H
  EXPECT_THROW(lsh_cuda_forward(q, q, rot, 0), sk::Error);                                   // chunk
  Tensor q32 = q.to(DType::F32);
  EXPECT_THROW(lsh_cuda_forward(q32, q32, rot, 32, LshCudaKernels::TensorCores), sk::Error);  // mma needs bf16
  EXPECT_NO_THROW(lsh_cuda_forward(q32, q32, rot, 32));                                     // f32: SIMT
  EXPECT_FALSE(lsh_attention_cuda_supported(q.cpu()));
  EXPECT_FALSE(lsh_attention_cuda_supported(Tensor::randn({1, 2, 8, 48}, rng, DType::F32, gpu)));
  EXPECT_TRUE(lsh_attention_cuda_supported(q));
}

// CPU emulation of the kernels' chunk arithmetic (runs without a GPU): for every sorted slot, the
// forward / query-side kernels' key slots (previous chunk cyclically when look-back and more than
// one chunk, then its own) equal LshLayout::key_slots, and the key-side kernel's query slots for
// each key slot (its own chunk, then the next chunk cyclically) are exactly the slots whose key
// lists contain it.
TEST(LshCudaLayout, kernel_chunk_ranges_match_the_reference_key_slots) {
  auto range = [](int64_t c, int64_t chunk, int64_t E) {
    return std::pair<int64_t, int64_t>{c * chunk, std::min(E, c * chunk + chunk)};
  };
  for (int64_t T : {1, 5, 17, 33, 100}) {
    for (int64_t R : {1, 2, 3}) {
      for (int64_t chunk : {1, 4, 7, 16, 32, 128}) {
        const bool hashed = T > chunk;
        const int64_t rounds = hashed ? R : 1, ch = hashed ? chunk : T, E = rounds * T;
        const int64_t nch = (E + ch - 1) / ch;
        std::vector<int64_t> buckets(size_t(rounds * T));
        for (size_t i = 0; i < buckets.size(); ++i) buckets[i] = int64_t((i * 7919) % 4);
        const LshLayout L = lsh_layout(buckets.data(), rounds, 4, T, chunk);
        ASSERT_EQ(L.entries(), E);
        std::vector<std::vector<int64_t>> seen_by(static_cast<size_t>(E));
        std::vector<int64_t> ref;
        for (int64_t s = 0; s < E; ++s) {
          L.key_slots(s, ref);
          for (int64_t k : ref) seen_by[size_t(k)].push_back(s);
          const int64_t c = s / ch;
          auto [ca, cb] = range(c, ch, E);
          std::pair<int64_t, int64_t> prev{0, 0};
          if (hashed && nch > 1) prev = range((c + nch - 1) % nch, ch, E);
          std::vector<int64_t> got;
          for (int64_t x = prev.first; x < prev.second; ++x) got.push_back(x);
          for (int64_t x = ca; x < cb; ++x) got.push_back(x);
          ASSERT_EQ(got, ref) << "T " << T << " R " << R << " chunk " << chunk << " slot " << s;
        }
        for (int64_t k = 0; k < E; ++k) {
          const int64_t c = k / ch;
          auto [ca, cb] = range(c, ch, E);
          std::pair<int64_t, int64_t> next{0, 0};
          if (hashed && nch > 1) next = range((c + 1) % nch, ch, E);
          std::vector<int64_t> got;
          for (int64_t x = ca; x < cb; ++x) got.push_back(x);
          for (int64_t x = next.first; x < next.second; ++x) got.push_back(x);
          std::vector<int64_t> want = seen_by[size_t(k)];
          std::sort(got.begin(), got.end());
          std::sort(want.begin(), want.end());
          ASSERT_EQ(got, want) << "T " << T << " R " << R << " chunk " << chunk << " key slot " << k;
        }
      }
    }
  }
}

attention::AttentionSpec module_spec(int64_t chunk, DType dt, Device dev) {
  attention::AttentionSpec s = sk::testing::spec_for("lsh", 0, 0.0, dt);
  s.n_embd = 128;
  s.n_head = 2;  // D 64
  s.attention.n_hashes = 2;
  s.attention.n_buckets = 0;
  s.attention.chunk = chunk;
  s.device = dev;
  return s;
}

// SPARSEK_LSH_DECODE set to `mode` (nullptr: unset, i.e. the default, incremental) for the
// object's life, then the caller's value restored. The module reads it at every decode step; the
// decode tests below select their path explicitly, whatever the default is.
struct ScopedLshDecode : sk::testing::ScopedEnv {
  explicit ScopedLshDecode(const char* mode) : ScopedEnv("SPARSEK_LSH_DECODE", mode) {}
};

// Hashed (T > chunk): the CUDA module's output equals its projection of the reference core (f64,
// on the GPU's buckets) computed from the module's own bf16 q, v heads; and its backward runs to
// finite gradients for x and every parameter.
TEST(CudaLshModule, bf16_module_uses_the_kernels_and_equals_the_reference_core) {
  SK_REQUIRE_CUDA();
  const Device gpu = Device::cuda(0);
  Rng rng(11);
  auto a = attention::make_attention(module_spec(32, DType::BF16, gpu), rng);
  auto& lsh = static_cast<attention::LshAttention&>(*a);
  for (auto& [n, t] : a->named_parameters())  // O(1) projections: the attention pattern matters
    t.copy_(Tensor::randn(t.shape(), rng, DType::F32, Device::cpu(), 0.0, 0.1).to(DType::BF16).to(gpu));
  const int64_t B = 2, T = 200;
  Tensor rot = lsh_random_rotations(2, 64, 2, 8, 5, DType::F32);
  lsh.set_rotations(rot);
  Tensor x = Tensor::randn({B, T, 128}, rng, DType::F32).to(DType::BF16).to(gpu).set_requires_grad();
  Tensor y = a->forward(x);
  Tensor q, v;
  {
    autograd::NoGradGuard ng;
    auto heads = lsh.heads(x.detach());
    q = heads.first;
    v = heads.second;
  }
  LshCudaForward f = lsh_cuda_forward(q, v, rot, 32);
  LshForward ref = lsh_attention_forward_buckets(q.cpu().to(DType::F64).contiguous(), v.cpu().to(DType::F64).contiguous(),
                                                 to_i64(f.buckets), 2, 8, 32);
  Tensor y_ref;
  {
    autograd::NoGradGuard ng;
    y_ref = lsh.output(ref.out.to(DType::BF16).to(gpu));
  }
  const auto r = sk::testing::compare(y.detach().cpu().to(DType::F64), y_ref.cpu().to(DType::F64));
  std::cout << "module (hashed) out " << r.str() << "\n";
  EXPECT_FALSE(r.non_finite) << r.str();
  EXPECT_LE(r.rel_l2, 2e-2) << r.str();
  Tensor g = Tensor::randn(y.shape(), rng, DType::F32).to(DType::BF16).to(gpu);
  y.backward(g);
  ASSERT_TRUE(x.grad().defined());
  for (double e : x.grad().cpu().to_vector()) ASSERT_TRUE(std::isfinite(e)) << "x.grad";
  for (auto& [n, t] : a->named_parameters()) {
    ASSERT_TRUE(t.grad().defined()) << n;
    for (double e : t.grad().cpu().to_vector()) ASSERT_TRUE(std::isfinite(e)) << n;
  }
}

// Plain path (T <= chunk, no hashing): the bf16 CUDA module tracks the CPU f32 module with the
// same (bf16-valued) weights, forward and the gradients of x and every weight.
TEST(CudaLshModule, bf16_module_tracks_the_cpu_module_on_the_plain_path) {
  SK_REQUIRE_CUDA();
  const Device gpu = Device::cuda(0);
  Rng rng(12);
  auto cpu_mod = attention::make_attention(module_spec(128, DType::F32, Device::cpu()), rng);
  auto gpu_mod = attention::make_attention(module_spec(128, DType::BF16, gpu), rng);
  auto pc = cpu_mod->named_parameters(), pg = gpu_mod->named_parameters();
  ASSERT_EQ(pc.size(), pg.size());
  for (size_t i = 0; i < pc.size(); ++i) {
    Tensor w = Tensor::randn(pc[i].second.shape(), rng, DType::F32, Device::cpu(), 0.0, 0.1).to(DType::BF16);
    pc[i].second.copy_(w.to(DType::F32));
    pg[i].second.copy_(w.to(gpu));
  }
  const int64_t B = 2, T = 100;
  Tensor x0 = Tensor::randn({B, T, 128}, rng, DType::F32).to(DType::BF16);
  Tensor xc = x0.to(DType::F32).set_requires_grad(), xg = x0.to(gpu).set_requires_grad();
  Tensor yc = cpu_mod->forward(xc), yg = gpu_mod->forward(xg);
  Tensor g0 = Tensor::randn(yc.shape(), rng, DType::F32).to(DType::BF16);
  yc.backward(g0.to(DType::F32));
  yg.backward(g0.to(gpu));
  auto f64 = [](const Tensor& t) { return t.cpu().to(DType::F64).contiguous(); };
  const auto out = sk::testing::compare(f64(yg), f64(yc));
  const auto gx = sk::testing::compare(f64(xg.grad()), f64(xc.grad()));
  std::cout << "module (plain) out " << out.str() << "\n  dx " << gx.str() << "\n";
  EXPECT_LE(out.rel_l2, 2e-2) << out.str();
  EXPECT_LE(gx.rel_l2, 3e-2) << gx.str();
  for (size_t i = 0; i < pc.size(); ++i) {
    const auto gw = sk::testing::compare(f64(pg[i].second.grad()), f64(pc[i].second.grad()));
    std::cout << "  d" << pc[i].first << " " << gw.str() << "\n";
    EXPECT_LE(gw.rel_l2, 3e-2) << pc[i].first << " " << gw.str();
  }
}

// The prefix decode on the GPU (SPARSEK_LSH_DECODE=prefix, set here; the cache on the device, each
// step a CUDA forward over the prefix): every position's output equals the last row of the
// module's own forward over the prefix, hashed (T > chunk, n_buckets growing with the prefix) and
// in steps of several tokens; f32 (SIMT kernels, the same arithmetic: 1e-5) and bf16 (tensor cores;
// the projections of one token and of a prefix may round differently: 2e-2 relative).
TEST(CudaLshModule, gpu_decode_equals_last_position_of_the_prefix_forward) {
  SK_REQUIRE_CUDA();
  const ScopedLshDecode prefix_decode("prefix");
  const Device gpu = Device::cuda(0);
  for (DType dt : {DType::F32, DType::BF16}) {
    SCOPED_TRACE(dtype_name(dt));
    Rng rng(21);
    auto a = attention::make_attention(module_spec(16, dt, gpu), rng);
    for (auto& [n, t] : a->named_parameters())
      t.copy_(Tensor::randn(t.shape(), rng, DType::F32, Device::cpu(), 0.0, 0.1).to(dt).to(gpu));
    a->set_step(-1);
    const int64_t B = 2, T = 70;
    Tensor x = Tensor::randn({B, T, 128}, rng, DType::F32).to(dt).to(gpu);
    autograd::NoGradGuard ng;
    auto cache = a->new_cache(B, T);
    int64_t t = 0;
    for (int64_t n : {1, 5, 1, 17, 14, 1, 31}) {
      Tensor y = a->forward_step(x.slice(1, t, t + n), *cache);
      ASSERT_TRUE(y.is_cuda());
      for (int64_t i = 0; i < n; ++i) {
        const int64_t p = t + i;
        Tensor full = a->forward(x.slice(1, 0, p + 1).contiguous());
        const auto r = sk::testing::compare(y.slice(1, i, i + 1).cpu().to(DType::F64).contiguous(),
                                            full.slice(1, p, p + 1).cpu().to(DType::F64).contiguous());
        EXPECT_LE(r.rel_l2, dt == DType::F32 ? 1e-5 : 2e-2) << "position " << p << " " << r.str();
      }
      t += n;
    }
    EXPECT_EQ(cache->positions(), T);
  }
}

// The incremental decode (SPARSEK_LSH_DECODE=incremental, the default: the new position alone
// hashed and inserted into cached per-round orders; lsh_cuda_decode_step) against the prefix decode
// above (SPARSEK_LSH_DECODE=prefix), each selected explicitly, on
// the same module and inputs, position by position: default n_buckets (the caches are rebuilt at
// L = 17, 32, 64, 128 as NB grows) and a fixed n_buckets (one rebuild), steps of 1 and of several
// tokens. f32: relative L2 <= 1e-5 at every position (both SIMT; fp32 summation order differs).
// bf16: <= 2e-2 at all but 2% of the positions (the prefix decode hashes on tensor cores, the
// incremental one in SIMT fp32: a near-tie bucket can differ, which changes that position's keys).
// With the variable unset the decode is the incremental one: equal to it exactly (no atomics).
TEST(CudaLshModule, incremental_decode_equals_the_prefix_decode) {
  SK_REQUIRE_CUDA();
  const Device gpu = Device::cuda(0);
  for (int64_t nb : {int64_t(0), int64_t(8)})
    for (DType dt : {DType::F32, DType::BF16}) {
      SCOPED_TRACE(std::string(dtype_name(dt)) + " n_buckets " + std::to_string(nb));
      Rng rng(31);
      attention::AttentionSpec spec = module_spec(16, dt, gpu);
      spec.attention.n_buckets = nb;
      auto a = attention::make_attention(spec, rng);
      for (auto& [n, t] : a->named_parameters())
        t.copy_(Tensor::randn(t.shape(), rng, DType::F32, Device::cpu(), 0.0, 0.1).to(dt).to(gpu));
      a->set_step(-1);
      const int64_t B = 2, T = 150;
      Tensor x = Tensor::randn({B, T, 128}, rng, DType::F32).to(dt).to(gpu);
      autograd::NoGradGuard ng;
      auto decode = [&](const char* mode) {
        const ScopedLshDecode env(mode);
        auto cache = a->new_cache(B, T);
        std::vector<std::vector<double>> rows;  // per position: its (B, C) outputs
        int64_t t = 0;
        for (int64_t n : {1, 15, 1, 1, 3, 20, 1, 40, 68}) {
          const Tensor y = a->forward_step(x.slice(1, t, t + n), *cache).cpu().to(DType::F64);
          for (int64_t i = 0; i < n; ++i) rows.push_back(y.slice(1, i, i + 1).contiguous().to_vector());
          t += n;
        }
        EXPECT_EQ(t, T);
        return rows;
      };
      const auto inc = decode("incremental"), pre = decode("prefix"), dflt = decode(nullptr);
      EXPECT_TRUE(dflt == inc) << "the default decode (SPARSEK_LSH_DECODE unset) is not the incremental one";
      int64_t off = 0;
      double worst = 0;
      for (int64_t p = 0; p < T; ++p) {
        double num = 0, den = 0;
        bool finite = true;
        for (size_t e = 0; e < pre[size_t(p)].size(); ++e) {
          const double d = inc[size_t(p)][e] - pre[size_t(p)][e];
          finite = finite && std::isfinite(inc[size_t(p)][e]);
          num += d * d;
          den += pre[size_t(p)][e] * pre[size_t(p)][e];
        }
        const double rel = std::sqrt(num / std::max(den, 1e-300));
        worst = std::max(worst, rel);
        if (!finite || rel > (dt == DType::F32 ? 1e-5 : 2e-2)) {
          ++off;
          std::cout << "position " << p << " relative L2 " << rel << (finite ? "" : " (non-finite)") << "\n";
        }
      }
      std::cout << "incremental vs prefix decode: worst relative L2 " << worst << ", " << off << " positions over\n";
      if (dt == DType::F32) EXPECT_EQ(off, 0);
      else EXPECT_LE(off, T / 50);
    }
}

}  // namespace
