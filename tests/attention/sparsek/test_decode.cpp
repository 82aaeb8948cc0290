// Constant-memory SparseK decoding (src/attention/sparsek/decode.cpp): token-by-token and chunked
// decoding equal the full forward (sparsek_attention_forward) for both mask modes, w in {0, 1, 3,
// >= T}, k in {1, 4, >= T}, per-head and shared scores; the KV memory stays at k + w rows per head
// over 4k, 16k and 64k generated positions while the tau state stays bounded.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>

#include "attention/sparsek/decode.h"
#include "attention/sparsek/sparsek_reference.h"
#include "util/check.h"

using namespace sk;
using namespace sk::attention::sparsek;

namespace {

// Positions [t0, t1) of a (B, H, T, D) or (B, Hu, T) tensor.
Tensor positions(const Tensor& x, int64_t t0, int64_t t1) { return x.slice(2, t0, t1).contiguous(); }

}  // namespace

TEST(SparsekDecode, token_by_token_and_chunks_equal_the_full_forward) {
  Rng rng(641);
  const int64_t B = 2, H = 3, T = 40, D = 4;
  Tensor q = Tensor::randn({B, H, T, D}, rng, DType::F64), k = Tensor::randn({B, H, T, D}, rng, DType::F64),
         v = Tensor::randn({B, H, T, D}, rng, DType::F64);
  for (int64_t Hu : {H, int64_t(1)}) {
    Tensor u = Tensor::randn({B, Hu, T}, rng, DType::F64, Device::cpu(), 0.0, 0.8);
    for (MaskMode mode : {MaskMode::GateValues, MaskMode::LogMask})
      for (int64_t w : {0, 1, 3, 45})
        for (int64_t kk : {1, 4, 45}) {
          SparsekParams p{kk, w, mode};
          SCOPED_TRACE(std::string(mask_mode_name(mode)) + " w " + std::to_string(w) + " k " + std::to_string(kk) +
                       " Hu " + std::to_string(Hu));
          const std::vector<double> want = sparsek_attention_forward(q, k, v, u, p).out.to_vector();
          for (int64_t chunk : {1, 7}) {
            SparsekDecoder dec(B, H, Hu, D, p);
            std::vector<double> got(want.size());
            for (int64_t t0 = 0; t0 < T; t0 += chunk) {
              const int64_t t1 = std::min(T, t0 + chunk);
              std::vector<double> o =
                  dec.step(positions(q, t0, t1), positions(k, t0, t1), positions(v, t0, t1), positions(u, t0, t1))
                      .to_vector();
              for (int64_t bh = 0; bh < B * H; ++bh)
                for (int64_t t = t0; t < t1; ++t)
                  for (int64_t d = 0; d < D; ++d) got[(bh * T + t) * D + d] = o[(bh * (t1 - t0) + t - t0) * D + d];
            }
            EXPECT_EQ(dec.positions(), T);
            for (size_t i = 0; i < want.size(); ++i) ASSERT_NEAR(got[i], want[i], 1e-12) << "chunk " << chunk << " at " << i;
          }
        }
  }
}

TEST(SparsekDecode, kv_memory_is_constant_in_the_generated_length) {
  // One head, D = 2: k = 16 pool slots + w = 8 ring slots. Scores like a trained scorer's: noise
  // plus the position slope c = 1e-3, so a key stays fractional for about 1/c positions.
  const int64_t D = 2, chunk = 4096;
  SparsekParams p{16, 8, MaskMode::GateValues};
  SparsekDecoder dec(1, 1, 1, D, p);
  Rng rng(642);
  const int64_t bytes0 = dec.kv_bytes();
  EXPECT_EQ(bytes0, int64_t(sizeof(double)) * 2 * (16 + 8) * D);
  int64_t max_tracked = 0;
  for (int64_t done = 0; done < 65536; done += chunk) {
    Tensor q = Tensor::randn({1, 1, chunk, D}, rng, DType::F64), k = Tensor::randn({1, 1, chunk, D}, rng, DType::F64),
           v = Tensor::randn({1, 1, chunk, D}, rng, DType::F64);
    std::vector<double> uv(chunk);
    for (int64_t t = 0; t < chunk; ++t) uv[t] = 0.3 * rng.normal() + 1e-3 * double(done + t);
    Tensor o = dec.step(q, k, v, Tensor::from_vector(uv, {1, 1, chunk}, DType::F64));
    for (double x : o.to_vector()) ASSERT_TRUE(std::isfinite(x));
    max_tracked = std::max(max_tracked, dec.max_tracked_scores());
    if (dec.positions() == 4096 || dec.positions() == 16384 || dec.positions() == 65536) {
      EXPECT_EQ(dec.kv_bytes(), bytes0) << "at " << dec.positions() << " positions";
      std::printf("[ sparsek decode ] positions %ld: KV bytes %ld, tau state %ld scores\n", long(dec.positions()),
                  long(dec.kv_bytes()), long(dec.max_tracked_scores()));
    }
  }
  EXPECT_LT(max_tracked, 2000) << "the tau state should stay near 1/c + k scores";
}

TEST(BadInput, sparsek_decoder) {
  SparsekDecoder dec(1, 2, 2, 4, {2, 0, MaskMode::GateValues});
  Tensor q = Tensor::zeros({1, 2, 1, 4}, DType::F64);
  EXPECT_THROW(dec.step(q, q, q, Tensor::zeros({1, 1, 1}, DType::F64)), Error);
  EXPECT_THROW(dec.step(q, q, Tensor::zeros({1, 2, 2, 4}, DType::F64), Tensor::zeros({1, 2, 1}, DType::F64)), Error);
  EXPECT_THROW(SparsekDecoder(1, 2, 3, 4, {2, 0, MaskMode::GateValues}), Error);
}
