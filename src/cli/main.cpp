// build/sparsek: the command-line entry point and the only file that parses options (CLI11).
//   demo         train a tiny model on synthetic data (CPU, or the GPU when there is one)
//   info         build and device information
//   bench ops    time LayerNorm, GELU, fused cross-entropy, AdamW against PyTorch (docs/bench/)
//   bench attention  time the fused attention kernels (peers: scripts/bench/bench_attention.sh)
//   bench lsh        time the LSH attention kernels (peers: scripts/bench/bench_lsh.sh)
//   bench train      training tokens/s on the GPU (peer: scripts/bench/train_peer.py)
//   bench tokenizer  single-thread tokenizer throughput (peer: scripts/bench/tokenizer_peer.py)
//   launch       N local ranks of `sparsek train` (src/dist/launcher.h)
//   train        the training loop from a run config (src/train/trainer.h)
//   compare      a grid of runs over attention kinds and context lengths (src/compare/, docs/COMPARE.md)
//   probe        passkey and associative-recall probes of a checkpoint (src/compare/probes.h)
//   eval         loss and perplexity of a checkpoint on a split or shard files
//   generate     sample text from a checkpoint
//   config show|keys  the resolved run config / every key (src/config/run_config.h)
//   prepare      text files / directories / JSONL -> token shards + manifest (src/data/prepare.h)
//   import|export|logits  Hugging Face GPT-NeoX / GPT-2 interchange (src/cli/hf.cpp, docs/IMPORT.md)
// Errors from sparsek (sk::Error) print one line and exit with status 2.
#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include "cli/commands.h"
#include "util/check.h"

