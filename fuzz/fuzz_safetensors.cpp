// libFuzzer target for the safetensors reader (src/io/safetensors.cpp: parse_safetensors, the
// check SafetensorsFile::open runs on every mapped file). For any input: parse_safetensors either
// throws sk::Error whose message names the file, or returns a layout whose entries tile the data
// section exactly (sorted, contiguous, ending at the end of the input); every accepted tensor's
// bytes are then read (ASan catches a read outside the input). Build and run:
// fuzz/run_fuzz_safetensors.sh [SECONDS] (clang++ 14, -fsanitize=fuzzer,address,undefined).
#include <cstdint>
#include <cstdlib>
#include <string>

#include "io/safetensors.h"
#include "util/check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string kName = "fuzz_input.safetensors";
  sk::io::SafetensorsLayout l;
  try {
    l = sk::io::parse_safetensors(data, size, kName);
  } catch (const sk::Error& e) {
    if (std::string(e.what()).find(kName) == std::string::npos) std::abort();  // must name the file
    return 0;
  }
  if (l.data_start < 8 || l.data_start > size) std::abort();
  size_t at = 0;
  uint64_t sum = 0;
  for (const auto& e : l.entries) {
    if (e.begin != at || e.end < e.begin) std::abort();
    for (size_t i = e.begin; i < e.end; ++i) sum += data[l.data_start + i];
    at = e.end;
  }
  if (l.data_start + at != size) std::abort();
  return static_cast<int>(sum & 0);
}
