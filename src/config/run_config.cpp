// RunConfig (run_config.h): the schema of every key, loading, cross-field validation.
#include "config/run_config.h"

#include <fstream>

#include "config/schema.h"
#include "util/check.h"

namespace sk::config {

namespace {

constexpr int64_t kBig = int64_t(1) << 40;

// Registers every field of `c` in a schema bound to it.
ConfigSchema schema_for(RunConfig& c) {
  ConfigSchema s;
  ModelConfig& m = c.model;
  s.add_int("model.n_layer", &m.n_layer, 1, 1024, "transformer blocks");
  s.add_int("model.n_head", &m.n_head, 1, 1024, "attention heads");
  s.add_int("model.n_embd", &m.n_embd, 1, 65536, "model width C (a multiple of n_head)");
  s.add_int("model.vocab_size", &m.vocab_size, 1, int64_t(1) << 31, "tokenizer vocabulary size");
  s.add_int("model.pad_vocab_multiple", &m.pad_vocab_multiple, 1, 4096, "pad embedding rows to a multiple of this");
  s.add_int("model.block_size", &m.block_size, 1, int64_t(1) << 24, "longest sequence the model is built for");
  s.add_bool("model.learned_positions", &m.learned_positions, "learned absolute position embeddings (GPT-2)");
  s.add_float("model.rotary_pct", &m.rotary_pct, 0.0, 1.0, "fraction of head dims with rotary embeddings (NeoX)");
  s.add_float("model.rotary_base", &m.rotary_base, 1.0, 1e9, "rotary base");
  s.add_bool("model.parallel_residual", &m.parallel_residual, "GPT-NeoX parallel attention + MLP residual");
  s.add_bool("model.tied_embeddings", &m.tied_embeddings, "tie the output head to the token embedding");
  s.add_choice("model.gelu", &m.gelu, {"tanh", "erf"}, "GELU form");
  s.add_bool("model.bias", &m.bias, "biases in linear layers and LayerNorms");
  s.add_float("model.layernorm_eps", &m.layernorm_eps, 1e-12, 1e-1, "LayerNorm epsilon");
  s.add_string("model.init_from", &m.init_from, "\"\" (random) or \"hf:DIR\": start a fresh run from a Hugging Face model (docs/IMPORT.md)");
  s.add_bool("model.activation_recompute", &m.activation_recompute, "recompute activations in backward");

  AttentionConfig& a = c.attention;
  s.add_choice("attention.kind", &a.kind, {"full", "sliding_window", "lsh", "sparsek"}, "attention kind");
  s.add_int("attention.window", &a.window, 0, kBig, "sliding window keys per query (incl. itself); sparsek: + window");
  s.add_int("attention.k", &a.k, 1, kBig, "sparsek: selected keys per query (window keys come on top)");
  s.add_choice("attention.mask_mode", &a.mask_mode, {"gate_values", "log_mask"},
               "sparsek: how m_ij enters (gate_values: p*m*v; log_mask: logit + log m)");
  s.add_float("attention.score_slope", &a.score_slope, 0.0, 1.0, "sparsek: fixed position slope c in u_j = x_j.w + b + c*j");
  s.add_bool("attention.shared_selection", &a.shared_selection, "sparsek: one selection for all heads of a layer");
  s.add_choice("attention.score_init", &a.score_init, {"recent", "normal"},
               "sparsek scorer init: recent (w = 0: selects the most recent keys) | normal (N(0, 0.02))");
  s.add_int("attention.n_hashes", &a.n_hashes, 1, 64, "lsh hash rounds");
  s.add_int("attention.n_buckets", &a.n_buckets, 0, kBig, "lsh buckets (0: 2T/chunk rounded down to a power of 2)");
  s.add_int("attention.chunk", &a.chunk, 1, kBig, "lsh chunk length");

  DataConfig& d = c.data;
  s.add_string("data.train", &d.train, "training shards (glob or manifest)");
  s.add_string("data.val", &d.val, "validation shards (glob or manifest)");
  s.add_string("data.tokenizer", &d.tokenizer, "tokenizer directory or tokenizer.json");
  s.add_int("data.seed", &d.seed, 0, kBig, "shuffle seed shared by all ranks");

  OptimizerConfig& o = c.optimizer;
  s.add_float("optimizer.lr", &o.lr, 0.0, 10.0, "peak learning rate");
  s.add_float("optimizer.beta1", &o.beta1, 0.0, 0.999999, "AdamW beta1");
  s.add_float("optimizer.beta2", &o.beta2, 0.0, 0.999999, "AdamW beta2");
  s.add_float("optimizer.eps", &o.eps, 0.0, 1.0, "AdamW epsilon");
  s.add_float("optimizer.weight_decay", &o.weight_decay, 0.0, 10.0, "decoupled weight decay");
  s.add_float("optimizer.grad_clip", &o.grad_clip, 0.0, 1e6, "global gradient norm clip (0: off)");
  s.add_bool("optimizer.decay_norms_and_biases", &o.decay_norms_and_biases, "apply weight decay to norms and biases");
  s.add_bool("optimizer.decay_embeddings", &o.decay_embeddings, "apply weight decay to embeddings");

  ScheduleConfig& sc = c.schedule;
  s.add_choice("schedule.kind", &sc.kind, {"cosine", "linear", "constant"}, "decay after warmup");
  s.add_int("schedule.warmup_steps", &sc.warmup_steps, 0, kBig, "linear warmup steps");
  s.add_float("schedule.min_lr_ratio", &sc.min_lr_ratio, 0.0, 1.0, "final lr as a fraction of the peak");

  TrainConfig& t = c.train;
  s.add_string("train.device", &t.device, "auto | cpu | cuda | cuda:N");
  s.add_choice("train.dtype", &t.dtype, {"auto", "f32", "bf16"}, "working precision");
  s.add_int("train.batch_size", &t.batch_size, 1, kBig, "sequences per rank per micro-step");
  s.add_int("train.seq_len", &t.seq_len, 1, int64_t(1) << 24, "sequence length T");
  s.add_int("train.grad_accum", &t.grad_accum, 1, 1 << 20, "micro-steps per optimizer step");
  s.add_int("train.max_steps", &t.max_steps, 1, kBig, "optimizer steps");
  s.add_int("train.seed", &t.seed, 0, kBig, "initialisation and run seed");
  s.add_int("train.max_bad_steps", &t.max_bad_steps, 1, 1 << 20, "stop after this many NaN/Inf steps in a row");
  s.add_int("train.batch_tokens", &t.batch_tokens, 0, kBig,
            "tokens per optimizer step (0: batch_size x seq_len x grad_accum); set: grad_accum is derived");
  s.add_string("train.resume", &t.resume, "none | auto (the latest checkpoint in checkpoint.dir) | a checkpoint path");

  s.add_int("eval.every", &c.eval.every, 0, kBig, "evaluate every N steps (0: off)");
  s.add_int("eval.max_batches", &c.eval.max_batches, 0, kBig, "validation batches (0: the whole split)");
  s.add_bool("eval.at_start", &c.eval.at_start, "also evaluate before the first step (step 0)");

  s.add_string("checkpoint.dir", &c.checkpoint.dir, "checkpoint directory");
  s.add_int("checkpoint.every", &c.checkpoint.every, 0, kBig, "save every N steps (0: off)");
  s.add_int("checkpoint.keep", &c.checkpoint.keep, 1, 1 << 20, "checkpoints kept");

  s.add_int("logging.every", &c.logging.every, 1, kBig, "progress line every N steps");
  s.add_string("logging.metrics_file", &c.logging.metrics_file, "JSONL metrics file (in checkpoint.dir)");
  s.add_choice("dist.reduce_dtype", &c.dist.reduce_dtype, {"f32", "bf16"}, "gradient all-reduce precision (multi-process)");
  s.add_float("dist.bucket_mb", &c.dist.bucket_mb, 0.001, 4096, "gradient all-reduce bucket size in MiB");
  s.add_float("dist.timeout_s", &c.dist.timeout_s, 1, 86400, "rendezvous and collective watchdog timeout (s)");
  s.add_int("dist.zero", &c.dist.zero, 0, 1, "1: ZeRO-1, AdamW moments and fp32 masters sharded over the ranks");
  return s;
}

}  // namespace

void RunConfig::validate() const {
  SK_CHECK(model.n_embd % model.n_head == 0, "config: model.n_embd ", model.n_embd, " is not a multiple of model.n_head ",
           model.n_head);
  SK_CHECK(!model.learned_positions || train.seq_len <= model.block_size, "config: train.seq_len ", train.seq_len,
           " exceeds model.block_size ", model.block_size, " (learned positions)");
  SK_CHECK(model.learned_positions || model.rotary_pct > 0, "config: a model needs positions: set "
           "model.learned_positions = true or model.rotary_pct > 0");
  const int64_t head_dim = model.n_embd / model.n_head;
  SK_CHECK(model.rotary_pct == 0 || int64_t(head_dim * model.rotary_pct) % 2 == 0, "config: model.rotary_pct ",
           model.rotary_pct, " of head dim ", head_dim, " gives an odd number of rotary dims");
  SK_CHECK(model.init_from.empty() || (model.init_from.rfind("hf:", 0) == 0 && model.init_from.size() > 3),
           "config: model.init_from = \"", model.init_from, "\" is not \"\" or \"hf:DIR\" (a Hugging Face model ",
           "directory; docs/IMPORT.md)");
  if (attention.kind == "sliding_window")
    SK_CHECK(attention.window >= 1, "config: attention.kind = sliding_window needs attention.window >= 1");
  if (attention.kind == "lsh") {
    SK_CHECK(attention.n_buckets == 0 || (attention.n_buckets >= 2 && attention.n_buckets % 2 == 0),
             "config: attention.n_buckets must be 0 (2T/chunk rounded down to a power of two) or even >= 2 for "
             "attention.kind = lsh, got ", attention.n_buckets);
    SK_CHECK(model.rotary_pct == 0, "config: attention.kind = lsh does not support model.rotary_pct > 0 (shared "
             "query/key); use model.learned_positions = true");
  }
  const int64_t per_micro = train.batch_size * train.seq_len;
  if (train.batch_tokens > 0) {
    SK_CHECK(train.batch_tokens % per_micro == 0, "config: train.batch_tokens ", train.batch_tokens,
             " is not divisible by train.batch_size x train.seq_len = ", train.batch_size, " x ", train.seq_len, " = ",
             per_micro);
    SK_CHECK(train.grad_accum == 1 || train.grad_accum * per_micro == train.batch_tokens, "config: train.grad_accum ",
             train.grad_accum, " contradicts train.batch_tokens ", train.batch_tokens, " (which gives grad_accum ",
             train.batch_tokens / per_micro, "); set only one of them");
  }
  SK_CHECK(train.device == "auto" || train.device == "cpu" || train.device == "cuda" || train.device.rfind("cuda:", 0) == 0,
           "config: train.device = \"", train.device, "\" is not one of: auto, cpu, cuda, cuda:N");
}

void RunConfig::resolve() {
  validate();
  if (train.batch_tokens > 0) train.grad_accum = train.batch_tokens / (train.batch_size * train.seq_len);
}

nlohmann::json RunConfig::to_json() const {
  RunConfig copy = *this;
  return schema_for(copy).to_json();
}

RunConfig load_run_config(const std::string& path, const std::vector<std::string>& overrides) {
  nlohmann::json j = nlohmann::json::object();
  if (!path.empty()) {
    std::ifstream f(path);
    SK_CHECK(f.good(), "config file ", path, " cannot be opened");
    j = nlohmann::json::parse(f, nullptr, /*allow_exceptions=*/false, /*ignore_comments=*/true);
    SK_CHECK(!j.is_discarded(), "config file ", path, " is not valid JSON");
  }
  return run_config_from_json(j, path.empty() ? "(defaults)" : path, overrides);
}

RunConfig run_config_from_json(const nlohmann::json& j, const std::string& source,
                               const std::vector<std::string>& overrides) {
  RunConfig c;
  ConfigSchema s = schema_for(c);
  s.apply_json(j, source);
  for (const std::string& o : overrides) s.apply_override(o);
  c.resolve();
  return c;
}

std::string describe_run_config() {
  RunConfig c;
  return schema_for(c).describe();
}

}  // namespace sk::config
