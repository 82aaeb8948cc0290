// Host-side bfloat16: 16 raw bits, conversion from float with round-to-nearest-even (NaN kept
// quiet), conversion to float by shifting. Matches __float2bfloat16_rn on the GPU.
#pragma once
#include <cstdint>
#include <cstring>

namespace sk {

struct bf16 {
  uint16_t bits = 0;

  bf16() = default;
  explicit bf16(float f) : bits(from_float(f)) {}
  explicit operator float() const { return to_float(bits); }

  static uint16_t from_float(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x007fffffu)) return static_cast<uint16_t>((u >> 16) | 0x0040u);
    uint32_t rounding_bias = 0x7fffu + ((u >> 16) & 1u);
    return static_cast<uint16_t>((u + rounding_bias) >> 16);
  }
  static float to_float(uint16_t b) {
    uint32_t u = static_cast<uint32_t>(b) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }
};
static_assert(sizeof(bf16) == 2);

// Rounds a float to the nearest bf16 value and back (what storing in bf16 does to a number).
inline float round_to_bf16(float f) { return bf16::to_float(bf16::from_float(f)); }

}  // namespace sk
