// Text generation from a Gpt with the KV cache (Gpt::new_cache / forward_step): the prompt goes in
// as one step, then one token per step. Batch 1, on the model's own device and dtype.
//
//   model::GenerateOptions o;
//   o.max_new_tokens = 100; o.temperature = 0.8; o.top_k = 40; o.seed = 1;
//   std::vector<int64_t> out = model::generate(gpt, prompt_ids, o,
//                                              [&](int64_t tok) { print(tok); return true; });
//
// Sampling over the real vocabulary only (the padding logits are never drawn): temperature 0 is
// greedy (argmax, lowest id on ties); otherwise softmax(logits / temperature) restricted to the
// top_k largest logits (0: all), drawn with an sk::Rng seeded from `seed`, so the same seed, model
// and prompt give the same tokens. Learned-position models need prompt + max_new_tokens <=
// model.block_size (checked); rotary models have no such limit.
// Tests: tests/model/test_gpt_decode.cpp (greedy = argmax of the full forward, seeds, top-k).
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "model/gpt.h"

namespace sk::model {

struct SamplingOptions {
  double temperature = 1.0;  // 0: greedy
  int64_t top_k = 0;         // keep the k largest logits (0: all)
};

// The next token from logits (V) over the real vocabulary, drawing from rng unless greedy.
int64_t sample_token(const std::vector<double>& logits, const SamplingOptions& o, Rng& rng);

struct GenerateOptions {
  int64_t max_new_tokens = 64;
  double temperature = 1.0;  // 0: greedy
  int64_t top_k = 0;         // 0: all tokens
  uint64_t seed = 0;
  int64_t stop_token = -1;   // stop after producing this token (e.g. <|endoftext|>); -1: none
};

// Returns the new tokens (not the prompt; at most max_new_tokens; the stop token included when
// produced). on_token, if given, sees each new token as it is produced and stops the generation
// by returning false. prompt: token ids, at least one.
std::vector<int64_t> generate(const Gpt& gpt, const std::vector<int64_t>& prompt, const GenerateOptions& o,
                              const std::function<bool(int64_t)>& on_token = {});

}  // namespace sk::model
