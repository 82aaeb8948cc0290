// ZeRO-1 (src/dist/zero_optimizer.h) against optim::AdamW on the CPU:
//  - one rank (LocalCommunicator): bit-identical parameters to AdamW after several steps with
//    weight decay on some parameters only and gradient clipping active, and the same norm;
//  - two ranks (forked processes, TcpCommunicator; parameters straddling the shard boundary):
//    every rank ends with parameters bit-identical to AdamW run on the mean gradient
//    (f32((f64 g0 + f64 g1) / 2), what the TCP reduction computes), and each rank keeps only
//    its shard of the state;
//  - load_full keeps this rank's range of a full flat state.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "dist/tcp_communicator.h"
#include "dist/zero_optimizer.h"
#include "optim/adamw.h"
#include "optim/grad_clip.h"
#include "tensor/random.h"
#include "testing/test_helpers.h"

using namespace sk;
namespace fs = std::filesystem;

namespace {

const std::vector<int64_t> kSizes = {70, 3, 129, 40};  // 242 elements: shards of 128 on 2 ranks
const std::vector<bool> kDecay = {true, false, true, false};
const optim::AdamWConfig kCfg{.lr = 0.05, .beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1};

std::vector<Tensor> make_params() {
  Rng rng(7);
  std::vector<Tensor> ps;
  for (int64_t n : kSizes) ps.push_back(Tensor::randn({n}, rng).set_requires_grad());
  return ps;
}

// Rank r's gradient of parameter i at step s (deterministic).
Tensor grad_of(int rank, size_t i, int step) {
  Rng rng(1000 + 100 * uint64_t(rank) + 10 * uint64_t(i) + uint64_t(step));
  return Tensor::randn({kSizes[i]}, rng);
}

// f32((f64 a + f64 b) / 2), element-wise.
Tensor mean2(const Tensor& a, const Tensor& b) {
  std::vector<double> va = a.to_vector(), vb = b.to_vector(), out;
  for (size_t k = 0; k < va.size(); ++k) out.push_back(double(float((double(float(va[k])) + double(float(vb[k]))) / 2.0)));
  return Tensor::from_vector(out, a.shape());
}

// AdamW reference: `steps` steps on `grads(i, s)`, clip at max_norm.
std::vector<Tensor> reference(int steps, double max_norm, const std::function<Tensor(size_t, int)>& grads,
                              std::vector<double>* norms = nullptr) {
  std::vector<Tensor> ps = make_params();
  optim::AdamW opt(kCfg);
  for (size_t i = 0; i < ps.size(); ++i) opt.add_param(ps[i], kDecay[i]);
  for (int s = 0; s < steps; ++s) {
    for (size_t i = 0; i < ps.size(); ++i) ps[i].set_grad(grads(i, s));
    const optim::GradNorm gn = optim::global_grad_norm(ps, max_norm);
    if (norms) norms->push_back(gn.norm());
    opt.step(0.05 * (1 + s % 3), gn.coefficient);
  }
  return ps;
}

}  // namespace

TEST(ZeroOptimizer, one_rank_is_bit_identical_to_adamw) {
  const double max_norm = 3.0;  // below the norms here: clipping is active
  std::vector<double> ref_norms;
  const std::vector<Tensor> ref = reference(5, max_norm, [](size_t i, int s) { return grad_of(0, i, s); }, &ref_norms);
  dist::LocalCommunicator comm;
  std::vector<Tensor> ps = make_params();
  dist::ZeroOptimizer z(comm, kCfg, ps, kDecay);
  for (int s = 0; s < 5; ++s) {
    for (size_t i = 0; i < ps.size(); ++i) ps[i].set_grad(grad_of(0, i, s));
    const double norm = z.reduce_gradients(max_norm);
    EXPECT_EQ(norm, ref_norms[size_t(s)]) << "step " << s;
    EXPECT_GT(norm, max_norm);
    z.step(0.05 * (1 + s % 3));
  }
  EXPECT_EQ(z.step_count(), 5);
  for (size_t i = 0; i < ps.size(); ++i) EXPECT_EQ(ps[i].to_vector(), ref[i].to_vector()) << "parameter " << i;
}

TEST(ZeroOptimizer, two_ranks_match_adamw_on_the_mean_gradient_bitwise) {
  const double max_norm = 2.0;
  const std::vector<Tensor> ref =
      reference(4, max_norm, [](size_t i, int s) { return mean2(grad_of(0, i, s), grad_of(1, i, s)); });
  const auto dir = sk::testing::fresh_test_dir("sk_test_zero_two_ranks");
  std::vector<pid_t> pids;
  for (int r = 0; r < 2; ++r) {
    const pid_t pid = ::fork();
    if (pid == 0) {
      int code = 0;
      std::ofstream out(dir / ("rank" + std::to_string(r)));
      out << std::hexfloat;  // every bit
      try {
        dist::World w;
        w.rank = r;
        w.world_size = 2;
        w.master_port = 29721;
        dist::TcpCommunicator comm(w, 30);
        std::vector<Tensor> ps = make_params();
        dist::ZeroOptimizer z(comm, kCfg, ps, kDecay);
        // Each rank owns 128 elements (aligned to 64): parameter 2 straddles the boundary.
        out << "owned " << z.owned_m().numel() << "\n";
        for (int s = 0; s < 4; ++s) {
          for (size_t i = 0; i < ps.size(); ++i) ps[i].set_grad(grad_of(r, i, s));
          z.reduce_gradients(max_norm);
          z.step(0.05 * (1 + s % 3));
        }
        for (size_t i = 0; i < ps.size(); ++i)
          for (double x : ps[i].to_vector()) out << x << " ";
        out << "\n";
      } catch (const std::exception& e) {
        out << "error " << e.what() << "\n";
        code = 1;
      }
      out.close();
      ::_exit(code);
    }
    pids.push_back(pid);
  }
  std::ostringstream want;
  want << std::hexfloat;
  for (const Tensor& t : ref)
    for (double x : t.to_vector()) want << x << " ";
  for (int r = 0; r < 2; ++r) {
    int status = 0;
    ::waitpid(pids[size_t(r)], &status, 0);
    std::ifstream f(dir / ("rank" + std::to_string(r)));
    std::string owned, params;
    std::getline(f, owned);
    std::getline(f, params);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << owned;
    EXPECT_EQ(owned, r == 0 ? "owned 128" : "owned 114");
    EXPECT_EQ(params, want.str()) << "rank " << r;
  }
  fs::remove_all(dir);
}

TEST(ZeroOptimizer, load_full_keeps_this_ranks_range) {
  dist::LocalCommunicator comm;
  std::vector<Tensor> ps = make_params();
  dist::ZeroOptimizer z(comm, kCfg, ps, kDecay);
  std::vector<float> m(242), v(242), master(242);
  for (int k = 0; k < 242; ++k) {
    m[size_t(k)] = float(k);
    v[size_t(k)] = float(2 * k);
    master[size_t(k)] = float(-k);
  }
  z.load_full(9, m, v, master);
  EXPECT_EQ(z.step_count(), 9);
  EXPECT_EQ(z.owned_m().numel(), 242);
  EXPECT_EQ(z.owned_v().to_vector()[241], 482.0);
  EXPECT_EQ(z.owned_master().to_vector()[5], -5.0);
  EXPECT_THROW(z.load_full(1, std::vector<float>(3), v, master), Error);
}
