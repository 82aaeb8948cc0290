// Long-range probes on trained models (docs/COMPARE.md, "Probes"): passkey retrieval in real text
// and synthetic associative recall. Both build token sequences deterministically from a seed and
// score the model's argmax predictions of the answer tokens (teacher-forced: the answer's earlier
// tokens are in the input), so accuracy = greedy decoding reproduces the answer exactly.
//
// Passkey (one trial at context L, distance d): key P uniform in [10000, 99999];
//   tokens = filler_a + NEEDLE(P) + filler_b + QUESTION + ANSWER(P), exactly L tokens, where
//   NEEDLE(P) = " The pass key is" + ANSWER(P) + ". Remember it." and QUESTION = " What is the pass
//   key? The pass key is", ANSWER(P) = the tokens of " P"; filler_a + filler_b is one contiguous
//   stretch of validation text at a random offset; d = (index of the first answer token) - (index of
//   the first key token in the needle). Correct when the argmax at every answer position is the
//   answer token. Distances that do not fit in L are not run (reported as such).
// Associative recall (one trial at context L): n key-value pairs with distinct keys from a key pool
//   and values drawn from a value pool; tokens = pad + for each pair i: filler_i (g tokens of
//   validation text) + [SEP, key_i, value_i]; then [SEP, key_q, value_q] for a query index q
//   uniform in [0, n). g = floor((L - 3 - 3n) / n), the pad (text) fills up to L. Correct when the
//   argmax after key_q is value_q; chance for a scorer that only knows the value pool: 1 / |values|.
//   The distance (index of the answer) - (index of value_q) is recorded and accuracy reported per
//   distance bin. (In text: ", apple 42" ... ", apple" -> " 42".)
// Token templates come from the tokenizer (text_templates) or, for a model without one (tests),
// from reserved ids at the top of the vocabulary (synthetic_templates).
// Scorers: the model (whole-sequence forward; lsh through the decode path, strictly causal), and
// for sanity checks an induction "copy" scorer (100% when the sequences are built right) and a
// random scorer (chance).
#pragma once
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "model/gpt.h"

namespace sk::data {
class Tokenizer;
}

namespace sk::compare {

struct ProbeTemplates {
  std::string source;                       // "text (<tokenizer>)" or "synthetic ids"
  // passkey
  std::vector<int32_t> needle_prefix, needle_suffix, question;
  std::function<std::vector<int32_t>(int64_t key)> key_tokens;  // ANSWER(P)
  // associative recall
  std::vector<int32_t> keys, values;
  int32_t sep = 0;
};
ProbeTemplates text_templates(const data::Tokenizer& tok);
ProbeTemplates synthetic_templates(int64_t vocab_size);  // needs vocab_size >= 24

// A probe sequence: predict its last n_answer tokens (position p predicts tokens[p + 1]).
struct ProbeSequence {
  std::vector<int32_t> tokens;
  int64_t n_answer = 1;
  int64_t distance = 0;  // as defined above
};
struct Prediction {
  std::vector<int32_t> argmax;   // per answer token
  std::vector<double> logprob;   // log p(answer token) per answer token
};
// Scores sequences of equal length.
using Scorer = std::function<std::vector<Prediction>(const std::vector<ProbeSequence>&)>;

// The model: batches of up to `batch` sequences; strictly_causal (for lsh) decodes the prompt as
// one step and the answer tokens one by one (Gpt::forward_step), else one forward.
Scorer model_scorer(const model::Gpt& gpt, int64_t batch, bool strictly_causal);
// Predicts the token that followed the longest earlier match (up to 8 tokens) of the context's end.
Scorer induction_scorer();
// Uniform draws from `pool` (seeded).
Scorer random_scorer(std::vector<int32_t> pool, uint64_t seed);

// The sequences of one probe (deterministic in seed). filler: validation text tokens (>= L needed).
std::vector<ProbeSequence> passkey_sequences(const ProbeTemplates& t, const std::vector<int32_t>& filler, int64_t L,
                                             int64_t distance, int64_t trials, uint64_t seed);
// Whether passkey distance d fits in context L (with the template's lengths).
bool passkey_fits(const ProbeTemplates& t, int64_t L, int64_t distance);
std::vector<ProbeSequence> assoc_sequences(const ProbeTemplates& t, const std::vector<int32_t>& filler, int64_t L,
                                           int64_t pairs, int64_t trials, uint64_t seed);

struct ProbeOptions {
  std::vector<int64_t> passkey_distances;
  int64_t passkey_trials = 20;
  int64_t assoc_pairs = 32, assoc_trials = 100;
  std::vector<int64_t> assoc_bins;  // distance bin edges
  uint64_t seed = 2024;
  int64_t batch = 4;                // sequences per scorer call
};
// Runs both probes at context L and returns
//   {"L", "templates", "passkey": [{"distance", "trials", "correct", "accuracy", "mean_logprob"} | {"distance", "skipped"}],
//    "assoc": {"pairs", "trials", "correct", "accuracy", "chance", "bins": [{"from", "to", "trials", "correct", "accuracy"}]}}
nlohmann::json run_probes(const Scorer& scorer, const ProbeTemplates& t, const std::vector<int32_t>& filler, int64_t L,
                          const ProbeOptions& o);

// One line for logs: "passkey d=100 0.25, d=400 skipped; assoc 0.300 (0-256 0.50, 256+ 0.20)"
// (accuracy per distance / distance bin; bins without trials left out).
std::string probe_summary(const nlohmann::json& probes);

// Validation tokens for fillers: the first `count` tokens of the shards matching `pattern`
// (consecutive shards concatenated).
std::vector<int32_t> filler_tokens(const std::string& pattern, int64_t count);

}  // namespace sk::compare
