// Tensor creation, metadata, views and copies (tensor.h). Views and conversions record autograd
// nodes here, since they are Tensor methods; every other op lives in src/ops/.
// CUDA copies go through kernels/tensor/copy.cu. Tests: tests/tensor/test_tensor.cpp.
#include "tensor/tensor.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <sstream>

#include "autograd/node.h"
#include "backend/cuda_device.h"
#include "util/check.h"

#ifdef SPARSEK_HAS_CUDA
#include "backend/cuda_context.h"
#include "kernels/tensor/copy.h"
#include "kernels/tensor/copy_to_strided.h"
#endif

namespace sk {

// ---------------------------------------------------------------------------------------------
// shapes, devices, storage

int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

Strides contiguous_strides(const Shape& s) {
  Strides st(s.size());
  int64_t acc = 1;
  for (int64_t i = static_cast<int64_t>(s.size()) - 1; i >= 0; --i) {
    st[i] = acc;
    acc *= std::max<int64_t>(s[i], 1);
  }
  return st;
}

std::string shape_str(const Shape& s) {
  std::ostringstream os;
  os << "(";
  for (size_t i = 0; i < s.size(); ++i) os << (i ? ", " : "") << s[i];
  os << (s.size() == 1 ? ",)" : ")");
  return os.str();
}

int normalize_dim(int64_t dim, int64_t ndim, const char* what) {
  int64_t d = dim < 0 ? dim + ndim : dim;
  SK_CHECK(d >= 0 && d < ndim, what, ": dimension ", dim, " is out of range for a tensor with ", ndim, " dims");
  return static_cast<int>(d);
}

Device parse_device(const std::string& s) {
  if (s == "cpu") return Device::cpu();
  if (s == "cuda") return Device::cuda(0);
  if (s.rfind("cuda:", 0) == 0) {
    char* end = nullptr;
    long i = std::strtol(s.c_str() + 5, &end, 10);
    if (end && *end == '\0' && i >= 0) return Device::cuda(static_cast<int>(i));
  }
  SK_FAIL("unknown device '", s, "' (expected cpu, cuda or cuda:N)");
}

Storage::Storage(size_t nbytes, Device device) : nbytes_(nbytes), device_(device) {
  if (device.is_cpu()) {
    size_t n = (std::max<size_t>(nbytes, 1) + 63) / 64 * 64;
    data_ = std::aligned_alloc(64, n);
    SK_CHECK(data_ != nullptr, "out of host memory allocating ", nbytes, " bytes");
  } else {
    data_ = cuda::raw_alloc(nbytes, device.index);
  }
}

Storage::~Storage() {
  if (device_.is_cpu()) std::free(data_);
  else cuda::raw_free(data_, device_.index);
}

// ---------------------------------------------------------------------------------------------
// host-side element conversion

namespace {

double load_as_double(const void* p, DType t) {
  switch (t) {
    case DType::F32: return *static_cast<const float*>(p);
    case DType::F64: return *static_cast<const double*>(p);
    case DType::BF16: return bf16::to_float(*static_cast<const uint16_t*>(p));
    case DType::I32: return *static_cast<const int32_t*>(p);
    case DType::I64: return static_cast<double>(*static_cast<const int64_t*>(p));
    case DType::U16: return *static_cast<const uint16_t*>(p);
  }
  return 0;
}

int64_t load_as_int(const void* p, DType t) {
  switch (t) {
    case DType::I32: return *static_cast<const int32_t*>(p);
    case DType::I64: return *static_cast<const int64_t*>(p);
    case DType::U16: return *static_cast<const uint16_t*>(p);
    default: return static_cast<int64_t>(load_as_double(p, t));
  }
}

void store_from(void* p, DType t, const void* src, DType src_t) {
  switch (t) {
    case DType::F32: *static_cast<float*>(p) = static_cast<float>(load_as_double(src, src_t)); break;
    case DType::F64: *static_cast<double*>(p) = load_as_double(src, src_t); break;
    case DType::BF16: *static_cast<uint16_t*>(p) = bf16::from_float(static_cast<float>(load_as_double(src, src_t))); break;
    case DType::I32: *static_cast<int32_t*>(p) = static_cast<int32_t>(load_as_int(src, src_t)); break;
    case DType::I64: *static_cast<int64_t*>(p) = load_as_int(src, src_t); break;
    case DType::U16: *static_cast<uint16_t*>(p) = static_cast<uint16_t>(load_as_int(src, src_t)); break;
  }
}

// Copies the strided CPU view `src` into `dst` (a CPU view of the same shape, any strides),
// converting dtypes.
void copy_cpu(const Tensor& dst, const Tensor& src) {
  const int64_t n = src.numel();
  if (n == 0) return;
  const size_t ssz = dtype_size(src.dtype()), dsz = dtype_size(dst.dtype());
  const char* sp = static_cast<const char*>(src.data_ptr());
  char* dp = static_cast<char*>(dst.data_ptr());
  if (src.is_contiguous() && dst.is_contiguous() && src.dtype() == dst.dtype()) {
    std::memcpy(dp, sp, n * ssz);
    return;
  }
  const Shape& shape = src.shape();
  const int nd = static_cast<int>(shape.size());
  std::vector<int64_t> idx(nd, 0);
  for (int64_t i = 0; i < n; ++i) {
    int64_t so = 0, dof = 0;
    for (int k = 0; k < nd; ++k) {
      so += idx[k] * src.strides()[k];
      dof += idx[k] * dst.strides()[k];
    }
    store_from(dp + dof * dsz, dst.dtype(), sp + so * ssz, src.dtype());
    for (int k = nd - 1; k >= 0; --k) {
      if (++idx[k] < shape[k]) break;
      idx[k] = 0;
    }
  }
}

#ifdef SPARSEK_HAS_CUDA
// Copies the strided CUDA view src into the contiguous CUDA tensor dst (same shape).
void copy_cuda_to_contiguous(const Tensor& dst, const Tensor& src) {
  if (src.numel() == 0) return;
  cuda::set_device(src.device().index);
  SK_KERNEL_CHECK(sk_cuda_copy_strided(dst.data_ptr(), kernel_dtype(dst.dtype()), src.data_ptr(),
                                       kernel_dtype(src.dtype()), static_cast<int>(src.ndim()),
                                       src.shape().data(), src.strides().data(), cuda::stream()));
}
#endif

// A fresh contiguous copy of `src` with dtype `dt` on src's device.
Tensor contiguous_copy(const Tensor& src, DType dt) {
  Tensor out = Tensor::empty(src.shape(), dt, src.device());
  if (src.device().is_cpu()) {
    copy_cpu(out, src);
  } else {
#ifdef SPARSEK_HAS_CUDA
    SK_CHECK(src.ndim() <= 8, "CUDA copies support up to 8 dims, got ", src.ndim());
    copy_cuda_to_contiguous(out, src);
#endif
  }
  return out;
}

// Moves a contiguous tensor between devices (same dtype).
Tensor move_contiguous(const Tensor& src, Device to) {
  Tensor out = Tensor::empty(src.shape(), src.dtype(), to);
  const size_t nb = src.nbytes();
  if (src.device().is_cpu() && to.is_cuda()) {
    cuda::set_device(to.index);
    cuda::copy_h2d(out.data_ptr(), src.data_ptr(), nb);
  } else if (src.device().is_cuda() && to.is_cpu()) {
    cuda::set_device(src.device().index);
    cuda::copy_d2h(out.data_ptr(), src.data_ptr(), nb);
  } else if (src.device().is_cuda() && to.is_cuda()) {
    SK_CHECK(src.device() == to, "copies between two CUDA devices go through the CPU: ", src.device().str(), " -> ",
             to.str());
    cuda::copy_d2d(out.data_ptr(), src.data_ptr(), nb);
  } else {
    std::memcpy(out.data_ptr(), src.data_ptr(), nb);
  }
  return out;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// creation

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  for (int64_t d : shape) SK_CHECK(d >= 0, "negative dimension in shape ", shape_str(shape));
  if (device.is_cuda()) SK_CHECK(cuda::is_available(), "cannot create a tensor on ", device.str(),
                                 cuda::compiled() ? ": no CUDA device is present" : ": this build has no CUDA");
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>(shape_numel(shape) * dtype_size(dtype), device);
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = dtype;
  return Tensor(impl);
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) { return full(shape, 0.0, dtype, device); }

Tensor Tensor::full(const Shape& shape, double value, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  t.fill_(value);
  return t;
}

Tensor Tensor::from_vector(const std::vector<double>& values, const Shape& shape, DType dtype, Device device) {
  SK_CHECK(static_cast<int64_t>(values.size()) == shape_numel(shape), "from_vector: ", values.size(),
           " values for shape ", shape_str(shape), " (", shape_numel(shape), " elements)");
  Tensor host = empty(shape, DType::F64, Device::cpu());
  std::memcpy(host.data_ptr(), values.data(), values.size() * sizeof(double));
  Tensor t = dtype == DType::F64 ? host : contiguous_copy(host, dtype);
  return device.is_cpu() ? t : move_contiguous(t, device);
}

Tensor Tensor::from_ints(const std::vector<int64_t>& values, const Shape& shape, DType dtype, Device device) {
  SK_CHECK(static_cast<int64_t>(values.size()) == shape_numel(shape), "from_ints: ", values.size(),
           " values for shape ", shape_str(shape));
  Tensor host = empty(shape, DType::I64, Device::cpu());
  std::memcpy(host.data_ptr(), values.data(), values.size() * sizeof(int64_t));
  Tensor t = dtype == DType::I64 ? host : contiguous_copy(host, dtype);
  return device.is_cpu() ? t : move_contiguous(t, device);
}

Tensor Tensor::randn(const Shape& shape, Rng& rng, DType dtype, Device device, double mean, double std) {
  std::vector<double> v(shape_numel(shape));
  for (double& x : v) x = mean + std * rng.normal();
  return from_vector(v, shape, dtype, device);
}

Tensor Tensor::uniform(const Shape& shape, Rng& rng, double lo, double hi, DType dtype, Device device) {
  std::vector<double> v(shape_numel(shape));
  for (double& x : v) x = rng.uniform(lo, hi);
  return from_vector(v, shape, dtype, device);
}

Tensor Tensor::randint(const Shape& shape, Rng& rng, int64_t n, DType dtype, Device device) {
  SK_CHECK(n > 0, "randint: n must be positive, got ", n);
  std::vector<int64_t> v(shape_numel(shape));
  for (int64_t& x : v) x = static_cast<int64_t>(rng.below(static_cast<uint64_t>(n)));
  return from_ints(v, shape, dtype, device);
}

// ---------------------------------------------------------------------------------------------
// metadata

void Tensor::check_defined(const char* what) const { SK_CHECK(impl_ != nullptr, what, ": the tensor is undefined"); }
const Shape& Tensor::shape() const { check_defined("shape"); return impl_->shape; }
const Strides& Tensor::strides() const { check_defined("strides"); return impl_->strides; }
int64_t Tensor::offset() const { check_defined("offset"); return impl_->offset; }
int64_t Tensor::numel() const { return shape_numel(shape()); }
DType Tensor::dtype() const { check_defined("dtype"); return impl_->dtype; }
Device Tensor::device() const { check_defined("device"); return impl_->storage->device(); }
int64_t Tensor::size(int64_t dim) const { return shape()[normalize_dim(dim, ndim(), "size")]; }

bool Tensor::is_contiguous() const {
  const Shape& s = shape();
  int64_t expected = 1;
  for (int64_t i = static_cast<int64_t>(s.size()) - 1; i >= 0; --i) {
    if (s[i] == 1) continue;
    if (impl_->strides[i] != expected) return false;
    expected *= s[i];
  }
  return true;
}

void* Tensor::data_ptr() const {
  check_defined("data_ptr");
  return static_cast<char*>(impl_->storage->data()) + impl_->offset * dtype_size(impl_->dtype);
}

std::string Tensor::str() const {
  if (!impl_) return "Tensor(undefined)";
  return "Tensor(shape=" + shape_str(shape()) + ", dtype=" + dtype_name(dtype()) + ", device=" + device().str() + ")";
}

Tensor make_view(const Tensor& base, const Shape& shape, const Strides& strides, int64_t offset) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = base.impl()->storage;
  impl->offset = offset;
  impl->shape = shape;
  impl->strides = strides;
  impl->dtype = base.dtype();
  return Tensor(impl);
}

// ---------------------------------------------------------------------------------------------
// copies and views (differentiable)

Tensor Tensor::contiguous() const {
  check_defined("contiguous");
  if (is_contiguous()) return *this;
  Tensor out = contiguous_copy(*this, dtype());
  if (autograd::needs_grad({this})) {
    autograd::record("contiguous", {*this}, {out}, [](const std::vector<Tensor>& g, const std::vector<bool>&) {
      return std::vector<Tensor>{g[0]};
    });
  }
  return out;
}

Tensor Tensor::clone() const {
  check_defined("clone");
  Tensor out = contiguous_copy(*this, dtype());
  if (autograd::needs_grad({this})) {
    autograd::record("clone", {*this}, {out}, [](const std::vector<Tensor>& g, const std::vector<bool>&) {
      return std::vector<Tensor>{g[0]};
    });
  }
  return out;
}

Tensor Tensor::to(DType dt) const {
  check_defined("to(dtype)");
  if (dt == dtype()) return *this;
  Tensor out = contiguous_copy(*this, dt);
  if (is_floating(dt) && is_floating(dtype()) && autograd::needs_grad({this})) {
    DType src_dt = dtype();
    autograd::record("to_dtype", {*this}, {out}, [src_dt](const std::vector<Tensor>& g, const std::vector<bool>&) {
      return std::vector<Tensor>{g[0].to(src_dt)};
    });
  }
  return out;
}

Tensor Tensor::to(Device dev) const {
  check_defined("to(device)");
  if (dev == device()) return *this;
  Tensor src = is_contiguous() ? *this : contiguous_copy(*this, dtype());
  Tensor out = move_contiguous(src, dev);
  if (autograd::needs_grad({this})) {
    Device src_dev = device();
    autograd::record("to_device", {*this}, {out}, [src_dev](const std::vector<Tensor>& g, const std::vector<bool>&) {
      return std::vector<Tensor>{g[0].to(src_dev)};
    });
  }
  return out;
}

namespace {

// The requested shape with a -1 resolved against numel elements; throws (naming `op`) unless it
// has exactly numel elements.
Shape resolve_shape(const char* op, const Shape& requested, int64_t numel, const Shape& from) {
  Shape shape = requested;
  int infer = -1;
  int64_t known = 1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      SK_CHECK(infer < 0, op, shape_str(requested), ": only one dimension may be -1");
      infer = static_cast<int>(i);
    } else {
      SK_CHECK(shape[i] >= 0, op, shape_str(requested), ": negative dimension");
      known *= shape[i];
    }
  }
  if (infer >= 0) {
    SK_CHECK(known > 0 && numel % known == 0, op, shape_str(requested), ": cannot infer -1 for ", numel, " elements");
    shape[infer] = numel / known;
  }
  SK_CHECK(shape_numel(shape) == numel, op, ": shape ", shape_str(requested), " has ", shape_numel(shape),
           " elements, the tensor ", shape_str(from), " has ", numel);
  return shape;
}

