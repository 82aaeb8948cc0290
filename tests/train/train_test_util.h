// Shared by the train suite: a tiny run on a synthetic corpus written as real shards (a repeating
// pattern with 10% noise, so the loss falls within a few dozen steps), a config file for it, and
// running build/sparsek as a child process (exit status and output).
#pragma once
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "config/run_config.h"
#include "data/shard.h"
#include "tensor/random.h"

extern char** environ;

namespace sk::testing {

// Shards in `dir` (written once per dir) and a config training on them into dir/run.
inline config::RunConfig tiny_run(const std::filesystem::path& dir, const std::vector<std::string>& extra = {}) {
  if (!std::filesystem::exists(dir / "syn_train_000000.bin")) {
    Rng rng(3);
    std::vector<uint32_t> train_tokens, val_tokens;
    for (int i = 0; i < 6000; ++i)
      train_tokens.push_back(rng.uniform() < 0.1 ? uint32_t(rng.below(32)) : uint32_t((i * 7) % 32));
    for (int i = 0; i < 800; ++i) val_tokens.push_back(uint32_t((i * 7) % 32));
    data::write_shard((dir / "syn_train_000000.bin").string(), train_tokens);
    data::write_shard((dir / "syn_val_000000.bin").string(), val_tokens);
  }
  std::vector<std::string> sets = {
      "model.n_layer=2",    "model.n_head=2",      "model.n_embd=32",      "model.vocab_size=32",
      "model.pad_vocab_multiple=8", "model.block_size=32", "train.seq_len=32", "train.batch_size=8",
      "train.max_steps=60", "train.device=cpu",    "optimizer.lr=0.01",    "schedule.warmup_steps=5",
      "eval.every=30",      "eval.max_batches=0",  "logging.every=20",     "logging.metrics_file=metrics.jsonl",
      "checkpoint.every=0", "data.tokenizer="};
  sets.insert(sets.end(), extra.begin(), extra.end());
  config::RunConfig c = config::load_run_config("", sets);
  c.data.train = (dir / "syn_train_*.bin").string();
  c.data.val = (dir / "syn_val_*.bin").string();
  c.checkpoint.dir = (dir / "run").string();
  return c;
}

inline std::string write_config(const config::RunConfig& c, const std::filesystem::path& path) {
  std::ofstream(path) << c.to_json().dump(2);
  return path.string();
}

struct ChildResult {
  int status = 0;      // as from waitpid
  std::string output;  // stdout and stderr
  bool exited(int code) const { return WIFEXITED(status) && WEXITSTATUS(status) == code; }
  bool killed_by(int sig) const { return WIFSIGNALED(status) && WTERMSIG(status) == sig; }
};

// Starts build/sparsek with `args`, stdout+stderr to `log`; extra "K=V" environment entries.
inline pid_t spawn_sparsek(const std::vector<std::string>& args, const std::string& log,
                           const std::vector<std::string>& env_extra = {}) {
  std::vector<std::string> argv_s = {SPARSEK_BINARY};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<std::string> env_s;
  for (char** e = environ; *e; ++e) env_s.push_back(*e);
  env_s.insert(env_s.end(), env_extra.begin(), env_extra.end());
  std::vector<char*> envp;
  for (auto& e : env_s) envp.push_back(e.data());
  envp.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, SPARSEK_BINARY, &fa, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  return rc == 0 ? pid : -1;
}

inline ChildResult wait_child(pid_t pid, const std::string& log) {
  ChildResult r;
  waitpid(pid, &r.status, 0);
  std::ifstream f(log);
  std::stringstream ss;
  ss << f.rdbuf();
  r.output = ss.str();
  return r;
}

inline ChildResult run_sparsek(const std::vector<std::string>& args, const std::string& log,
                               const std::vector<std::string>& env_extra = {}) {
  return wait_child(spawn_sparsek(args, log, env_extra), log);
}

// The "loss" of each record of a metrics.jsonl file, by step.
inline std::vector<std::pair<int64_t, double>> metrics_losses(const std::filesystem::path& path,
                                                              const std::string& field = "loss") {
  std::vector<std::pair<int64_t, double>> out;
  std::ifstream f(path);
  std::string line;
  while (std::getline(f, line)) {
    const auto j = nlohmann::json::parse(line);
    if (j.contains(field)) out.push_back({j["step"].get<int64_t>(), j[field].get<double>()});
  }
  return out;
}

}  // namespace sk::testing
