// The subcommands of build/sparsek. Options are plain structs filled by the CLI11 parser in
// src/cli/main.cpp (the only file that includes CLI11); each run_* lives in src/cli/<name>.cpp.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace sk::cli {

struct DemoOptions {
  std::string device = "auto";  // auto | cpu | cuda | cuda:N
  int steps = 300;
  int batch = 64;               // positions per step
  int vocab = 64;
  int channels = 64;
  uint64_t seed = 1234;
};
void run_demo(const DemoOptions& o);

void run_info();

struct BenchOpsOptions {
  std::string out = "bench_ops.json";
  int iters = 50;   // timed runs per case (median reported)
  int warmup = 3;
};
void run_bench_ops(const BenchOpsOptions& o);

struct BenchAttentionOptions {
  std::string out = "bench_attention.json";
  int64_t tokens = 65536;  // tokens per batch: B = tokens / T
  int64_t t_min = 1024, t_max = 32768;
  int64_t window = 1024;   // the sliding-window case
  int iters = 20;
  std::vector<int64_t> head_dims{64, 128};  // flash cases: 768 / D heads of each
  std::vector<std::string> kinds{"full", "sliding_window"};  // flash cases to time
  int64_t rest_ms = 500;                                      // idle before each case
  // SparseK cases (12 heads x 64, T from sparsek_t_min to t_max): every k x every window.
  std::vector<int64_t> sparsek_k{256, 512, 1024};
  std::vector<int64_t> sparsek_window{0, 512};
  int64_t sparsek_t_min = 4096;
  bool sparsek_only = false;  // skip the flash (full / sliding-window) cases
  bool no_sparsek = false;    // skip the SparseK cases
};
void run_bench_attention(const BenchAttentionOptions& o);

struct BenchLshOptions {
  std::string out = "bench_lsh.json";
  int64_t tokens = 65536;             // tokens per batch: B = tokens / T
  int64_t t_min = 4096, t_max = 65536;
  int64_t heads = 12, head_dim = 64;
  int64_t n_hashes = 2, chunk = 128;  // n_buckets: lsh_default_buckets(T, chunk)
  std::string kernels = "auto";       // auto, simt, mma, mma_v1 (attention::lsh::LshCudaKernels)
  int iters = 20;
};
void run_bench_lsh(const BenchLshOptions& o);

struct BenchTrainOptions {
  std::string config = "configs/gpt2-124m.json";
  std::vector<std::string> overrides;  // "a.b=value"
  int64_t batch = 0, seq_len = 0;      // 0: from the config
  int steps = 30, warmup = 10;  // as scripts/bench/train_peer.py, so the final losses compare
  std::string dtype = "bf16";    // parameter / activation dtype: bf16 (fp32 AdamW masters) or f32
  std::string out = "bench_train.json";
  // Diagnosis (slow, off by default): before each listed step, the GPU model's loss and every
  // parameter gradient on the first diagnose_batch sequences against an f32 CPU copy of its weights.
  std::vector<int> diagnose_steps;
  int64_t diagnose_batch = 1;
  std::vector<int> batch_split_steps;  // full-batch gradient vs the mean of one-sequence gradients
  std::vector<int> param_norm_steps;  // steps whose per-parameter gradient norms are stored
  uint64_t seed = 1234;               // initialisation and tokens
  // Writes the initial weights as a transformers GPT-2 directory plus DIR/tokens.bin (inputs then
  // targets, int32 (B, T) each), so the peer can start from the same point (--init-from).
  std::string dump_init;
};
void run_bench_train(const BenchTrainOptions& o);

struct BenchTokenizerOptions {
  std::string tokenizer = "data/tokenizers/gpt2";
  std::string sample = "data/corpora/python-docs-sample";  // directory with MANIFEST.sha256
  std::string out = "bench_tokenizer.json";
};
void run_bench_tokenizer(const BenchTokenizerOptions& o);

