// The backward pass: collects the nodes reachable from the root, replays them in decreasing
// creation order (the tape in reverse), accumulates gradients into leaves, frees the graph.
// Checked by tests/autograd/test_autograd.cpp.
#include <algorithm>
#include <unordered_map>
#include <unordered_set>

#include "autograd/node.h"
#include "ops/ops.h"
#include "util/check.h"

namespace sk::autograd {

namespace {
thread_local bool tl_grad_enabled = true;
uint64_t next_sequence() {
  static thread_local uint64_t seq = 0;
  return ++seq;
}

// Returns dst + g, or g itself when dst is undefined. A leaf's .grad must never share memory with
// anything else (optimizers and clipping modify it in place), while gradients flowing through the
// graph may alias one another (add's backward hands one tensor to both inputs; view backwards
// return views). So g is taken as is only when nothing else holds it: this call owns the last
// handle to it and no other view shares its storage; otherwise it is copied.
Tensor accumulate(const Tensor& dst, Tensor&& g) {
  if (dst.defined()) return ops::add(dst, g);
  const bool sole_owner = g.impl().use_count() == 1 && g.impl()->storage.use_count() == 1 && g.is_contiguous() &&
                          g.offset() == 0;
  return sole_owner ? std::move(g) : g.clone();
}
}  // namespace

bool grad_enabled() { return tl_grad_enabled; }
NoGradGuard::NoGradGuard() : prev_(tl_grad_enabled) { tl_grad_enabled = false; }
NoGradGuard::~NoGradGuard() { tl_grad_enabled = prev_; }

bool needs_grad(std::initializer_list<const Tensor*> inputs) {
  if (!tl_grad_enabled) return false;
  for (const Tensor* t : inputs)
    if (t && t->defined() && t->requires_grad()) return true;
  return false;
}
bool needs_grad(const std::vector<Tensor>& inputs) {
  if (!tl_grad_enabled) return false;
  for (const Tensor& t : inputs)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

void record(const char* name, const std::vector<Tensor>& inputs, const std::vector<Tensor>& outputs, BackwardFn fn) {
  auto node = std::make_shared<Node>();
  node->name = name;
  node->sequence = next_sequence();
  node->backward = std::move(fn);
  node->edges.resize(inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Tensor& t = inputs[i];
    if (!t.defined() || !t.requires_grad()) continue;
    if (t.impl()->grad_fn) {
      node->edges[i].node = t.impl()->grad_fn;
      node->edges[i].output_nr = t.impl()->output_nr;
    } else {
      node->edges[i].leaf = t.impl();
    }
  }
  for (size_t k = 0; k < outputs.size(); ++k) {
    const Tensor& out = outputs[k];
    node->outputs.push_back({out.shape(), out.dtype(), out.device()});
    out.impl()->requires_grad = true;
    out.impl()->grad_fn = node;
    out.impl()->output_nr = static_cast<int>(k);
  }
}

void backward(const Tensor& root, const Tensor& grad_root_in) {
  SK_CHECK(root.defined(), "backward() on an undefined tensor");
  SK_CHECK(root.requires_grad(), "backward() called on ", root.str(),
           ", which does not require grad: no input of the computation had requires_grad set "
           "(or it ran under NoGradGuard)");
  Tensor grad_root = grad_root_in;
  if (!grad_root.defined()) {
    SK_CHECK(root.numel() == 1, "backward() without a gradient needs a scalar; got ", root.str(),
             " (pass grad_output of the same shape)");
    grad_root = Tensor::ones(root.shape(), root.dtype(), root.device());
  }
  SK_CHECK(grad_root.shape() == root.shape(), "backward(): grad_output shape ", shape_str(grad_root.shape()),
           " does not match the tensor's shape ", shape_str(root.shape()));
  NoGradGuard no_grad;

  if (!root.impl()->grad_fn) {  // a leaf
    root.impl()->grad = accumulate(root.grad(), grad_root.to(root.dtype())).impl();
    return;
  }

  // Collect the reachable nodes. They are held by shared_ptr here because freeing a node's edges
  // below releases the only other owners of its producers.
  std::vector<std::shared_ptr<Node>> nodes;
  std::unordered_set<Node*> seen;
  std::vector<std::shared_ptr<Node>> stack{root.impl()->grad_fn};
  while (!stack.empty()) {
    std::shared_ptr<Node> n = stack.back();
    stack.pop_back();
    if (!seen.insert(n.get()).second) continue;
    SK_CHECK(n->backward, "backward() through op '", n->name,
             "' whose graph was already freed by an earlier backward(); recompute the forward");
    nodes.push_back(n);
    for (const Edge& e : n->edges)
      if (e.node) stack.push_back(e.node);
  }
  std::sort(nodes.begin(), nodes.end(), [](const auto& a, const auto& b) { return a->sequence > b->sequence; });

  std::unordered_map<Node*, std::vector<Tensor>> pending;
  pending[root.impl()->grad_fn.get()].resize(root.impl()->grad_fn->outputs.size());
  pending[root.impl()->grad_fn.get()][root.impl()->output_nr] = grad_root.to(root.dtype());

  for (const std::shared_ptr<Node>& n : nodes) {
    auto it = pending.find(n.get());
    if (it == pending.end()) {  // reachable but no gradient flowed here (cannot happen for a DAG from root)
      n->backward = nullptr;
      continue;
    }
    std::vector<Tensor> grads = std::move(it->second);
    pending.erase(it);
    grads.resize(n->outputs.size());
    for (size_t k = 0; k < grads.size(); ++k)
      if (!grads[k].defined())
        grads[k] = Tensor::zeros(n->outputs[k].shape, n->outputs[k].dtype, n->outputs[k].device);
    std::vector<bool> needs(n->edges.size());
    for (size_t i = 0; i < n->edges.size(); ++i) needs[i] = n->edges[i].active();
    std::vector<Tensor> in_grads = n->backward(grads, needs);
    SK_CHECK(in_grads.size() == n->edges.size(), "op '", n->name, "' backward returned ", in_grads.size(),
             " gradients for ", n->edges.size(), " inputs");
    for (size_t i = 0; i < n->edges.size(); ++i) {
      const Edge& e = n->edges[i];
      if (!e.active()) continue;
      SK_CHECK(in_grads[i].defined(), "op '", n->name, "' backward gave no gradient for input ", i);
      if (e.node) {
        auto& slot = pending[e.node.get()];
        slot.resize(e.node->outputs.size());
        SK_CHECK(in_grads[i].shape() == e.node->outputs[e.output_nr].shape, "op '", n->name,
                 "' backward: gradient for input ", i, " has shape ", shape_str(in_grads[i].shape()),
                 ", expected ", shape_str(e.node->outputs[e.output_nr].shape));
        slot[e.output_nr] = slot[e.output_nr].defined() ? ops::add(slot[e.output_nr], in_grads[i]) : in_grads[i];
      } else {
        SK_CHECK(in_grads[i].shape() == e.leaf->shape, "op '", n->name, "' backward: gradient for leaf input ", i,
                 " has shape ", shape_str(in_grads[i].shape()), ", expected ", shape_str(e.leaf->shape));
        Tensor g = std::move(in_grads[i]);
        if (g.dtype() != e.leaf->dtype) g = g.to(e.leaf->dtype);
        Tensor existing = e.leaf->grad ? Tensor(e.leaf->grad) : Tensor();
        e.leaf->grad = accumulate(existing, std::move(g)).impl();
      }
    }
    // Free this node's part of the graph: saved tensors (in the closure) and edges.
    n->backward = nullptr;
    n->edges.clear();
  }
}

}  // namespace sk::autograd
