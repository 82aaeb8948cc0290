// A comparison grid (`sparsek compare GRID.json`, docs/COMPARE.md): training runs that differ only
// in the attention kind and the context length T, with the same model, data, token budget, seeds
// and schedule, and a matched attention budget B (keys per query).
//
// Grid file (JSON, `//` comments allowed; every key validated, errors name the key path):
//   name, out_dir                  the grid's name and its output directory (cells, results)
//   description                    free text (ignored)
//   base_config                    optional run config file (paths relative to the working directory;
//                                  the keys the grid sets per cell are dropped from it)
//   config                         run config keys (nested JSON) applied on top of base_config
//   budget                         B, keys per query every efficient kind gets (the budget rule below)
//   seq_lens, seeds                context lengths T and seeds (train.seed = data.seed = seed)
//   tokens                         training tokens per run; max_steps = tokens / batch_tokens
//   batch_tokens                   tokens per optimizer step (the same at every T)
//   micro_batch_tokens             tokens per micro-step: train.batch_size = micro_batch_tokens / T
//   warmup_fraction, evals         warmup steps = fraction x steps; validations during training
//   val_tokens                     validation tokens per evaluation (at most; the split may be shorter)
//   checkpoints                    checkpoints per run (resume granularity)
//   eval_lengths                   extra lengths L evaluated after training where the kind allows
//   kinds[]                        {name, kind, attention: {...}, window_fraction}
//   probes                         {enabled, seed, passkey: {trials, distances}, assoc: {trials, pairs, distance_bins}}
//
// The budget rule (matched_attention): every kind but `full` gets B keys per query:
//   sliding_window  window = B
//   sparsek         window w = round(window_fraction x B) (default 0), k = B - w
//   lsh             chunk = B / (2 n_hashes) (each of the n_hashes rounds sees its chunk and the previous one)
// `full` is the unbudgeted reference. The cost model (Attention::keys_attended) checks it per cell.
#pragma once
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "config/run_config.h"

namespace sk::compare {

struct KindSpec {
  std::string name;               // cell name part and table row, e.g. "sparsek_window"
  std::string kind;               // attention.kind
  nlohmann::json attention;       // extra attention.* keys (not those the budget rule sets)
  double window_fraction = 0.0;   // sparsek only: share of the budget given to the sliding window
};

struct PasskeySpec {
  int64_t trials = 20;                // per distance
  std::vector<int64_t> distances;     // tokens from the key's first digit to the first answer token
};

struct AssocSpec {
  int64_t trials = 100;
  int64_t pairs = 32;                 // key-value pairs per context
  std::vector<int64_t> distance_bins; // bin edges (tokens) for accuracy by distance
};

struct ProbeSpec {
  bool enabled = true;
  uint64_t seed = 2024;
  PasskeySpec passkey;
  AssocSpec assoc;
};

struct Grid {
  std::string name, out_dir, source;  // source: the file it came from (for messages)
  nlohmann::json base;                // the run config (base_config + config), nested JSON
  int64_t budget = 0;
  std::vector<int64_t> seq_lens, seeds, eval_lengths;
  int64_t tokens = 0, batch_tokens = 0, micro_batch_tokens = 0;
  double warmup_fraction = 0.05;
  int64_t evals = 10, val_tokens = 1 << 18, checkpoints = 10;
  std::vector<KindSpec> kinds;
  ProbeSpec probes;
  nlohmann::json raw;                 // the grid file as read (recorded in results.json)

  int64_t steps() const { return tokens / batch_tokens; }
};

// One training run of the grid.
struct Cell {
  std::string id;           // "<kind name>_T<T>_s<seed>", the directory name under out_dir/cells
  const KindSpec* kind = nullptr;
  int64_t seq_len = 0, seed = 0;
  config::RunConfig config;  // the resolved run config (checkpoint.dir = out_dir/cells/<id>/run)
};

// Parses and validates a grid (file or JSON); throws sk::Error naming the key ("grid.json: kinds[2].kind ...").
Grid load_grid(const std::string& path);
Grid grid_from_json(const nlohmann::json& j, const std::string& source);

// The budget rule: the attention.* settings of `kind` for budget B (keys per query), as a JSON
// object of attention keys (kind included). Throws naming the key when B cannot be matched.
nlohmann::json matched_attention(const KindSpec& kind, int64_t budget, const std::string& where = "grid");

// Every cell, in run order (T, then seed, then kind: a partial grid holds whole comparisons).
std::vector<Cell> expand_cells(const Grid& g);

// "kind=sparsek,kind=full,T=1024,seed=1": the same key repeated is an alternative, different keys
// must all match. Keys: kind (the kind's name), T, seed. Throws on an unknown key.
bool cell_matches(const Cell& c, const std::string& filter);

// Mean keys per query of the cell's attention at its T, from the kind's cost model
// (Attention::keys_attended(T) / T): the budget check recorded with every cell.
double keys_per_query(const Cell& c);

// Longer-length evaluation: whether the cell's model can be evaluated at L (and why not).
struct LengthCheck {
  bool ok = false;
  std::string reason;
};
LengthCheck can_evaluate_at(const Cell& c, int64_t L);

}  // namespace sk::compare
