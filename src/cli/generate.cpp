// `sparsek generate CHECKPOINT --prompt TEXT [--max-tokens N --temperature T --top-k K --seed S]`:
// samples a continuation of the prompt from a trained model with the KV cache
// (src/model/generate.h: the prompt as one step, then one token per step; temperature / top-k
// sampling from a seeded Rng, temperature 0 greedy) and prints prompt + continuation as it is
// produced. Stops after N tokens or at <|endoftext|>. A learned-position model sees at most
// model.block_size positions: when the window is full, decoding restarts from a fresh cache fed
// the last block_size / 2 tokens (the next chunk's seed is S + chunk number), so N is not limited.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdio>

#include "cli/commands.h"
#include "data/tokenizer.h"
#include "model/generate.h"
#include "train/checkpoint.h"
#include "train/trainer.h"
#include "util/check.h"

namespace sk::cli {

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
  // On the GPU when the run's train.device/train.dtype resolve there (auto: when one is present).
  const train::Placement place = train::resolve_placement(cfg.train.device, cfg.train.dtype);
  const model::Gpt gpt = ck.load_model(cfg, place.dtype, place.device);
  SK_CHECK(int64_t(tok.vocab_size()) <= cfg.model.vocab_size, "generate: tokenizer ", tok.name(), " has ",
           tok.vocab_size(), " tokens, more than the model's ", cfg.model.vocab_size);
  const std::optional<uint32_t> eot = tok.token_id("<|endoftext|>");

  std::vector<int64_t> ids;
  for (uint32_t t : tok.encode(o.prompt, /*allow_special=*/true)) ids.push_back(t);
  if (ids.empty()) {
    SK_CHECK(eot.has_value(), "generate: an empty prompt needs an end-of-text token to start from");
    ids.push_back(*eot);
  }
  const bool windowed = cfg.model.learned_positions;
  const int64_t block = cfg.model.block_size;
  if (windowed && int64_t(ids.size()) >= block) ids.erase(ids.begin(), ids.end() - (block - 1));
  spdlog::info("generate: {} (step {}), prompt of {} tokens, up to {} new, temperature {}, top-k {}, seed {}",
               ck.dir().string(), ck.step(), ids.size(), o.max_tokens, o.temperature, o.top_k, o.seed);
  std::fwrite(o.prompt.data(), 1, o.prompt.size(), stdout);
  std::fflush(stdout);

  int64_t left = o.max_tokens;
  bool stopped = false;
  for (uint64_t chunk = 0; left > 0 && !stopped; ++chunk) {
    if (windowed && int64_t(ids.size()) >= block) ids.erase(ids.begin(), ids.end() - block / 2);
    model::GenerateOptions g;
    g.max_new_tokens = windowed ? std::min(left, block - int64_t(ids.size())) : left;
    g.temperature = o.temperature;
    g.top_k = o.top_k;
    g.seed = o.seed + chunk;
    g.stop_token = eot ? int64_t(*eot) : -1;
    const std::vector<int64_t> out = model::generate(gpt, ids, g, [&](int64_t t) {
      if (eot && t == int64_t(*eot)) return false;
      const std::string_view piece = tok.token_bytes(static_cast<uint32_t>(t));
      std::fwrite(piece.data(), 1, piece.size(), stdout);
      std::fflush(stdout);
      return true;
    });
    stopped = out.empty() || (eot && out.back() == int64_t(*eot));
    ids.insert(ids.end(), out.begin(), out.end());
    left -= int64_t(out.size());
  }
  std::fputc('\n', stdout);
}

}  // namespace sk::cli
