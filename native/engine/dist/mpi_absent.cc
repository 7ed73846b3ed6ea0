// A build without MPI (communicator.h): one process only; a launcher that started several
// ranks gets a clear error instead of N copies of the same single-process run.
#include "communicator.h"
#include "error.h"

namespace cb {

bool dist_supported(std::string* why_not) {
  if (why_not != nullptr) {
    *why_not = "this build has no MPI (install libopenmpi-dev and rebuild: scripts/setup.sh)";
  }
  return false;
}

Communicator* dist_init() {
  const LaunchInfo l = launch_info();
  std::string why;
  CB_CHECK(l.world <= 1 || dist_supported(&why),
           "started as rank " + std::to_string(l.rank) + " of " + std::to_string(l.world) +
               " by " + l.launcher + ", but " + why);
  return nullptr;
}

std::string mpi_library_version() { return ""; }

Communicator* dist_communicator() { return nullptr; }

void dist_finalize() {}

}  // namespace cb
