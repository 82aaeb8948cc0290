// RunConfig: everything a training run is configured by, one struct per JSON section
// (model, attention, data, optimizer, schedule, train, eval, checkpoint, logging). Every field's
// JSON key is its path ("model.n_layer"); ranges and allowed values live in run_config.cpp,
// registered once in the schema (config/schema.h), which validates files and --set overrides.
// Presets: configs/*.json. Tests: tests/config/test_config.cpp.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace sk::config {

struct ModelConfig {
  int64_t n_layer = 12;
  int64_t n_head = 12;
  int64_t n_embd = 768;              // C; a multiple of n_head
  int64_t vocab_size = 50257;        // tokenizer vocabulary
  int64_t pad_vocab_multiple = 128;  // the embedding/logit rows are padded up to a multiple of this
  int64_t block_size = 1024;         // longest sequence (learned positions need seq_len <= this)
  bool learned_positions = true;     // GPT-2: learned; GPT-NeoX: false with rotary_pct > 0
  double rotary_pct = 0.0;           // fraction of each head's dims that get rotary embeddings
  double rotary_base = 10000.0;
  bool parallel_residual = false;    // GPT-NeoX: x + attn(ln1 x) + mlp(ln2 x)
  bool tied_embeddings = true;       // GPT-2 ties the head to the token embedding
  std::string gelu = "tanh";         // tanh (GPT-2) | erf (GPT-NeoX)
  bool bias = true;
  double layernorm_eps = 1e-5;
  std::string init_from = "";        // "" (random init) | "hf:DIR" (import issue)
  bool activation_recompute = false;
  int64_t padded_vocab() const { return (vocab_size + pad_vocab_multiple - 1) / pad_vocab_multiple * pad_vocab_multiple; }
};

struct AttentionConfig {
  std::string kind = "full";         // full | sliding_window | lsh | sparsek
  int64_t window = 0;                // sliding_window: keys per query (incl. itself); sparsek: + window
  int64_t k = 512;                   // sparsek: selected keys per query
  std::string mask_mode = "gate_values";  // sparsek: gate_values | log_mask
  double score_slope = 1e-3;         // sparsek: fixed position slope c
  bool shared_selection = false;     // sparsek: one score per position for all heads
  std::string score_init = "recent"; // sparsek scorer init: recent (w = 0: most recent keys) | normal
  int64_t n_hashes = 2;              // lsh
  int64_t n_buckets = 0;             // lsh: 0 = 2T/chunk rounded down to a power of two
  int64_t chunk = 128;               // lsh
};

struct DataConfig {
  std::string train = "";            // shard glob or manifest, e.g. data/python-docs/python-docs_train_*.bin
  std::string val = "";
  std::string tokenizer = "data/tokenizers/gpt2";
  int64_t seed = 1234;               // shuffle seed shared by all ranks
};

struct OptimizerConfig {
  double lr = 6e-4;
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0.1;
  double grad_clip = 1.0;            // global norm; 0 disables
  bool decay_norms_and_biases = false;
  bool decay_embeddings = false;
};

struct ScheduleConfig {
  std::string kind = "cosine";       // cosine | linear | constant
  int64_t warmup_steps = 100;
  double min_lr_ratio = 0.1;         // final lr = lr * min_lr_ratio
};

struct TrainConfig {
  std::string device = "auto";       // auto | cpu | cuda | cuda:N
  std::string dtype = "auto";        // auto (bf16 on CUDA, f32 on CPU) | f32 | bf16
  int64_t batch_size = 8;            // sequences per rank per micro-step
  int64_t seq_len = 1024;            // T
  int64_t grad_accum = 1;
  int64_t max_steps = 1000;
  int64_t seed = 1337;
  int64_t max_bad_steps = 5;         // NaN/Inf guard: stop after this many skipped steps in a row
  int64_t batch_tokens = 0;          // tokens per optimizer step; > 0: grad_accum is derived from it
  std::string resume = "none";       // none | auto (latest in checkpoint.dir, if any) | PATH
};

struct EvalConfig {
  int64_t every = 100;               // steps; 0 disables
  int64_t max_batches = 20;          // 0 = the whole validation split
  bool at_start = false;             // also evaluate before the first step (recorded as step 0)
};

struct CheckpointConfig {
  std::string dir = "checkpoints";
  int64_t every = 500;               // steps; 0 disables
  int64_t keep = 3;
};

struct LoggingConfig {
  int64_t every = 10;
  std::string metrics_file = "metrics.jsonl";
};

struct DistConfig {                  // multi-process runs (docs/DISTRIBUTED.md); the world comes from the environment
  std::string reduce_dtype = "f32";  // gradient all-reduce precision: f32 | bf16
  double bucket_mb = 25;             // gradient bucket size
  double timeout_s = 300;            // collective watchdog and rendezvous timeout
  int64_t zero = 0;                  // 1: ZeRO-1 (AdamW state and fp32 masters sharded over the ranks)
};

struct RunConfig {
  ModelConfig model;
  AttentionConfig attention;
  DataConfig data;
  OptimizerConfig optimizer;
  ScheduleConfig schedule;
  TrainConfig train;
  EvalConfig eval;
  CheckpointConfig checkpoint;
  LoggingConfig logging;
  DistConfig dist;

  // Cross-field rules (n_embd divisible by n_head, seq_len within block_size for learned
  // positions, ...); throws sk::Error naming the keys.
  void validate() const;
  // Derived values: grad_accum from train.batch_tokens when that is set. load_run_config calls it.
  void resolve();
  nlohmann::json to_json() const;
};

// Loads a JSON file (or "" for the defaults), applies "a.b=value" overrides in order, validates.
RunConfig load_run_config(const std::string& path, const std::vector<std::string>& overrides = {});
// The same from a JSON object already in memory (e.g. the config saved in a checkpoint's
// state.json); `source` names it in errors.
RunConfig run_config_from_json(const nlohmann::json& j, const std::string& source,
                               const std::vector<std::string>& overrides = {});
// Every key with its type, range and doc (for `sparsek config keys` and docs/CONFIG.md).
std::string describe_run_config();

}  // namespace sk::config