// Strides that show a tensor of (shape, strides) as new_shape (same element count) without
// copying, or false when no such strides exist. Walks the old dims from the innermost outward in
// chunks of dims that are contiguous with each other (stride[d - 1] == stride[d] * shape[d]); each
// chunk must be covered exactly by a run of new dims, which then take strides inside the chunk.
bool view_strides(const Shape& shape, const Strides& strides, const Shape& new_shape, Strides& out) {
  out.assign(new_shape.size(), 0);
  if (shape_numel(shape) == 0 || shape.empty()) {
    out = contiguous_strides(new_shape);
    return true;
  }
  int64_t nd = int64_t(new_shape.size()) - 1;
  int64_t chunk_stride = strides.back(), chunk_numel = 1, new_numel = 1;
  for (int64_t d = int64_t(shape.size()) - 1; d >= 0; --d) {
    chunk_numel *= shape[d];
    const bool chunk_ends = d == 0 || (shape[d - 1] != 1 && strides[d - 1] != chunk_numel * chunk_stride);
    if (!chunk_ends) continue;
    while (nd >= 0 && (new_numel < chunk_numel || new_shape[nd] == 1)) {
      out[nd] = new_numel * chunk_stride;
      new_numel *= new_shape[nd];
      --nd;
    }
    if (new_numel != chunk_numel) return false;
    if (d > 0) {
      chunk_stride = strides[d - 1];
      chunk_numel = 1;
      new_numel = 1;
    }
  }
  return nd == -1;
}

}  // namespace

