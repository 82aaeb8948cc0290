// fp64 finite-difference gradient check (gradcheck.h).
#include "testing/gradcheck.h"

#include <cmath>
#include <sstream>

#include "autograd/node.h"
#include "util/check.h"

namespace sk::testing {

Tensor rand_leaf(const Shape& shape, Rng& rng, double std) {
  return Tensor::randn(shape, rng, DType::F64, Device::cpu(), 0.0, std).set_requires_grad();
}

namespace {
double dot(const Tensor& a, const Tensor& b) {
  std::vector<double> x = a.to_vector(), y = b.to_vector();
  double s = 0;
  for (size_t i = 0; i < x.size(); ++i) s += x[i] * y[i];
  return s;
}
}  // namespace

GradcheckResult gradcheck(const TensorFn& f, const std::vector<Tensor>& inputs, const GradcheckOptions& opts) {
  for (const Tensor& t : inputs)
    SK_CHECK(!t.defined() || t.dtype() != DType::F64 || t.device().is_cpu(), "gradcheck: inputs must be f64 CPU tensors");
  for (const Tensor& t : inputs)
    if (t.defined() && t.requires_grad()) SK_CHECK(t.dtype() == DType::F64, "gradcheck: differentiable inputs must be f64");

  GradcheckResult res;
  Tensor out = f(inputs);
  Rng rng(opts.seed);
  Tensor R = Tensor::randn(out.shape(), rng, out.dtype(), Device::cpu());
  for (const Tensor& t : inputs)
    if (t.defined()) const_cast<Tensor&>(t).zero_grad();
  out.backward(R);

  autograd::NoGradGuard no_grad;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Tensor& x = inputs[i];
    if (!x.defined() || !x.requires_grad()) continue;
    SK_CHECK(x.is_contiguous(), "gradcheck: input ", i, " must be contiguous");
    Tensor g = x.grad();
    std::vector<double> analytic = g.defined() ? g.to_vector() : std::vector<double>(x.numel(), 0.0);
    double* p = x.data<double>();
    for (int64_t j = 0; j < x.numel(); ++j) {
      const double orig = p[j];
      p[j] = orig + opts.eps;
      const double fp = dot(f(inputs), R);
      p[j] = orig - opts.eps;
      const double fm = dot(f(inputs), R);
      p[j] = orig;
      const double numeric = (fp - fm) / (2 * opts.eps);
      const double err = std::abs(analytic[j] - numeric);
      res.max_abs_err = std::max(res.max_abs_err, err);
      if (err > opts.atol + opts.rtol * std::abs(numeric) && res.ok) {
        res.ok = false;
        std::ostringstream os;
        os << "input " << i << " " << shape_str(x.shape()) << " element " << j << ": analytic " << analytic[j]
           << " vs numeric " << numeric << " (abs err " << err << ")";
        res.message = os.str();
      }
    }
  }
  return res;
}

}  // namespace sk::testing