struct PrepareOptions {
  std::string tokenizer;              // encoder.json + vocab.bpe directory, or a tokenizer.json
  std::string out;                    // output directory
  std::string name;                   // shard name prefix: NAME_val_000000.bin, NAME_train_...
  std::vector<std::string> inputs;    // text files, directories, JSONL files
  std::vector<std::string> globs;     // include patterns for files inside directories
  std::string format = "auto";        // auto | text | jsonl
  std::string jsonl_field = "text";
  int threads = 0;                    // 0 = hardware concurrency
  double val_fraction = 0.005;
  uint64_t seed = 1337;               // split seed
  int64_t shard_tokens = 100000000;
  bool no_progress = false;
  std::string command_line;           // argv, recorded in the manifest
};
void run_prepare(const PrepareOptions& o);

struct ConfigShowOptions {
  std::string config;                  // JSON file ("" = defaults)
  std::vector<std::string> overrides;  // "a.b=value"
};
void run_config_show(const ConfigShowOptions& o);
void run_config_keys();
void run_train(const ConfigShowOptions& o);  // same options: a config file and --set overrides

struct LaunchCliOptions {
  int nproc = 1;
  std::string config;
  std::vector<std::string> overrides;  // passed to every rank's `sparsek train` as --set
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
};
void run_launch(const LaunchCliOptions& o);  // exits with the failing rank's status

struct EvalOptions {
  std::string target;                  // a run config JSON (its latest checkpoint), a step or run directory
  std::vector<std::string> overrides;  // --set a.b=value, applied to the config
  std::string split = "val";           // val | train
  std::vector<std::string> files;      // token shard files or globs, instead of the split
  int64_t max_batches = -1;            // -1: the config's eval.max_batches; 0: all
  bool causal = false;                 // strictly causal token-by-token evaluation (train::evaluate_causal)
};
void run_eval(const EvalOptions& o);

struct GenerateOptions {
  std::string checkpoint;   // a step directory or a run directory (its latest checkpoint)
  std::string prompt;
  int64_t max_tokens = 200;
  double temperature = 0.8;  // 0: greedy
  int64_t top_k = 40;        // 0: the whole vocabulary
  uint64_t seed = 1337;
  std::string tokenizer;     // "": the checkpoint's copy, else the config's data.tokenizer
};
void run_generate(const GenerateOptions& o);

}  // namespace sk::cli

namespace sk::cli {

struct HfImportOptions {
  std::string hf_dir, out_dir;
  int64_t pad_vocab_multiple = 128;
};
void run_import(const HfImportOptions& o);

struct HfExportOptions {
  std::string checkpoint, hf_dir;
};
void run_export(const HfExportOptions& o);

struct LogitsOptions {
  std::string checkpoint;
  std::vector<int64_t> ids;
  std::string device = "cpu";  // auto | cpu | cuda | cuda:N
  std::string dtype = "f32";   // auto | f32 | bf16
  std::string out;             // "": stdout
};
void run_logits(const LogitsOptions& o);

}  // namespace sk::cli

namespace sk::cli {

struct CompareOptions {
  std::string grid;                    // grid JSON (docs/COMPARE.md)
  std::string only, skip;              // cell filters: kind=NAME,T=N,seed=S
  std::string shard = "0/1";           // I/N: cells with index % N == I
  double max_minutes = 0;              // 0: no deadline
  std::vector<std::string> overrides;  // --set for every cell's run config
  bool no_probes = false;
  bool keep_records = false;
  bool list = false;                   // print the cells and their status, run nothing
  bool report_only = false;            // rewrite results.json / results.md only
};
void run_compare(const CompareOptions& o);

struct ProbeOptionsCli {
  std::string checkpoint;              // step or run directory
  int64_t length = 0;                  // context L (0: the run's train.seq_len)
  std::vector<int64_t> distances;      // passkey distances
  int64_t trials = 20, assoc_trials = 100, assoc_pairs = 32;
  uint64_t seed = 2024;
  std::vector<std::string> overrides;
  std::string out;                     // JSON file ("": stdout)
};
void run_probe(const ProbeOptionsCli& o);

}  // namespace sk::cli
