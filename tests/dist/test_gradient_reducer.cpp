// The gradient reducer (src/dist/gradient_reducer.h) and the local communicator: a world of one
// leaves gradients untouched; the bucketed reducer over a one-rank communicator packs and unpacks
// every gradient unchanged whatever the bucket size; bf16 reduction needs NCCL; a multi-process
// world on CUDA without NCCL is refused naming the rank.
#include <gtest/gtest.h>

#include "dist/communicator.h"
#include "dist/gradient_reducer.h"
#include "dist/nccl_reducer.h"
#include "tensor/random.h"
#include "util/check.h"

using namespace sk;

TEST(GradientReducer, local_reducer_leaves_gradients_as_they_are) {
  Rng rng(1);
  Tensor p = Tensor::randn({4, 3}, rng).set_requires_grad();
  const Tensor g = Tensor::randn({4, 3}, rng);
  p.set_grad(g.clone());
  const auto comm = dist::make_communicator(dist::World{}, Device::cpu(), 300);
  const auto r = dist::make_gradient_reducer(*comm, "f32", 25);
  EXPECT_EQ(r->world_size(), 1);
  r->reduce({p});
  EXPECT_EQ(p.grad().to_vector(), g.to_vector());
  EXPECT_EQ(r->mean_scalar(2.5), 2.5);
}

TEST(GradientReducer, buckets_pack_and_unpack_every_gradient) {
  Rng rng(2);
  std::vector<Tensor> ps, gs;
  for (int64_t n : {5, 130, 1, 64}) {
    Tensor p = Tensor::randn({n}, rng).set_requires_grad();
    gs.push_back(Tensor::randn({n}, rng));
    p.set_grad(gs.back().clone());
    ps.push_back(p);
  }
  dist::LocalCommunicator comm;
  for (double mb : {1e-4, 25.0}) {  // 26 floats per bucket (a parameter larger than a bucket too), one bucket
    dist::BucketReducer r(comm, "f32", mb);
    r.reduce(ps);
    for (size_t i = 0; i < ps.size(); ++i) EXPECT_EQ(ps[i].grad().to_vector(), gs[i].to_vector());
  }
}

TEST(GradientReducer, bf16_reduction_needs_nccl) {
  dist::LocalCommunicator comm;
  try {
    dist::BucketReducer r(comm, "bf16", 25);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("needs the NCCL backend"), std::string::npos) << e.what();
  }
}

TEST(GradientReducer, a_cuda_world_without_nccl_or_gpu_is_refused_naming_the_rank) {
  dist::World w;
  w.world_size = 2;
  w.rank = 1;
  w.source = "slurm";
  try {
    dist::make_nccl_communicator(w, Device::cpu(), 300);
    FAIL() << "no error";
  } catch (const Error& e) {
    const std::string m = e.what();
    // No NCCL in this build: "cannot train on cpu in a world of 2 processes (rank 1, from the
    // slurm environment)"; with NCCL: "needs CUDA devices; train.device resolved to cpu on rank 1".
    EXPECT_NE(m.find("rank 1"), std::string::npos) << m;
  }
}
