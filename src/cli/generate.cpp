// `sparsek generate CHECKPOINT --prompt TEXT [--max-tokens N --temperature T --top-k K --seed S]`:
// samples a continuation of the prompt from a trained model and prints prompt + continuation.
// Sampling: logits of the real vocabulary / T, the K largest kept, softmax, one draw from a
// seeded Rng (T = 0: the argmax). Stops after N tokens or at the end-of-text token.
// The context is the last block_size tokens. This version runs the full forward pass over the
// context for every new token (correct, O(T^2) per token); the KV-cache decode step of the
// attention interface replaces it when that lands.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>

#include "autograd/node.h"
#include "cli/commands.h"
#include "data/tokenizer.h"
#include "train/checkpoint.h"
#include "util/check.h"

namespace sk::cli {

namespace {

// One token id from `logits` (n real vocabulary entries).
int64_t sample_token(const float* logits, int64_t n, double temperature, int64_t top_k, Rng& rng) {
  if (temperature <= 0) return std::max_element(logits, logits + n) - logits;
  std::vector<int64_t> ids(static_cast<size_t>(n));
  std::iota(ids.begin(), ids.end(), 0);
  const int64_t k = top_k > 0 ? std::min(top_k, n) : n;
  std::partial_sort(ids.begin(), ids.begin() + k, ids.end(), [&](int64_t a, int64_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  });
  std::vector<double> p(static_cast<size_t>(k));
  const double top = logits[ids[0]] / temperature;
  double sum = 0;
  for (int64_t i = 0; i < k; ++i) sum += p[i] = std::exp(logits[ids[i]] / temperature - top);
  double u = rng.uniform() * sum;
  for (int64_t i = 0; i < k; ++i) {
    if ((u -= p[i]) < 0) return ids[i];
  }
  return ids[k - 1];
}

}  // namespace

void run_generate(const GenerateOptions& o) {
  SK_CHECK(o.max_tokens >= 0, "generate: --max-tokens must be >= 0");
  const train::Checkpoint ck = train::Checkpoint::open(o.checkpoint);
  const config::RunConfig cfg = ck.config();
  std::string tok_path = o.tokenizer;
  if (tok_path.empty()) {
    const auto copy = ck.tokenizer_dir();
    tok_path = copy ? copy->string() : cfg.data.tokenizer;
  }
  SK_CHECK(!tok_path.empty(), "generate: the checkpoint has no tokenizer copy and data.tokenizer is empty: pass --tokenizer");
  const data::Tokenizer tok = data::Tokenizer::load(tok_path);
  const model::Gpt gpt = ck.load_model(cfg);
  const int64_t vocab = cfg.model.vocab_size, block = cfg.model.block_size;
  SK_CHECK(int64_t(tok.vocab_size()) <= vocab, "generate: tokenizer ", tok.name(), " has ",
           tok.vocab_size(), " tokens, more than the model's ", vocab);
  const std::optional<uint32_t> eot = tok.token_id("<|endoftext|>");

  std::vector<uint32_t> ids = tok.encode(o.prompt, /*allow_special=*/true);
  if (ids.empty()) {
    SK_CHECK(eot.has_value(), "generate: an empty prompt needs an end-of-text token to start from");
    ids.push_back(*eot);
  }
  spdlog::info("generate: {} (step {}), prompt of {} tokens, up to {} new, temperature {}, top-k {}, seed {}",
               ck.dir().string(), ck.step(), ids.size(), o.max_tokens, o.temperature, o.top_k, o.seed);
  std::fwrite(o.prompt.data(), 1, o.prompt.size(), stdout);
  std::fflush(stdout);
  Rng rng(o.seed);
  autograd::NoGradGuard no_grad;
  for (int64_t i = 0; i < o.max_tokens; ++i) {
    const size_t start = ids.size() > size_t(block) ? ids.size() - size_t(block) : 0;
    std::vector<int64_t> ctx(ids.begin() + static_cast<std::ptrdiff_t>(start), ids.end());
    const int64_t t = static_cast<int64_t>(ctx.size());
    const Tensor logits = gpt.forward(Tensor::from_ints(ctx, {1, t})).slice(1, t - 1, t).contiguous();  // (1, 1, Vp)
    const auto next = static_cast<uint32_t>(sample_token(logits.data<float>(), vocab, o.temperature, o.top_k, rng));
    if (eot && next == *eot) break;
    ids.push_back(next);
    const std::string_view piece = tok.token_bytes(next);
    std::fwrite(piece.data(), 1, piece.size(), stdout);
    std::fflush(stdout);
  }
  std::fputc('\n', stdout);
}

}  // namespace sk::cli
