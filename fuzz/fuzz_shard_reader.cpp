// libFuzzer target for the shard header/body validation (src/data/shard.h: parse_shard, the
// byte-level check Shard::open runs on every mmapped file). For any input: parse_shard either
// throws sk::Error whose message names the file, or returns a view whose size arithmetic is
// exact (1024 + count * token_bytes == input size); every token of an accepted view is then
// read (ASan catches any read outside the input) and copied to int32 in blocks, as the loader
// does. Build and run: fuzz/run_fuzz_shard.sh [SECONDS] (clang++ 14, -fsanitize=fuzzer,address).
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "data/shard.h"
#include "util/check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace sk::data;
  static const std::string kName = "fuzz_input.bin";
  ShardView v;
  try {
    v = parse_shard(data, size, kName);
  } catch (const sk::Error& e) {
    if (std::string(e.what()).find(kName) == std::string::npos) std::abort();  // must name the file
    return 0;
  }
  const int64_t width = shard_token_bytes(v.version);
  if ((v.version != 1 && v.version != 2) || v.num_tokens < 0 || v.body != data + kShardHeaderBytes ||
      static_cast<int64_t>(size) != kShardHeaderBytes + v.num_tokens * width)
    std::abort();
  uint64_t sum = 0;
  for (int64_t i = 0; i < v.num_tokens; ++i) sum += v.token(i);
  std::vector<int32_t> out(64);
  for (int64_t start = 0; start < v.num_tokens; start += 64) {
    const int64_t n = std::min<int64_t>(64, v.num_tokens - start);
    try {
      v.copy_tokens(start, n, out.data(), kName);
      for (int64_t i = 0; i < n; ++i)
        if (static_cast<uint32_t>(out[i]) != v.token(start + i)) std::abort();
    } catch (const sk::Error&) {  // a version 2 id above INT32_MAX: reported, not copied
      if (v.version != 2) std::abort();
    }
  }
  // Out-of-range requests are errors, never reads.
  try {
    v.copy_tokens(v.num_tokens, 1, out.data(), kName);
    std::abort();
  } catch (const sk::Error&) {
  }
  volatile uint64_t sink = sum;
  (void)sink;
  return 0;
}
