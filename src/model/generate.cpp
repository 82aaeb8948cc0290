// Generation and sampling (generate.h).
#include "model/generate.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "util/check.h"

namespace sk::model {

int64_t sample_token(const std::vector<double>& logits, const SamplingOptions& o, Rng& rng) {
  SK_CHECK(!logits.empty(), "sample_token: no logits");
  SK_CHECK(o.temperature >= 0 && std::isfinite(o.temperature), "sample: temperature must be >= 0, got ", o.temperature);
  SK_CHECK(o.top_k >= 0, "sample: top_k must be >= 0, got ", o.top_k);
  const int64_t V = static_cast<int64_t>(logits.size());
  // Token ids by decreasing logit, ties to the lower id.
  std::vector<int64_t> order(V);
  std::iota(order.begin(), order.end(), 0);
  const int64_t keep = o.top_k > 0 ? std::min(o.top_k, V) : V;
  auto before = [&](int64_t a, int64_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); };
  std::partial_sort(order.begin(), order.begin() + keep, order.end(), before);
  if (o.temperature == 0) return order[0];
  const double top = logits[order[0]];
  std::vector<double> w(keep);
  double total = 0;
  for (int64_t i = 0; i < keep; ++i) total += w[i] = std::exp((logits[order[i]] - top) / o.temperature);
  double u = rng.uniform() * total;
  for (int64_t i = 0; i < keep; ++i) {
    if (u < w[i]) return order[i];
    u -= w[i];
  }
  return order[keep - 1];  // u landed on the rounding slack at the end
}

std::vector<int64_t> generate(const Gpt& gpt, const std::vector<int64_t>& prompt, const GenerateOptions& o,
                              const std::function<bool(int64_t)>& on_token) {
  const config::ModelConfig& mc = gpt.config();
  SK_CHECK(!prompt.empty(), "generate: the prompt is empty (give at least one token)");
  SK_CHECK(o.max_new_tokens >= 0, "generate: max_new_tokens must be >= 0, got ", o.max_new_tokens);
  for (int64_t t : prompt)
    SK_CHECK(t >= 0 && t < mc.vocab_size, "generate: prompt token ", t, " is outside the vocabulary [0, ",
             mc.vocab_size, ")");
  const int64_t n = static_cast<int64_t>(prompt.size()), total = n + o.max_new_tokens;
  SK_CHECK(!mc.learned_positions || total <= mc.block_size, "generate: prompt (", n, " tokens) + max_new_tokens (",
           o.max_new_tokens, ") exceeds model.block_size ", mc.block_size);
  std::vector<int64_t> out;
  if (o.max_new_tokens == 0) return out;
  const SamplingOptions so{o.temperature, o.top_k};
  Rng rng(o.seed);
  KvCache cache = gpt.new_cache(1, total);
  Tensor logits = gpt.forward_step(Tensor::from_ints(prompt, {1, n}, DType::I32, gpt.device()), cache);
  while (true) {
    // The last position's logits over the real vocabulary, on the host.
    const int64_t T = logits.size(1);
    std::vector<double> row = logits.slice(1, T - 1, T).slice(2, 0, mc.vocab_size).to(Device::cpu()).to_vector();
    const int64_t tok = sample_token(row, so, rng);
    out.push_back(tok);
    if ((on_token && !on_token(tok)) || tok == o.stop_token || int64_t(out.size()) == o.max_new_tokens) break;
    logits = gpt.forward_step(Tensor::from_ints({tok}, {1, 1}, DType::I32, gpt.device()), cache);
  }
  return out;
}

}  // namespace sk::model