// This tensor's elements seen as (shape, strides), recorded as one node whose backward reshapes back.
Tensor Tensor::reshaped_view(const char* op, const Shape& shape, const Strides& strides) const {
  Tensor out = make_view(*this, shape, strides, offset());
  if (autograd::needs_grad({this})) {
    Shape old = this->shape();
    autograd::record(op, {*this}, {out}, [old](const std::vector<Tensor>& g, const std::vector<bool>&) {
      return std::vector<Tensor>{g[0].reshape(old)};
    });
  }
  return out;
}

Tensor Tensor::view(const Shape& new_shape_in) const {
  check_defined("view");
  SK_CHECK(is_contiguous(), "view", shape_str(new_shape_in), " of a non-contiguous tensor ", str(),
           ": call reshape() or contiguous() first");
  const Shape new_shape = resolve_shape("view", new_shape_in, numel(), shape());
  return reshaped_view("view", new_shape, contiguous_strides(new_shape));
}

Tensor Tensor::reshape(const Shape& s) const {
  check_defined("reshape");
  if (is_contiguous()) return view(s);
  const Shape new_shape = resolve_shape("reshape", s, numel(), shape());
  Strides st;
  if (!view_strides(shape(), strides(), new_shape, st)) return contiguous().view(new_shape);
  return reshaped_view("reshape", new_shape, st);
}

