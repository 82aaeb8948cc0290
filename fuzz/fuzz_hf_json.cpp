// libFuzzer target: the Hugging Face tokenizer.json reader and building a tokenizer from it
// (src/data/bpe_files.cpp, bpe_model.cpp, tokenizer.cpp); then encode/decode of a few texts must
// round-trip: decode(encode(x, a)) == normalize(x, a). Any sk::Error is an accepted outcome;
// a crash, a sanitizer report, another exception or a failed round trip is a bug.
// Run by fuzz/run_fuzz.sh (seeds: the tiny fixture and variants; dictionary fuzz/json.dict).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "data/tokenizer.h"
#include "util/check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  try {
    auto tok = sk::data::Tokenizer::from_hf_json_text(in, "fuzz.json");
    for (std::string_view text :
         {std::string_view("caf\xc3\xa9 cafe\xcc\x81 <|endoftext|> it's  \n\n 12345 \xff"), in.substr(0, 80)}) {
      for (bool allow : {false, true}) {
        auto ids = tok.encode(text, allow);
        for (uint32_t id : ids)
          if (id >= tok.vocab_size()) std::abort();
        if (tok.decode(ids) != tok.normalize(text, allow)) std::abort();
      }
    }
    (void)tok.hash();
  } catch (const sk::Error&) {
  }
  return 0;
}
