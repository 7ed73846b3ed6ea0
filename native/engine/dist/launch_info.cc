// What the launcher's environment says of this process (communicator.h), and even_shards.
#include <algorithm>
#include <cstdlib>
#include <string>

#include "communicator.h"
#include "error.h"

namespace cb {
namespace {

// The integer in environment variable `name`, or `fallback` when it is unset; a value that is
// no integer is an error naming the variable.
int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  char* end = nullptr;
  const long x = std::strtol(v, &end, 10);
  CB_CHECK(end != v && *end == '\0' && x >= 0 && x < (1L << 24),
           std::string("environment variable ") + name + "='" + v + "' is not a rank count");
  return int(x);
}

bool has_env(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0';
}

}  // namespace

LaunchInfo launch_info() {
  LaunchInfo l;
  l.launcher = "none";
  if (has_env("OMPI_COMM_WORLD_SIZE")) {  // OpenMPI's mpirun
    l.launcher = "openmpi";
    l.world = env_int("OMPI_COMM_WORLD_SIZE", 1);
    l.rank = env_int("OMPI_COMM_WORLD_RANK", 0);
    l.local_rank = env_int("OMPI_COMM_WORLD_LOCAL_RANK", 0);
    l.local_world = env_int("OMPI_COMM_WORLD_LOCAL_SIZE", 1);
  } else if (has_env("PMI_SIZE")) {  // MPICH's Hydra and PMI-1 launchers
    l.launcher = "pmi";
    l.world = env_int("PMI_SIZE", 1);
    l.rank = env_int("PMI_RANK", 0);
    l.local_rank = env_int("MPI_LOCALRANKID", 0);
    l.local_world = env_int("MPI_LOCALNRANKS", 1);
  } else if (has_env("SLURM_PROCID") && has_env("SLURM_NTASKS")) {  // srun
    l.launcher = "slurm";
    l.world = env_int("SLURM_NTASKS", 1);
    l.rank = env_int("SLURM_PROCID", 0);
    l.local_rank = env_int("SLURM_LOCALID", 0);
    // SLURM_NTASKS_PER_NODE may read "2(x3)"; the local count matters only for GPU choice.
    l.local_world = std::max(1, env_int("SLURM_LOCAL_NTASKS", 0));
  }
  CB_CHECK(l.world >= 1 && l.rank < l.world,
           l.launcher + " environment gives rank " + std::to_string(l.rank) + " of " +
               std::to_string(l.world));
  return l;
}

Shards even_shards(int64_t total, int world) {
  CB_CHECK(world >= 1 && total >= 0, "even_shards: bad arguments");
  Shards s;
  s.begin.resize(size_t(world) + 1);
  const int64_t base = total / world, extra = total % world;
  for (int r = 0; r <= world; r++) s.begin[size_t(r)] = r * base + std::min<int64_t>(r, extra);
  return s;
}

}  // namespace cb
