// Element types of tensors: f32, f64, bf16 (floating) and i32, i64, u16 (token ids, indices).
//
// bf16 is stored as its 16 raw bits (sk::bf16, see tensor/bf16.h); CPU ops compute in f32/f64 and
// use bf16 only for conversion and storage, CUDA ops take bf16 in and accumulate in fp32.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace sk {

enum class DType : int { F32 = 0, BF16 = 1, F64 = 2, I32 = 3, I64 = 4, U16 = 5 };

inline size_t dtype_size(DType t) {
  switch (t) {
    case DType::F32: return 4;
    case DType::BF16: return 2;
    case DType::F64: return 8;
    case DType::I32: return 4;
    case DType::I64: return 8;
    case DType::U16: return 2;
  }
  return 0;
}

inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "f32";
    case DType::BF16: return "bf16";
    case DType::F64: return "f64";
    case DType::I32: return "i32";
    case DType::I64: return "i64";
    case DType::U16: return "u16";
  }
  return "?";
}

inline bool is_floating(DType t) { return t == DType::F32 || t == DType::F64 || t == DType::BF16; }
inline bool is_integer(DType t) { return !is_floating(t); }

// Maps the six dtypes to the kernels' SkKernelDType codes (kernels/common/kernel_dtype.h): the
// enum values above were chosen equal to those codes.
inline int kernel_dtype(DType t) { return static_cast<int>(t); }

}  // namespace sk
