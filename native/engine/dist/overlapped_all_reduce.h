// The gradient all-reduce overlapped with the backward (DESIGN.md "Scale-out"), as DDP's
// buckets do: Model::backward reports each range of the gradients that is final
// (Model::set_gradients_ready), ranges are merged into buckets of at least `bucket_values`,
// and a communication thread all-reduces each full bucket while the backward computes the
// next layers. finish() sends the rest and waits for every bucket.
//
// Host buffers only: on a GPU the ranges are final only once the queued kernels ran, and the
// one all-reduce after the backward (DataParallel) is what runs there.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <mutex>
#include <thread>
#include <utility>

#include "communicator.h"
#include "model/device_memory.h"

namespace cb {

template <typename Real>
class OverlappedAllReduce {
 public:
  OverlappedAllReduce(Communicator& comm, DeviceMemory& memory, int64_t bucket_values);
  ~OverlappedAllReduce();
  OverlappedAllReduce(const OverlappedAllReduce&) = delete;
  OverlappedAllReduce& operator=(const OverlappedAllReduce&) = delete;

  // Starts one backward's exchange over `grads`.
  void begin(Real* grads);
  // [begin, end) of the gradients is final; the ranges come from the end of the buffer to
  // its start, each one ending where the last began.
  void ready(int64_t begin, int64_t end);
  // Sends the partial bucket, waits until every bucket was summed over the ranks, and throws
  // the first error a bucket met.
  void finish();
  // As finish(), without throwing: after a failed backward (its own error is the one to tell).
  void finish_quietly() noexcept;
  int64_t buckets_sent() const { return buckets_sent_; }

 private:
  void send(int64_t begin, int64_t end);
  void wait_idle();
  void run();

  Communicator& comm_;
  DeviceMemory& memory_;
  const int64_t bucket_values_;
  Real* grads_ = nullptr;
  int64_t bucket_begin_ = 0, bucket_end_ = 0;  // the bucket being filled: [begin, end)
  int64_t buckets_sent_ = 0;

  std::mutex mutex_;
  std::condition_variable wake_, idle_;
  std::deque<std::pair<int64_t, int64_t>> queue_;  // full buckets not yet summed
  bool busy_ = false, stop_ = false;
  std::exception_ptr error_;
  std::thread thread_;  // last: started once the members above exist
};

}  // namespace cb