Tensor Tensor::transpose(int64_t d0, int64_t d1) const {
  check_defined("transpose");
  int a = normalize_dim(d0, ndim(), "transpose"), b = normalize_dim(d1, ndim(), "transpose");
  Shape s = shape();
  Strides st = strides();
  std::swap(s[a], s[b]);
  std::swap(st[a], st[b]);
  Tensor out = make_view(*this, s, st, offset());
  if (autograd::needs_grad({this})) {
    autograd::record("transpose", {*this}, {out}, [a, b](const std::vector<Tensor>& g, const std::vector<bool>&) {
      return std::vector<Tensor>{g[0].transpose(a, b)};
    });
  }
  return out;
}

Tensor Tensor::slice(int64_t dim, int64_t start, int64_t end) const {
  check_defined("slice");
  int d = normalize_dim(dim, ndim(), "slice");
  const int64_t n = shape()[d];
  SK_CHECK(0 <= start && start <= end && end <= n, "slice [", start, ", ", end, ") is out of range for dim ", d,
           " of size ", n, " in ", str());
  Shape s = shape();
  s[d] = end - start;
  Tensor out = make_view(*this, s, strides(), offset() + start * strides()[d]);
  if (autograd::needs_grad({this})) {
    Shape full_shape = shape();
    autograd::record("slice", {*this}, {out}, [full_shape, d, start, end](const std::vector<Tensor>& g,
                                                                          const std::vector<bool>&) {
      Tensor full = Tensor::zeros(full_shape, g[0].dtype(), g[0].device());
      full.slice(d, start, end).copy_(g[0]);
      return std::vector<Tensor>{full};
    });
  }
  return out;
}

