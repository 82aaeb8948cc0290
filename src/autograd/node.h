// Autograd: the recorded graph and how ops add to it.
//
// Each differentiable op that sees an input requiring grad (with grad mode on) records one Node:
// the edges to its inputs (the producing node and output index, or the leaf tensor itself), the
// metadata of its outputs, and ONE backward closure for the whole op, however many outputs it
// has; fused ops (layernorm, fused cross-entropy, attention) therefore register a single backward.
// The closure captures only the tensors its gradient needs. Nodes carry a creation sequence
// number; backward (autograd/backward.cpp) runs the reachable nodes in decreasing sequence, i.e.
// it replays the tape of recorded ops in reverse, then frees the graph.
#pragma once
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace sk::autograd {

struct Edge {
  std::shared_ptr<Node> node;        // producer of a non-leaf input
  int output_nr = 0;                 // which of the producer's outputs
  std::shared_ptr<TensorImpl> leaf;  // a leaf input that requires grad
  bool active() const { return node != nullptr || leaf != nullptr; }
};

struct OutputMeta {
  Shape shape;
  DType dtype;
  Device device;
};

// grad_outputs: one gradient per output (zeros where an output got none).
// needs_input_grad[i]: whether input i needs a gradient; the closure may return an undefined
// Tensor for inputs that do not.
using BackwardFn = std::function<std::vector<Tensor>(const std::vector<Tensor>& grad_outputs,
                                                     const std::vector<bool>& needs_input_grad)>;

struct Node {
  std::string name;
  uint64_t sequence = 0;
  std::vector<Edge> edges;  // one per input, in the op's input order
  std::vector<OutputMeta> outputs;
  BackwardFn backward;      // reset to nullptr once run (the graph is freed after backward)
};

// Grad mode (thread-local, on by default).
bool grad_enabled();
class NoGradGuard {
 public:
  NoGradGuard();
  ~NoGradGuard();
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool prev_;
};

// True when grad mode is on and any of the inputs requires grad.
bool needs_grad(std::initializer_list<const Tensor*> inputs);
bool needs_grad(const std::vector<Tensor>& inputs);

// Records `fn` as the backward of op `name` whose inputs are `inputs` (undefined tensors allowed,
// for optional inputs) and outputs `outputs`; marks the outputs as requiring grad. Call only when
// needs_grad(inputs) is true.
void record(const char* name, const std::vector<Tensor>& inputs, const std::vector<Tensor>& outputs, BackwardFn fn);

// Runs reverse-mode differentiation from `root` (see Tensor::backward).
void backward(const Tensor& root, const Tensor& grad_root);

}  // namespace sk::autograd
