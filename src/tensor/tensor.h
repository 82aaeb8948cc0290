// Tensor: a typed, strided view (shape, strides, offset) of a shared Storage, plus autograd state.
//
// Legend used across the project: B batch, T time, H heads, D head dim, C channels, V vocab,
// N rows (= B*T when flattened). Dimensions are listed outermost first; strides count elements.
//
// A Tensor is a cheap handle (shared_ptr to TensorImpl); copies share data and autograd state.
// View methods (view, reshape, transpose, slice) share storage; contiguous() copies only when
// needed. Conversions (to(Device), to(DType)) and views are differentiable.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "tensor/bf16.h"
#include "tensor/device.h"
#include "tensor/dtype.h"
#include "tensor/random.h"
#include "tensor/shape.h"
#include "tensor/storage.h"

namespace sk {

namespace autograd {
struct Node;
}

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  int64_t offset = 0;  // in elements, into storage
  Shape shape;
  Strides strides;
  DType dtype = DType::F32;

  // autograd state
  bool requires_grad = false;
  std::shared_ptr<TensorImpl> grad;            // leaf gradient (accumulated by backward)
  std::shared_ptr<autograd::Node> grad_fn;     // the node that produced this tensor (non-leaf)
  int output_nr = 0;                           // which output of grad_fn this is
};

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // ---- creation ----
  static Tensor empty(const Shape& shape, DType dtype = DType::F32, Device device = Device::cpu());
  static Tensor zeros(const Shape& shape, DType dtype = DType::F32, Device device = Device::cpu());
  static Tensor full(const Shape& shape, double value, DType dtype = DType::F32, Device device = Device::cpu());
  static Tensor ones(const Shape& shape, DType dtype = DType::F32, Device device = Device::cpu()) {
    return full(shape, 1.0, dtype, device);
  }
  // From host values (converted to dtype); values.size() must equal the shape's element count.
  static Tensor from_vector(const std::vector<double>& values, const Shape& shape, DType dtype = DType::F32,
                            Device device = Device::cpu());
  static Tensor from_ints(const std::vector<int64_t>& values, const Shape& shape, DType dtype = DType::I32,
                          Device device = Device::cpu());
  // Random normal(mean, std) / uniform[lo, hi), drawn on the CPU in double then converted.
  static Tensor randn(const Shape& shape, Rng& rng, DType dtype = DType::F32, Device device = Device::cpu(),
                      double mean = 0.0, double std = 1.0);
  static Tensor uniform(const Shape& shape, Rng& rng, double lo, double hi, DType dtype = DType::F32,
                        Device device = Device::cpu());
  // Uniform integers in [0, n).
  static Tensor randint(const Shape& shape, Rng& rng, int64_t n, DType dtype = DType::I32,
                        Device device = Device::cpu());

  // ---- metadata ----
  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const;
  const Strides& strides() const;
  int64_t offset() const;
  int64_t ndim() const { return static_cast<int64_t>(shape().size()); }
  int64_t size(int64_t dim) const;  // negative dims count from the end
  int64_t numel() const;
  DType dtype() const;
  Device device() const;
  bool is_cuda() const { return device().is_cuda(); }
  bool is_contiguous() const;
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype()); }
  std::string str() const;  // "Tensor(shape=(2, 3), dtype=f32, device=cpu)"

  // Pointer to the first element of this view (storage base + offset).
  void* data_ptr() const;
  template <typename T>
  T* data() const {
    return static_cast<T*>(data_ptr());
  }

  // ---- copies and views (all differentiable for floating tensors) ----
  Tensor to(Device device) const;
  Tensor to(DType dtype) const;
  Tensor cpu() const { return to(Device::cpu()); }
  Tensor contiguous() const;
  Tensor clone() const;  // always a fresh contiguous copy
  Tensor view(const Shape& shape) const;     // requires a contiguous tensor; one dim may be -1
  Tensor reshape(const Shape& shape) const;  // a (possibly strided) view when possible, else a copy
  Tensor transpose(int64_t d0, int64_t d1) const;
  Tensor slice(int64_t dim, int64_t start, int64_t end) const;  // [start, end) along dim
  // In-place copy of src's values into this tensor (shapes must match; any devices/dtypes).
  // Not recorded by autograd: use on leaves or in no-grad code.
  void copy_(const Tensor& src);
  void fill_(double value);

  // ---- host access (tests, logging) ----
  std::vector<double> to_vector() const;  // all elements, row-major, as double
  double item() const;                   // the value of a one-element tensor

  // ---- autograd ----
  bool requires_grad() const;
  Tensor& set_requires_grad(bool on = true);  // only on leaves (tensors without grad_fn)
  bool is_leaf() const;
  Tensor grad() const;                        // undefined Tensor if none yet
  void set_grad(const Tensor& g);
  void zero_grad();                           // drops the gradient
  Tensor detach() const;                      // same data, no autograd history
  // Reverse-mode backward from this tensor: a scalar unless `grad_output` is given.
  void backward(const Tensor& grad_output = Tensor()) const;

  const std::shared_ptr<TensorImpl>& impl() const { return impl_; }

 private:
  void check_defined(const char* what) const;
  // view() and reshape(): this tensor's data as (shape, strides), one autograd node named op.
  Tensor reshaped_view(const char* op, const Shape& shape, const Strides& strides) const;
  std::shared_ptr<TensorImpl> impl_;
};

// Makes a view sharing `base`'s storage with another shape/strides/offset (no autograd).
Tensor make_view(const Tensor& base, const Shape& shape, const Strides& strides, int64_t offset);

}  // namespace sk
