// The single-process gradient reducer (src/dist/gradient_reducer.h) leaves gradients untouched;
// a multi-process world on the CPU (or in a build without NCCL) is refused naming the rank.
#include <gtest/gtest.h>

#include "dist/gradient_reducer.h"
#include "tensor/random.h"
#include "util/check.h"

using namespace sk;

TEST(GradientReducer, local_reducer_leaves_gradients_as_they_are) {
  Rng rng(1);
  Tensor p = Tensor::randn({4, 3}, rng).set_requires_grad();
  const Tensor g = Tensor::randn({4, 3}, rng);
  p.set_grad(g.clone());
  const auto r = dist::make_gradient_reducer(dist::World{}, Device::cpu(), "f32", 25, 300);
  EXPECT_EQ(r->world_size(), 1);
  r->reduce({p});
  EXPECT_EQ(p.grad().to_vector(), g.to_vector());
  EXPECT_EQ(r->mean_scalar(2.5), 2.5);
}

TEST(GradientReducer, a_multi_process_world_on_the_cpu_is_refused_naming_the_rank) {
  dist::World w;
  w.world_size = 2;
  w.rank = 1;
  w.source = "slurm";
  try {
    dist::make_gradient_reducer(w, Device::cpu(), "f32", 25, 300);
    FAIL() << "no error";
  } catch (const Error& e) {
    const std::string m = e.what();
    // No NCCL in this build: "cannot train in a world of 2 processes (rank 1, from the slurm
    // environment)"; with NCCL: "needs CUDA devices; train.device resolved to cpu on rank 1".
    EXPECT_NE(m.find("rank 1"), std::string::npos) << m;
  }
}
