// The SparseK scoring network (scorer.h): linear + transpose + the fixed position slope.
#include "attention/sparsek/scorer.h"

#include <vector>

#include "ops/ops.h"
#include "util/check.h"

namespace sk::attention::sparsek {

ScoreInit parse_score_init(const std::string& name) {
  if (name == "recent") return ScoreInit::Recent;
  if (name == "normal") return ScoreInit::Normal;
  SK_FAIL("attention.score_init = \"", name, "\" is not one of: recent, normal");
}

SparsekScorer SparsekScorer::create(int64_t n_embd, int64_t score_heads, double slope, ScoreInit init, DType dtype,
                                    Device device, Rng& rng) {
  SK_CHECK(n_embd >= 1 && score_heads >= 1, "sparsek scorer: n_embd ", n_embd, " and score heads ", score_heads,
           " must be >= 1");
  SK_CHECK(slope >= 0, "sparsek scorer: attention.score_slope must be >= 0, got ", slope);
  SparsekScorer s;
  s.weight = init == ScoreInit::Normal ? Tensor::randn({score_heads, n_embd}, rng, dtype, device, 0.0, 0.02)
                                       : Tensor::zeros({score_heads, n_embd}, dtype, device);
  s.bias = Tensor::zeros({score_heads}, dtype, device);
  s.weight.set_requires_grad(true);
  s.bias.set_requires_grad(true);
  s.slope = slope;
  return s;
}

Tensor SparsekScorer::forward(const Tensor& x, int64_t pos_offset) const {
  SK_CHECK(x.ndim() == 3 && x.size(2) == weight.size(1), "sparsek scorer: x must be (B, T, C) with C = ",
           weight.size(1), ", got ", shape_str(x.shape()));
  const int64_t B = x.size(0), T = x.size(1), Hu = weight.size(0);
  Tensor u = ops::linear(x, weight, bias).transpose(1, 2).contiguous();  // (B, Hu, T)
  std::vector<double> pos(size_t(B * Hu * T));
  for (int64_t r = 0; r < B * Hu; ++r)
    for (int64_t j = 0; j < T; ++j) pos[r * T + j] = slope * double(pos_offset + j);
  return ops::add(u, Tensor::from_vector(pos, {B, Hu, T}, u.dtype(), u.device()));
}

}  // namespace sk::attention::sparsek
