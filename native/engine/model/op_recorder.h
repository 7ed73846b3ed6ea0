// Recorded op sequences (CUDA graphs on the cuda backend): the sampler's per-step work at small
// batch is many short kernels, whose launch costs dominate; recording a step once and replaying
// it needs one launch. A backend that can record returns a recorder from
// ModelOps::make_recorder(); the others return null and the caller just calls its ops.
#pragma once

#include <functional>
#include <string>

namespace cb {

class OpRecorder {
 public:
  virtual ~OpRecorder() = default;
  // Runs `work`: calls of this backend's ops and nothing else (no uploads, downloads, host reads
  // or allocations). The first run of a key runs work as it is and records its launches; later
  // runs of the key replay the recording instead of calling work. `key` must name every pointer
  // and value the sequence's launches depend on; the data behind the pointers may change
  // between runs (e.g. index arrays uploaded before each run).
  virtual void run(const std::string& key, const std::function<void()>& work) = 0;
  // Drops every recording (e.g. when buffers named by keys are released).
  virtual void clear() = 0;
  virtual size_t recordings() const = 0;
};

}  // namespace cb
