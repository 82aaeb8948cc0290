// The process world of a multi-process (one process per GPU) run, read from the environment
// conventions launchers use:
//   torchrun / sparsek launch  RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT
//   Slurm (srun)               SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID, SLURM_NTASKS_PER_NODE,
//                              master = first host of SLURM_JOB_NODELIST ("node[01-04,07]" -> node01)
//   Open MPI (mpirun)          OMPI_COMM_WORLD_RANK, OMPI_COMM_WORLD_SIZE, OMPI_COMM_WORLD_LOCAL_RANK
// Checked in that order; MASTER_ADDR / MASTER_PORT override the Slurm/MPI defaults when set.
// Nothing set: a single process (rank 0 of 1). Errors (non-numbers, rank >= world size) name
// the variable and its value.
// Tests: tests/dist/test_world.cpp.
#pragma once
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace sk::dist {

struct World {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  int local_world_size = 1;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  std::string source = "none";  // "torchrun", "slurm", "openmpi" or "none"
  bool distributed() const { return world_size > 1; }
};

// Looks a variable up (std::getenv in production, a map in tests); nullopt when unset.
using EnvLookup = std::function<std::optional<std::string>(const std::string&)>;
EnvLookup process_environment();

World world_from_env(const EnvLookup& env);
inline World world_from_environment() { return world_from_env(process_environment()); }

// The hosts of a Slurm node list, expanded in order: "a,b[01-03,07],c-[1-2]" ->
// a, b01, b02, b03, b07, c-1, c-2 (zero padding kept). Throws naming the list when malformed.
std::vector<std::string> expand_slurm_nodelist(const std::string& list);

}  // namespace sk::dist
