// `sparsek prepare`: runs the data preparation (src/data/prepare.h) and logs a summary; records
// the sparsek commit (from the source checkout this binary was built from, when present) in the
// manifest.
#include <spdlog/spdlog.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <string>

#include "cli/commands.h"
#include "data/prepare.h"

namespace sk::cli {

namespace {

// First line of a shell command's output ("" on failure).
std::string first_line_of(const std::string& cmd) {
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return "";
  std::array<char, 256> buf{};
  std::string out;
  if (std::fgets(buf.data(), buf.size(), p)) out = buf.data();
  const int rc = ::pclose(p);
  if (rc != 0) return "";
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  return out;
}

// {"commit": "<sha>", "dirty": bool} of the checkout holding this source file, or
// {"commit": "unknown"} (e.g. a build folder carried to another machine).
nlohmann::json build_info() {
  namespace fs = std::filesystem;
  const fs::path root = fs::path(__FILE__).parent_path().parent_path().parent_path();  // src/cli/prepare.cpp
  std::error_code ec;
  if (root.is_absolute() && fs::exists(root / ".git", ec)) {
    const std::string q = "'" + root.string() + "'";
    const std::string commit = first_line_of("git -C " + q + " rev-parse HEAD 2>/dev/null");
    if (!commit.empty()) {
      const std::string dirty = first_line_of("git -C " + q + " status --porcelain --untracked-files=no 2>/dev/null");
      return {{"commit", commit}, {"dirty", !dirty.empty()}};
    }
  }
  return {{"commit", "unknown"}};
}

}  // namespace

void run_prepare(const PrepareOptions& o) {
  data::PrepareConfig c;
  c.tokenizer = o.tokenizer;
  c.out_dir = o.out;
  c.name = o.name;
  c.inputs = o.inputs;
  c.globs = o.globs;
  c.format = o.format;
  c.jsonl_field = o.jsonl_field;
  c.threads = o.threads;
  c.val_fraction = o.val_fraction;
  c.seed = o.seed;
  c.shard_tokens = o.shard_tokens;
  c.progress = !o.no_progress;
  c.command_line = o.command_line;
  c.sparsek_build = build_info();
  const data::PrepareResult r = data::prepare(c);
  const auto& m = r.manifest;
  for (const char* split : {"train", "val"}) {
    const auto& s = m["splits"][split];
    spdlog::info("{:5}: {} documents, {} tokens, {} text bytes, {} shard(s)", split, s["documents"].get<int64_t>(),
                 s["tokens"].get<int64_t>(), s["text_bytes"].get<int64_t>(), s["shards"].get<int64_t>());
  }
  spdlog::info("{} threads, {:.1f} s; manifest {}", m["run"]["threads"].get<int>(), m["run"]["seconds"].get<double>(),
               r.manifest_path);
}

}  // namespace sk::cli
