// Trajectory diagnostics of `sparsek bench train` (bench_train_diagnostics.h).
#include "cli/bench_train_diagnostics.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <string>
#include <vector>

#include "autograd/node.h"
#include "ops/ops.h"

namespace sk::cli {
namespace {

// Per parameter (same order and shapes in a and b): both gradients' norms under a_key / b_key and
// their relative L2 distance |a - b| / |b|; `worst` gets the largest distance and its parameter.
struct Worst {
  double rel_l2 = 0;
  std::string name;
};
nlohmann::json grad_table(const std::vector<std::string>& names, const std::vector<Tensor>& a,
                          const std::vector<Tensor>& b, const char* a_key, const char* b_key, Worst& worst) {
  nlohmann::json table = nlohmann::json::object();
  for (size_t i = 0; i < names.size(); ++i) {
    const std::vector<double> va = a[i].to(Device::cpu()).to_vector(), vb = b[i].to(Device::cpu()).to_vector();
    double na = 0, nb = 0, nd = 0;
    for (size_t j = 0; j < va.size(); ++j) {
      na += va[j] * va[j];
      nb += vb[j] * vb[j];
      nd += (va[j] - vb[j]) * (va[j] - vb[j]);
    }
    const double rel = std::sqrt(nd) / std::max(std::sqrt(nb), 1e-30);
    table[names[i]] = {{a_key, std::sqrt(na)}, {b_key, std::sqrt(nb)}, {"rel_l2", rel}};
    if (rel > worst.rel_l2) worst = {rel, names[i]};
  }
  return table;
}

}  // namespace

nlohmann::json grad_norms_by_parameter(const model::Gpt& gpt) {
  nlohmann::json norms = nlohmann::json::object();
  for (const auto& [name, p] : gpt.named_parameters()) {
    double sum = 0;
    for (double v : p.grad().to(Device::cpu()).to_vector()) sum += v * v;
    norms[name] = std::sqrt(sum);
  }
  return norms;
}

nlohmann::json diagnose_against_cpu(const model::Gpt& gpu, model::Gpt& cpu, const Tensor& x, const Tensor& y) {
  const auto t0 = std::chrono::steady_clock::now();
  auto pg = gpu.named_parameters(), pc = cpu.named_parameters();
  for (size_t i = 0; i < pg.size(); ++i) {
    pc[i].second.copy_(pg[i].second);
    pc[i].second.zero_grad();
    pg[i].second.zero_grad();
  }
  Tensor lg = gpu.loss(x, y), lc = cpu.loss(x.to(Device::cpu()), y.to(Device::cpu()));
  lg.backward();
  lc.backward();
  std::vector<std::string> names;
  std::vector<Tensor> gg, gc;
  for (size_t i = 0; i < pg.size(); ++i) {
    names.push_back(pg[i].first);
    gg.push_back(pg[i].second.grad());
    gc.push_back(pc[i].second.grad());
    pg[i].second.zero_grad();
    pc[i].second.zero_grad();
  }
  Worst worst;
  nlohmann::json grads = grad_table(names, gg, gc, "gpu", "cpu", worst);
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  spdlog::info("bench train: diagnosis: loss gpu {:.5f} cpu {:.5f}; worst gradient {} rel L2 {:.3g} ({:.0f} ms)", lg.item(),
               lc.item(), worst.name, worst.rel_l2, ms);
  return {{"loss_gpu", lg.item()}, {"loss_cpu", lc.item()}, {"grads", grads}};
}

nlohmann::json check_batch_split(const model::Gpt& gpu, const Tensor& x, const Tensor& y) {
  auto pg = gpu.named_parameters();
  for (auto& [n, p] : pg) p.zero_grad();
  const int64_t B = x.size(0);
  Tensor lf = gpu.loss(x, y);
  lf.backward();
  std::vector<std::string> names;
  std::vector<Tensor> full, acc(pg.size());
  for (auto& [n, p] : pg) {
    names.push_back(n);
    full.push_back(p.grad().to(DType::F32));
    p.zero_grad();
  }
  double loss_sum = 0;
  for (int64_t b = 0; b < B; ++b) {
    Tensor lb = gpu.loss(x.slice(0, b, b + 1).contiguous(), y.slice(0, b, b + 1).contiguous());
    lb.backward();
    loss_sum += lb.item();
    autograd::NoGradGuard no_grad;
    for (size_t i = 0; i < pg.size(); ++i) {
      Tensor g = pg[i].second.grad().to(DType::F32);
      acc[i] = acc[i].defined() ? ops::add(acc[i], g) : g;
      pg[i].second.zero_grad();
    }
  }
  for (Tensor& a : acc) a = ops::scale(a, 1.0 / double(B));
  Worst worst;
  nlohmann::json grads = grad_table(names, full, acc, "full", "mean_of_sequences", worst);
  spdlog::info("bench train: batch split: loss {:.5f} vs mean of sequences {:.5f}; worst gradient {} rel L2 {:.3g}",
               lf.item(), loss_sum / double(B), worst.name, worst.rel_l2);
  return {{"loss_full", lf.item()}, {"loss_mean_of_sequences", loss_sum / double(B)}, {"grads", grads}};
}

}  // namespace sk::cli
