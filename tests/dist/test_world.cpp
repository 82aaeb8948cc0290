// The world read from each launcher's environment convention (src/dist/world.h): torchrun,
// Slurm (with its node-list forms), Open MPI, none; and the errors for bad values.
#include <gtest/gtest.h>

#include <map>

#include "dist/world.h"
#include "util/check.h"

using namespace sk;

namespace {

dist::World world_of(const std::map<std::string, std::string>& vars) {
  return dist::world_from_env([&](const std::string& n) -> std::optional<std::string> {
    const auto it = vars.find(n);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  });
}

std::string error_of(const std::map<std::string, std::string>& vars) {
  try {
    world_of(vars);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(World, nothing_set_is_a_single_process) {
  const dist::World w = world_of({});
  EXPECT_EQ(w.rank, 0);
  EXPECT_EQ(w.world_size, 1);
  EXPECT_FALSE(w.distributed());
  EXPECT_EQ(w.source, "none");
}

TEST(World, torchrun_variables) {
  const dist::World w = world_of({{"RANK", "3"}, {"WORLD_SIZE", "8"}, {"LOCAL_RANK", "1"}, {"LOCAL_WORLD_SIZE", "2"},
                                  {"MASTER_ADDR", "10.0.0.5"}, {"MASTER_PORT", "12345"}});
  EXPECT_EQ(w.source, "torchrun");
  EXPECT_EQ(w.rank, 3);
  EXPECT_EQ(w.world_size, 8);
  EXPECT_EQ(w.local_rank, 1);
  EXPECT_EQ(w.local_world_size, 2);
  EXPECT_EQ(w.master_addr, "10.0.0.5");
  EXPECT_EQ(w.master_port, 12345);
  EXPECT_TRUE(w.distributed());
}

TEST(World, slurm_variables_master_is_the_first_node) {
  const dist::World w = world_of({{"SLURM_PROCID", "5"}, {"SLURM_NTASKS", "8"}, {"SLURM_LOCALID", "1"},
                                  {"SLURM_NTASKS_PER_NODE", "2(x4)"}, {"SLURM_JOB_NODELIST", "gpu[07-10],login1"}});
  EXPECT_EQ(w.source, "slurm");
  EXPECT_EQ(w.rank, 5);
  EXPECT_EQ(w.world_size, 8);
  EXPECT_EQ(w.local_rank, 1);
  EXPECT_EQ(w.local_world_size, 2);
  EXPECT_EQ(w.master_addr, "gpu07");
  EXPECT_EQ(w.master_port, 29500);
  // MASTER_ADDR / MASTER_PORT set in the batch script win.
  const dist::World w2 = world_of({{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "2"}, {"SLURM_JOB_NODELIST", "a,b"},
                                   {"MASTER_ADDR", "b"}, {"MASTER_PORT", "40000"}});
  EXPECT_EQ(w2.master_addr, "b");
  EXPECT_EQ(w2.master_port, 40000);
}

TEST(World, open_mpi_variables) {
  const dist::World w = world_of({{"OMPI_COMM_WORLD_RANK", "1"}, {"OMPI_COMM_WORLD_SIZE", "2"},
                                  {"OMPI_COMM_WORLD_LOCAL_RANK", "1"}, {"OMPI_COMM_WORLD_LOCAL_SIZE", "2"}});
  EXPECT_EQ(w.source, "openmpi");
  EXPECT_EQ(w.rank, 1);
  EXPECT_EQ(w.world_size, 2);
  EXPECT_EQ(w.local_rank, 1);
}

TEST(World, torchrun_wins_over_slurm_when_both_are_set) {
  const dist::World w = world_of({{"RANK", "1"}, {"WORLD_SIZE", "2"}, {"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "1"}});
  EXPECT_EQ(w.source, "torchrun");
  EXPECT_EQ(w.rank, 1);
}

TEST(World, bad_values_name_the_variable) {
  EXPECT_NE(error_of({{"RANK", "x"}, {"WORLD_SIZE", "2"}}).find("RANK=\"x\""), std::string::npos);
  EXPECT_NE(error_of({{"RANK", "2"}, {"WORLD_SIZE", "2"}}).find("rank 2 is not below the world size 2"), std::string::npos);
  EXPECT_NE(error_of({{"RANK", "0"}}).find("RANK and WORLD_SIZE"), std::string::npos);
  EXPECT_NE(error_of({{"MASTER_PORT", "70000"}}).find("MASTER_PORT"), std::string::npos);
  EXPECT_NE(error_of({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"LOCAL_RANK", "2"}, {"LOCAL_WORLD_SIZE", "2"}})
                .find("local rank 2"),
            std::string::npos);
  EXPECT_NE(error_of({{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "2"}, {"SLURM_JOB_NODELIST", "n[1-"}}).find("n[1-"),
            std::string::npos);
}

TEST(SlurmNodelist, expands_every_form) {
  using V = std::vector<std::string>;
  EXPECT_EQ(dist::expand_slurm_nodelist("node01"), V({"node01"}));
  EXPECT_EQ(dist::expand_slurm_nodelist("a,b,c"), V({"a", "b", "c"}));
  EXPECT_EQ(dist::expand_slurm_nodelist("node[01-04,07]"), V({"node01", "node02", "node03", "node04", "node07"}));
  EXPECT_EQ(dist::expand_slurm_nodelist("gpu-[8-10],cpu[001],x"), V({"gpu-8", "gpu-9", "gpu-10", "cpu001", "x"}));
  EXPECT_EQ(dist::expand_slurm_nodelist("n[098-101]"), V({"n098", "n099", "n100", "n101"}));
  EXPECT_EQ(dist::expand_slurm_nodelist("a[1,3],b[2]"), V({"a1", "a3", "b2"}));
}

TEST(SlurmNodelist, malformed_lists_are_errors) {
  for (const std::string bad : {"", "n[1-", "n[a-b]", "n[3-1]", "[1-2]", "n[1]x", "a,,b"}) {
    SCOPED_TRACE(bad);
    EXPECT_THROW(dist::expand_slurm_nodelist(bad), Error);
  }
}
