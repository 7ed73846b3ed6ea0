// The collectives of data-parallel training and sharded sampling (DESIGN.md "Scale-out"): one
// communicator per process, made once by dist_init() from the launcher's environment (mpirun,
// srun). MPI carries host buffers; on CUDA ranks NCCL carries device buffers when libnccl.so.2
// loads (nccl_library.h), and MPI on host copies otherwise.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/device_memory.h"

namespace cb {

// The contiguous ranges of a flat buffer that the ranks own: rank r owns [begin[r], begin[r+1]).
struct Shards {
  std::vector<int64_t> begin;  // (world + 1)
  int64_t offset(int r) const { return begin[size_t(r)]; }
  int64_t count(int r) const { return begin[size_t(r) + 1] - begin[size_t(r)]; }
};
// `total` values cut into `world` ranges as equal as possible (the first ones one larger).
Shards even_shards(int64_t total, int world);

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int world() const = 0;
  // What carries the collectives of host or of device (GPU) buffers: "mpi", "nccl" or
  // "mpi (host copies: why NCCL is not there)".
  virtual std::string transport(bool device_buffers) const = 0;

  // In place, over every rank: data (count) = the sum of every rank's data.
  virtual void all_reduce_sum(float* data, int64_t count, DeviceMemory& memory) = 0;
  virtual void all_reduce_sum(double* data, int64_t count, DeviceMemory& memory) = 0;
  // In place: rank r's range of `shards` becomes the sum of every rank's values there (the
  // other ranges are left undefined).
  virtual void reduce_scatter_sum(float* data, const Shards& shards, DeviceMemory& memory) = 0;
  virtual void reduce_scatter_sum(double* data, const Shards& shards, DeviceMemory& memory) = 0;
  // In place: every rank receives every rank's range of `shards`.
  virtual void all_gather(float* data, const Shards& shards, DeviceMemory& memory) = 0;
  virtual void all_gather(double* data, const Shards& shards, DeviceMemory& memory) = 0;

  // In place over every rank, for a few host values (a loss, a stop flag): not counted in
  // counters(), which follow the gradient exchange.
  virtual void all_reduce_host(double* data, int64_t count) = 0;
  // Host bytes. broadcast: rank `root`'s bytes to every rank (the same size everywhere).
  virtual void broadcast(void* data, int64_t bytes, int root) = 0;
  // gather: every rank's `bytes` (any size, 0 allowed) to rank 0, concatenated in rank order;
  // other ranks get an empty result.
  virtual std::vector<uint8_t> gather(const void* data, int64_t bytes) = 0;
  virtual void barrier() = 0;
  // Ends every rank of the job with `code` (after this rank's message went out).
  [[noreturn]] virtual void abort(int code) = 0;

  // Figures of the collectives so far (all_reduce_sum, reduce_scatter_sum, all_gather of
  // buffers): calls, bytes this rank sent, and seconds spent in them.
  struct Counters {
    int64_t calls = 0;
    double bytes = 0, seconds = 0;
  };
  const Counters& counters() const { return counters_; }

 protected:
  Counters counters_;
};

// What the launcher's environment says of this process (OpenMPI's OMPI_COMM_WORLD_*, PMI's,
// Slurm's SLURM_PROCID/SLURM_NTASKS); world 1 without a launcher.
struct LaunchInfo {
  int rank = 0, world = 1, local_rank = 0, local_world = 1;
  std::string launcher;  // "none", "openmpi", "pmi", "slurm"
};
LaunchInfo launch_info();

// Whether this build can run several ranks (it found MPI), and why not.
bool dist_supported(std::string* why_not);
// The MPI library's own version line (MPI_Get_library_version), empty without MPI.
std::string mpi_library_version();
// The process's communicator: made on the first call (MPI_Init when the launcher started
// several ranks); null for a single process. Throws cb::Error when the launcher started
// several ranks and this build has no MPI, or MPI fails to start.
Communicator* dist_init();
// The communicator made by dist_init(), or null.
Communicator* dist_communicator();
// MPI_Finalize, at the end of a successful run (a rank that exits without it is a failure to
// mpirun); the communicator is gone afterwards.
void dist_finalize();

}  // namespace cb