int main(int argc, char** argv) {
  using namespace sk::cli;
  CLI::App app{"sparsek: small decoder LMs with full, sliding-window, LSH and SparseK attention"};
  app.require_subcommand(1);

  DemoOptions demo;
  auto* demo_cmd = app.add_subcommand("demo", "Train a tiny model on synthetic data (CPU, or the GPU when present)");
  demo_cmd->add_option("--device", demo.device, "auto, cpu, cuda or cuda:N")->capture_default_str();
  demo_cmd->add_option("--steps", demo.steps, "training steps")->capture_default_str()->check(CLI::PositiveNumber);
  demo_cmd->add_option("--batch", demo.batch, "positions per step")->capture_default_str()->check(CLI::PositiveNumber);
  demo_cmd->add_option("--seed", demo.seed, "random seed")->capture_default_str();
  demo_cmd->callback([&] { run_demo(demo); });

  app.add_subcommand("info", "Show build and device information")->callback([] { run_info(); });

  auto* bench = app.add_subcommand("bench", "Benchmarks");
  bench->require_subcommand(1);
  BenchOpsOptions bench_ops;
  auto* ops_cmd = bench->add_subcommand("ops", "Time LayerNorm, GELU, fused cross-entropy and AdamW on the GPU");
  ops_cmd->add_option("--out", bench_ops.out, "JSON output file")->capture_default_str();
  ops_cmd->add_option("--iters", bench_ops.iters, "timed runs per case (median reported)")->capture_default_str()
      ->check(CLI::PositiveNumber);
  ops_cmd->callback([&] { run_bench_ops(bench_ops); });
  BenchAttentionOptions bench_attn;
  auto* attn_cmd = bench->add_subcommand("attention", "Time the fused CUDA attention (full, sliding window, SparseK)");
  attn_cmd->add_option("--out", bench_attn.out, "JSON output file")->capture_default_str();
  attn_cmd->add_option("--tokens", bench_attn.tokens, "tokens per batch (B = tokens / T)")->capture_default_str();
  attn_cmd->add_option("--t-min", bench_attn.t_min, "shortest sequence")->capture_default_str();
  attn_cmd->add_option("--t-max", bench_attn.t_max, "longest sequence (powers of two from --t-min)")->capture_default_str();
  attn_cmd->add_option("--window", bench_attn.window, "sliding-window size of the windowed case")->capture_default_str();
  attn_cmd->add_option("--iters", bench_attn.iters, "timed runs per case (median reported)")->capture_default_str();
  attn_cmd->add_option("--sparsek-k", bench_attn.sparsek_k, "SparseK budgets k to time (e.g. 256,512)")
      ->delimiter(',')
      ->capture_default_str();
  attn_cmd->add_option("--head-dims", bench_attn.head_dims, "head dims of the full / sliding-window cases (64,128)")
      ->delimiter(',')
      ->check(CLI::IsMember({64, 128}))
      ->capture_default_str();
  attn_cmd->add_option("--rest-ms", bench_attn.rest_ms, "idle time before each case (the power limiter settles)")
      ->check(CLI::Range(int64_t{0}, int64_t{60000}))
      ->capture_default_str();
  attn_cmd->add_option("--kinds", bench_attn.kinds, "flash cases to time (full,sliding_window)")
      ->delimiter(',')
      ->check(CLI::IsMember({"full", "sliding_window"}))
      ->capture_default_str();
  attn_cmd->add_option("--sparsek-window", bench_attn.sparsek_window, "SparseK windows w to time (0: pure SparseK; e.g. 0,512)")
      ->delimiter(',')
      ->capture_default_str();
  attn_cmd->add_option("--sparsek-t-min", bench_attn.sparsek_t_min, "shortest sequence of the SparseK cases")
      ->capture_default_str();
  attn_cmd->add_flag("--sparsek-only", bench_attn.sparsek_only, "time only the SparseK cases");
  attn_cmd->add_flag("--no-sparsek", bench_attn.no_sparsek, "time only the flash cases");
  attn_cmd->callback([&] { run_bench_attention(bench_attn); });
  BenchLshOptions bench_lsh;
  auto* lsh_cmd = bench->add_subcommand("lsh", "Time the LSH attention kernels (fwd, fwd+bwd; peers: scripts/bench/bench_lsh.sh)");
  lsh_cmd->add_option("--out", bench_lsh.out, "JSON output file")->capture_default_str();
  lsh_cmd->add_option("--tokens", bench_lsh.tokens, "tokens per batch (B = tokens / T)")->capture_default_str();
  lsh_cmd->add_option("--t-min", bench_lsh.t_min, "shortest sequence")->capture_default_str();
  lsh_cmd->add_option("--t-max", bench_lsh.t_max, "longest sequence (powers of two from --t-min)")->capture_default_str();
  lsh_cmd->add_option("--heads", bench_lsh.heads, "heads")->capture_default_str();
  lsh_cmd->add_option("--head-dim", bench_lsh.head_dim, "head dim (64 or 128)")->capture_default_str();
  lsh_cmd->add_option("--n-hashes", bench_lsh.n_hashes, "hash rounds")->capture_default_str();
  lsh_cmd->add_option("--chunk", bench_lsh.chunk, "entries per chunk")->capture_default_str();
  lsh_cmd->add_option("--kernels", bench_lsh.kernels, "chunk kernels: auto, simt, mma or mma_v1 (first tensor-core version: two-kernel backward)")->capture_default_str()
      ->check(CLI::IsMember({"auto", "simt", "mma", "mma_v1"}));
  lsh_cmd->add_option("--iters", bench_lsh.iters, "timed runs per case (median reported)")->capture_default_str();
  lsh_cmd->callback([&] { run_bench_lsh(bench_lsh); });
  BenchTrainOptions bench_train;
  auto* train_bench_cmd = bench->add_subcommand("train", "Steady-state training tokens/s of a config on the GPU (random tokens)");
  train_bench_cmd->add_option("--config", bench_train.config, "run config")->capture_default_str();
  train_bench_cmd->add_option("--set", bench_train.overrides, "override a.b=value (repeatable)");
  train_bench_cmd->add_option("--batch", bench_train.batch, "sequences per step (0: train.batch_size)");
  train_bench_cmd->add_option("--seq-len", bench_train.seq_len, "sequence length (0: train.seq_len)");
  train_bench_cmd->add_option("--steps", bench_train.steps, "timed steps (median reported)")->capture_default_str();
  train_bench_cmd->add_option("--warmup", bench_train.warmup, "untimed steps first")->capture_default_str();
  train_bench_cmd->add_option("--dtype", bench_train.dtype, "parameter and activation dtype")
      ->check(CLI::IsMember({"bf16", "f32"}))
      ->capture_default_str();
  train_bench_cmd->add_option("--out", bench_train.out, "JSON output file")->capture_default_str();
  train_bench_cmd->add_option("--diagnose-steps", bench_train.diagnose_steps,
                              "before these steps, compare loss and gradients with an f32 CPU copy (slow)")
      ->delimiter(',');
  train_bench_cmd->add_option("--diagnose-batch", bench_train.diagnose_batch, "sequences in each diagnosis")
      ->capture_default_str();
  train_bench_cmd->add_option("--param-norm-steps", bench_train.param_norm_steps,
                              "steps whose per-parameter gradient norms (before clipping) are stored")
      ->delimiter(',');
  train_bench_cmd->add_option("--batch-split-steps", bench_train.batch_split_steps,
                              "before these steps, compare the full batch's gradient with the mean of one-sequence gradients")
      ->delimiter(',');
  train_bench_cmd->add_option("--dump-init", bench_train.dump_init,
                              "write the initial weights (transformers GPT-2 layout) and tokens to this directory");
  train_bench_cmd->add_option("--seed", bench_train.seed, "initialisation and token seed")->capture_default_str();
  train_bench_cmd->callback([&] { run_bench_train(bench_train); });
  BenchTokenizerOptions bench_tok;
  auto* tok_cmd = bench->add_subcommand("tokenizer", "Single-thread tokenizer throughput on a text sample");
  tok_cmd->add_option("--tokenizer", bench_tok.tokenizer, "GPT-2 directory or tokenizer.json")->capture_default_str();
  tok_cmd->add_option("--sample", bench_tok.sample, "directory with MANIFEST.sha256")->capture_default_str();
  tok_cmd->add_option("--out", bench_tok.out, "JSON output file")->capture_default_str();
  tok_cmd->callback([&] { run_bench_tokenizer(bench_tok); });

  ConfigShowOptions config_show;
  auto* config_cmd = app.add_subcommand("config", "Show the resolved run config or list every key");
  config_cmd->require_subcommand(1);
  auto* show_cmd = config_cmd->add_subcommand("show", "Validate CONFIG (+ --set overrides) and print it resolved");
  show_cmd->add_option("config", config_show.config, "run config JSON (omit for the defaults)");
  show_cmd->add_option("--set", config_show.overrides, "override a key: --set model.n_layer=6 (repeatable)");
  show_cmd->callback([&] { run_config_show(config_show); });
  config_cmd->add_subcommand("keys", "Every config key with its type, range and meaning")->callback([] { run_config_keys(); });

  ConfigShowOptions train_opts;
  auto* train_cmd = app.add_subcommand("train", "Train a model from a run config (CPU at this stage)");
  train_cmd->add_option("config", train_opts.config, "run config JSON")->required();
  train_cmd->add_option("--set", train_opts.overrides, "override a key: --set train.max_steps=100 (repeatable)");
  train_cmd->callback([&] { run_train(train_opts); });

  LaunchCliOptions launch_opts;
  auto* launch_cmd = app.add_subcommand("launch", "Run `sparsek train` as N local ranks (one per GPU; docs/DISTRIBUTED.md)");
  launch_cmd->add_option("--nproc", launch_opts.nproc, "processes (ranks) on this machine")->required()
      ->check(CLI::Range(1, 1024));
  launch_cmd->add_option("config", launch_opts.config, "run config JSON")->required();
  launch_cmd->add_option("--set", launch_opts.overrides, "override a key for every rank (repeatable)");
  launch_cmd->add_option("--master-addr", launch_opts.master_addr, "rendezvous address (MASTER_ADDR)")->capture_default_str();
  launch_cmd->add_option("--master-port", launch_opts.master_port, "rendezvous port (MASTER_PORT)")->capture_default_str()
      ->check(CLI::Range(1, 65535));
  launch_cmd->callback([&] { run_launch(launch_opts); });

  EvalOptions eval_opts;
  auto* eval_cmd = app.add_subcommand("eval", "Mean loss and perplexity of a trained model on a split or on shard files");
  eval_cmd->add_option("target", eval_opts.target,
                       "run config JSON (its latest checkpoint), a checkpoint step directory or a run directory")
      ->required();
  eval_cmd->add_option("--split", eval_opts.split, "val or train")->capture_default_str()
      ->check(CLI::IsMember({"val", "train"}));
  eval_cmd->add_option("--files", eval_opts.files, "token shard files or globs (instead of the split)");
  eval_cmd->add_option("--max-batches", eval_opts.max_batches, "batches to evaluate (0: all; default: eval.max_batches)");
  eval_cmd->add_flag("--causal", eval_opts.causal,
                     "strictly causal: each position's logits from token-by-token decoding (for lsh: docs/LSH.md)");
  eval_cmd->add_option("--set", eval_opts.overrides, "override a key of the saved config: --set train.batch_size=4");
  eval_cmd->callback([&] { run_eval(eval_opts); });

  CompareOptions cmp;
  auto* cmp_cmd = app.add_subcommand("compare", "Run (or continue) a comparison grid: attention kinds x context lengths x seeds "
                                                "(docs/COMPARE.md)");
  cmp_cmd->add_option("grid", cmp.grid, "grid JSON (configs/compare/*.json)")->required();
  cmp_cmd->add_option("--only", cmp.only, "cells to run: kind=NAME,T=N,seed=S (a repeated key is an alternative)");
  cmp_cmd->add_option("--skip", cmp.skip, "cells to leave out (same syntax as --only)");
  cmp_cmd->add_option("--shard", cmp.shard, "I/N: run the cells whose index mod N is I (one process per GPU)")
      ->capture_default_str();
  cmp_cmd->add_option("--max-minutes", cmp.max_minutes, "stop training (with a checkpoint) and start no new phase after this")
      ->check(CLI::NonNegativeNumber);
  cmp_cmd->add_option("--set", cmp.overrides, "override a run-config key of every cell, e.g. train.device=cuda:1");
  cmp_cmd->add_flag("--no-probes", cmp.no_probes, "leave the probes for a later call");
  cmp_cmd->add_flag("--keep-records", cmp.keep_records,
                    "a cell retrained because its checkpoint is not here keeps its recorded training and evaluation");
  cmp_cmd->add_flag("--list", cmp.list, "list the cells and their status; run nothing");
  cmp_cmd->add_flag("--report-only", cmp.report_only, "only rewrite results.json and results.md from the cells");
  cmp_cmd->callback([&] { run_compare(cmp); });

  ProbeOptionsCli probe;
  auto* probe_cmd = app.add_subcommand("probe", "Passkey retrieval and associative recall of a checkpoint (docs/COMPARE.md)");
  probe_cmd->add_option("checkpoint", probe.checkpoint, "checkpoint step directory or run directory")->required();
  probe_cmd->add_option("--length", probe.length, "context length L (0: the run's train.seq_len)")->capture_default_str();
  probe_cmd->add_option("--distances", probe.distances, "passkey distances, e.g. 256,1024,4000")->delimiter(',');
  probe_cmd->add_option("--trials", probe.trials, "passkey trials per distance")->capture_default_str();
  probe_cmd->add_option("--assoc-trials", probe.assoc_trials, "associative-recall trials")->capture_default_str();
  probe_cmd->add_option("--assoc-pairs", probe.assoc_pairs, "key-value pairs per context")->capture_default_str();
  probe_cmd->add_option("--seed", probe.seed, "probe seed")->capture_default_str();
  probe_cmd->add_option("--set", probe.overrides, "override a key of the saved config (e.g. train.device=cpu)");
  probe_cmd->add_option("--out", probe.out, "JSON output file (default: stdout)");
  probe_cmd->callback([&] { run_probe(probe); });

  GenerateOptions gen;
  auto* gen_cmd = app.add_subcommand("generate", "Sample a continuation of a prompt from a checkpoint (KV-cache decoding)");
  gen_cmd->add_option("checkpoint", gen.checkpoint, "checkpoint step directory or run directory (its latest)")->required();
  gen_cmd->add_option("--prompt", gen.prompt, "text to continue (empty: start from <|endoftext|>)");
  gen_cmd->add_option("--max-tokens", gen.max_tokens, "new tokens at most")->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  gen_cmd->add_option("--temperature", gen.temperature, "sampling temperature (0: greedy)")->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  gen_cmd->add_option("--top-k", gen.top_k, "sample from the K most likely tokens (0: all)")->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  gen_cmd->add_option("--seed", gen.seed, "sampling seed")->capture_default_str();
  gen_cmd->add_option("--tokenizer", gen.tokenizer, "tokenizer (default: the checkpoint's copy, else data.tokenizer)");
  gen_cmd->callback([&] { run_generate(gen); });

  PrepareOptions prep;
  auto* prep_cmd = app.add_subcommand("prepare", "Tokenize text files, directories or JSONL into token shards + a manifest");
  prep_cmd->add_option("--tokenizer", prep.tokenizer, "GPT-2 directory (encoder.json + vocab.bpe) or a tokenizer.json")
      ->required();
  prep_cmd->add_option("--out", prep.out, "output directory")->required();
  prep_cmd->add_option("--name", prep.name, "dataset name: NAME_val_000000.bin, NAME_train_000000.bin, NAME_manifest.json")
      ->required();
  prep_cmd->add_option("inputs", prep.inputs, "text files, directories (recursive) and JSONL files");
  prep_cmd->add_option("--glob", prep.globs, "include pattern for files inside directories (repeatable), e.g. '*.rst'")
      ->allow_extra_args(false);  // one pattern per --glob: what follows is an input
  prep_cmd->add_option("--format", prep.format, "auto (.jsonl/.ndjson are JSONL), text or jsonl")->capture_default_str()
      ->check(CLI::IsMember({"auto", "text", "jsonl"}));
  prep_cmd->add_option("--jsonl-field", prep.jsonl_field, "JSONL field holding the document text")->capture_default_str();
  prep_cmd->add_option("--threads", prep.threads, "encoder threads (0 = all cores)")->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  prep_cmd->add_option("--val-fraction", prep.val_fraction, "fraction of documents for validation")->capture_default_str()
      ->check(CLI::Range(0.0, 0.999999));
  prep_cmd->add_option("--seed", prep.seed, "train/validation split seed")->capture_default_str();
  prep_cmd->add_option("--shard-tokens", prep.shard_tokens, "tokens per shard")->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{2147483647}));
  prep_cmd->add_flag("--no-progress", prep.no_progress, "no progress line on stderr");
  prep_cmd->callback([&] {
    for (int i = 0; i < argc; ++i) {
      std::string a = argv[i];
      if (a.empty() || a.find_first_of(" \t'\"*?$&;|<>(){}[]\\") != std::string::npos) {
        std::string q = "'";
        for (char c : a) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
        a = q + "'";
      }
      prep.command_line += (i ? " " : "") + a;
    }
    run_prepare(prep);
  });

  HfImportOptions imp;
  auto* imp_cmd = app.add_subcommand("import", "Hugging Face model directory (GPT-NeoX/Pythia, GPT-2) -> a sparsek checkpoint");
  imp_cmd->add_option("hf_dir", imp.hf_dir, "directory with config.json and model.safetensors (or index + shards)")->required();
  imp_cmd->add_option("out_dir", imp.out_dir, "checkpoint directory to write")->required();
  imp_cmd->add_option("--pad-vocab-multiple", imp.pad_vocab_multiple, "pad the vocabulary to a multiple of this")
      ->capture_default_str()->check(CLI::PositiveNumber);
  imp_cmd->callback([&] { run_import(imp); });
  HfExportOptions exp;
  auto* exp_cmd = app.add_subcommand("export", "A sparsek checkpoint -> a Hugging Face model directory (full attention)");
  exp_cmd->add_option("checkpoint", exp.checkpoint, "checkpoint step directory or run directory")->required();
  exp_cmd->add_option("hf_dir", exp.hf_dir, "directory to write config.json and model.safetensors to")->required();
  exp_cmd->callback([&] { run_export(exp); });
  LogitsOptions lg;
  auto* lg_cmd = app.add_subcommand("logits", "Logits of one token sequence from a checkpoint, as JSON");
  lg_cmd->add_option("checkpoint", lg.checkpoint, "checkpoint step directory or run directory")->required();
  lg_cmd->add_option("--ids", lg.ids, "token ids, e.g. 1,2,3")->delimiter(',')->required();
  lg_cmd->add_option("--device", lg.device, "auto, cpu, cuda or cuda:N")->capture_default_str();
  lg_cmd->add_option("--dtype", lg.dtype, "f32 or bf16 (bf16: CUDA only)")->capture_default_str();
  lg_cmd->add_option("--out", lg.out, "JSON output file (default: stdout)");
  lg_cmd->callback([&] { run_logits(lg); });

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const sk::Error& e) {
    spdlog::error("{}", e.what());
    return 2;
  }
  return 0;
}
