// libFuzzer target: the OpenAI GPT-2 format reader (encoder.json + vocab.bpe) and building a
// tokenizer from it (src/data/bpe_files.cpp, bpe_model.cpp, tokenizer.cpp). The input is
// encoder.json, a NUL byte, then vocab.bpe. Any sk::Error is an accepted outcome; a crash, a
// sanitizer report, another exception or a failed round trip is a bug. Run by fuzz/run_fuzz.sh.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "data/tokenizer.h"
#include "util/check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  const size_t nul = in.find('\0');
  if (nul == std::string_view::npos) return 0;
  try {
    auto tok = sk::data::Tokenizer::from_gpt2_texts(in.substr(0, nul), in.substr(nul + 1), "fuzz");
    for (std::string_view text : {std::string_view("Hello world, it's 2024!\n"), in.substr(0, 64)}) {
      for (bool allow : {false, true}) {
        if (tok.decode(tok.encode(text, allow)) != text) std::abort();
      }
    }
    (void)tok.hash();
  } catch (const sk::Error&) {
  }
  return 0;
}