#ifdef SPARSEK_HAS_CUDA
namespace {
// Writes the contiguous CUDA tensor src into the strided CUDA view dst (same shape and dtype).
void copy_cuda_to_strided(const Tensor& dst, const Tensor& src);
}
#endif

void Tensor::copy_(const Tensor& src_in) {
  check_defined("copy_");
  SK_CHECK(src_in.defined(), "copy_: the source tensor is undefined");
  SK_CHECK(src_in.shape() == shape(), "copy_: source shape ", shape_str(src_in.shape()),
           " does not match destination shape ", shape_str(shape()));
  if (device().is_cpu() && src_in.device().is_cpu()) {
    copy_cpu(*this, src_in);
    return;
  }
  // Bring the source to our device, then convert dtype into a contiguous buffer.
  Tensor src = src_in.device() == device() ? src_in : src_in.detach().to(device());
  if (is_contiguous()) {
#ifdef SPARSEK_HAS_CUDA
    if (device().is_cuda()) {
      copy_cuda_to_contiguous(*this, src);
      return;
    }
#endif
    copy_cpu(*this, src);
    return;
  }
  Tensor tmp = contiguous_copy(src, dtype());
  if (device().is_cpu()) {
    copy_cpu(*this, tmp);
    return;
  }
#ifdef SPARSEK_HAS_CUDA
  copy_cuda_to_strided(*this, tmp);
#endif
}

