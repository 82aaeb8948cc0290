// libFuzzer target: encode/decode round trip on arbitrary bytes (invalid UTF-8 included) with the
// tiny tokenizer.json fixture and, when data/tokenizers/gpt2 exists, GPT-2:
//   decode(encode(x, a)) == normalize(x, a) for a = false, true,
//   the GPT-2 pre-tokenizer's pieces cover x exactly and are non-empty,
//   the merge loop's array path and heap path agree on every piece.
// SPARSEK_SOURCE_DIR (set by fuzz/run_fuzz.sh) locates the repository. Run by fuzz/run_fuzz.sh.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "data/bpe_files.h"
#include "data/bpe_model.h"
#include "data/pretokenize.h"
#include "data/tokenizer.h"

namespace {

struct Setup {
  std::vector<sk::data::Tokenizer> toks;
  std::vector<sk::data::BpeModel> models;
  Setup() {
    const std::string root = SPARSEK_SOURCE_DIR;
    const std::string tiny = root + "/tests/data/fixtures/tiny_tokenizer.json";
    toks.push_back(sk::data::Tokenizer::load_hf_json(tiny));
    auto spec = sk::data::read_hf_tokenizer_json(tiny);
    models.push_back(sk::data::BpeModel::build(spec.vocab, spec.merges, false, spec.source));
    const std::string gpt2 = root + "/data/tokenizers/gpt2";
    if (std::filesystem::exists(gpt2 + "/vocab.bpe")) {
      toks.push_back(sk::data::Tokenizer::load_gpt2_files(gpt2));
      auto g = sk::data::read_gpt2_files(gpt2);
      models.push_back(sk::data::BpeModel::build(g.vocab, g.merges, false, g.source));
    }
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Setup s;
  std::string_view in(reinterpret_cast<const char*>(data), size);
  for (const auto& t : s.toks)
    for (bool allow : {false, true})
      if (t.decode(t.encode(in, allow)) != t.normalize(in, allow)) std::abort();
  std::vector<uint32_t> ends;
  sk::data::gpt2_split(in, ends);
  uint32_t start = 0;
  std::vector<uint32_t> a, b;
  for (uint32_t e : ends) {
    if (e <= start) std::abort();
    std::string_view piece = in.substr(start, e - start);
    for (const auto& m : s.models) {
      a.clear();
      b.clear();
      m.merge_bytes(piece, a, SIZE_MAX);
      m.merge_bytes(piece, b, 0);
      if (a != b) std::abort();
    }
    start = e;
  }
  if (start != in.size()) std::abort();
  return 0;
}
