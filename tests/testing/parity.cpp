// CUDA-vs-CPU comparison (parity.h).
#include "testing/parity.h"

#include <cmath>
#include <sstream>

#include "util/check.h"

namespace sk::testing {

std::string ParityReport::str() const {
  std::ostringstream os;
  os << "max_abs " << max_abs << ", max_rel " << max_rel << ", rel_l2 " << rel_l2
     << (non_finite ? ", NON-FINITE values" : "") << " (worst at " << worst_index << ")";
  return os.str();
}

ParityReport compare(const Tensor& got, const Tensor& ref, double rel_floor) {
  SK_CHECK(got.shape() == ref.shape(), "compare: shapes differ: ", shape_str(got.shape()), " vs ", shape_str(ref.shape()));
  std::vector<double> a = got.to_vector(), b = ref.to_vector();
  ParityReport r;
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite(a[i]) || !std::isfinite(b[i])) {
      r.non_finite = true;
      r.worst_index = static_cast<int64_t>(i);
      continue;
    }
    const double d = std::abs(a[i] - b[i]);
    if (d > r.max_abs) {
      r.max_abs = d;
      r.worst_index = static_cast<int64_t>(i);
    }
    r.max_rel = std::max(r.max_rel, d / (std::abs(b[i]) + rel_floor));
    num += d * d;
    den += b[i] * b[i];
  }
  r.rel_l2 = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
  return r;
}

}  // namespace sk::testing