void Tensor::fill_(double value) {
  check_defined("fill_");
  if (device().is_cpu()) {
    Tensor one = Tensor::empty({}, DType::F64, Device::cpu());
    *one.data<double>() = value;
    const size_t sz = dtype_size(dtype());
    std::vector<char> elem(sz);
    store_from(elem.data(), dtype(), one.data_ptr(), DType::F64);
    if (is_contiguous()) {
      char* p = static_cast<char*>(data_ptr());
      for (int64_t i = 0; i < numel(); ++i) std::memcpy(p + i * sz, elem.data(), sz);
    } else {
      Tensor c = Tensor::full(shape(), value, dtype(), device());
      copy_cpu(*this, c);
    }
    return;
  }
#ifdef SPARSEK_HAS_CUDA
  cuda::set_device(device().index);
  if (is_contiguous()) {
    SK_KERNEL_CHECK(sk_cuda_fill(data_ptr(), kernel_dtype(dtype()), numel(), value, cuda::stream()));
  } else {
    copy_(Tensor::full(shape(), value, dtype(), device()));
  }
#endif
}

#ifdef SPARSEK_HAS_CUDA
namespace {
void copy_cuda_to_strided(const Tensor& dst, const Tensor& src) {
  if (src.numel() == 0) return;
  cuda::set_device(dst.device().index);
  SK_KERNEL_CHECK(sk_cuda_copy_to_strided(dst.data_ptr(), src.data_ptr(), kernel_dtype(dst.dtype()),
                                          static_cast<int>(dst.ndim()), dst.shape().data(), dst.strides().data(),
                                          cuda::stream()));
}
}  // namespace
#endif

// ---------------------------------------------------------------------------------------------
// host access

std::vector<double> Tensor::to_vector() const {
  check_defined("to_vector");
  Tensor host = detach().to(Device::cpu());
  Tensor d = contiguous_copy(host, DType::F64);
  const double* p = d.data<double>();
  return std::vector<double>(p, p + d.numel());
}

double Tensor::item() const {
  SK_CHECK(numel() == 1, "item() needs a one-element tensor, got ", str());
  return to_vector()[0];
}

// ---------------------------------------------------------------------------------------------
// autograd entry points

bool Tensor::requires_grad() const { return impl_ && impl_->requires_grad; }

Tensor& Tensor::set_requires_grad(bool on) {
  check_defined("set_requires_grad");
  SK_CHECK(!impl_->grad_fn, "set_requires_grad: only leaf tensors can be marked (this one is the output of op '",
           impl_->grad_fn ? impl_->grad_fn->name : "", "'); use detach() first");
  SK_CHECK(!on || is_floating(dtype()), "set_requires_grad: only floating tensors can require grad, got ",
           dtype_name(dtype()));
  impl_->requires_grad = on;
  return *this;
}

bool Tensor::is_leaf() const { return impl_ && !impl_->grad_fn; }
Tensor Tensor::grad() const { return impl_ && impl_->grad ? Tensor(impl_->grad) : Tensor(); }
void Tensor::set_grad(const Tensor& g) {
  check_defined("set_grad");
  if (g.defined()) {
    SK_CHECK(g.shape() == shape(), "set_grad: gradient shape ", shape_str(g.shape()), " does not match ",
             shape_str(shape()));
    SK_CHECK(g.dtype() == dtype(), "set_grad: gradient dtype ", dtype_name(g.dtype()), " does not match the tensor's ",
             dtype_name(dtype()));
    SK_CHECK(g.device() == device(), "set_grad: gradient on ", g.device().str(), " for a tensor on ", device().str());
  }
  impl_->grad = g.defined() ? g.impl() : nullptr;
}
void Tensor::zero_grad() {
  if (impl_) impl_->grad = nullptr;
}

Tensor Tensor::detach() const {
  check_defined("detach");
  return make_view(*this, shape(), strides(), offset());
}

void Tensor::backward(const Tensor& grad_output) const { autograd::backward(*this, grad_output); }

}  // namespace sk
