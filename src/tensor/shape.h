// Shape and strides of a tensor (outermost dimension first, strides in elements) and helpers.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace sk {

using Shape = std::vector<int64_t>;
using Strides = std::vector<int64_t>;

int64_t shape_numel(const Shape& s);
Strides contiguous_strides(const Shape& s);
std::string shape_str(const Shape& s);  // "(4, 17, 768)"
// Normalises a possibly negative dimension index against ndim; throws naming `what` if out of range.
int normalize_dim(int64_t dim, int64_t ndim, const char* what);

}  // namespace sk
