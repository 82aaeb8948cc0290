// `sparsek bench tokenizer`: single-thread encoding throughput of our tokenizer on a text sample
// (the files of a directory joined in MANIFEST.sha256 order, as scripts/bench/tokenizer_peer.py
// joins them for Hugging Face tokenizers and tiktoken), written as JSON.
#include <spdlog/spdlog.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli/commands.h"
#include "data/tokenizer.h"
#include "util/check.h"

namespace sk::cli {

void run_bench_tokenizer(const BenchTokenizerOptions& o) {
  const std::filesystem::path manifest = std::filesystem::path(o.sample) / "MANIFEST.sha256";
  std::ifstream mf(manifest);
  SK_CHECK(mf.good(), "bench tokenizer: ", manifest.string(), " not found (make it with scripts/data/make_parity_sample.sh)");
  std::string text, line;
  int files = 0;
  while (std::getline(mf, line)) {
    std::istringstream ls(line);
    std::string hash, name;
    if (!(ls >> hash >> name)) continue;
    std::ifstream f(std::filesystem::path(o.sample) / name, std::ios::binary);
    SK_CHECK(f.good(), "bench tokenizer: cannot read ", name, " listed in ", manifest.string());
    text += std::string(std::istreambuf_iterator<char>(f), {});
    ++files;
  }
  data::Tokenizer tok = data::Tokenizer::load(o.tokenizer);
  const double mbps = data::bench_tokenizer_mbps(tok, text);
  const size_t tokens = tok.encode(text).size();
  spdlog::info("bench tokenizer: {} files, {} bytes, {} tokens, {:.1f} MB/s (one thread)", files, text.size(), tokens, mbps);
  nlohmann::json doc = {{"system", "sparsek"}, {"tokenizer", tok.name()}, {"bytes", text.size()}, {"tokens", tokens},
                        {"MBps_one_thread", mbps}};
  std::ofstream out(o.out);
  SK_CHECK(out.good(), "bench tokenizer: cannot write ", o.out);
  out << doc.dump(2) << "\n";
}

}  // namespace sk::cli
