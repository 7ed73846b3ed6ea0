// The gradient all-reduce overlapped with the backward (overlapped_all_reduce.h).
#include "overlapped_all_reduce.h"

#include "error.h"

namespace cb {

template <typename Real>
OverlappedAllReduce<Real>::OverlappedAllReduce(Communicator& comm, DeviceMemory& memory,
                                               int64_t bucket_values)
    : comm_(comm), memory_(memory), bucket_values_(bucket_values), thread_([this] { run(); }) {
  CB_CHECK(bucket_values > 0, "overlapped all-reduce: the bucket size must be positive");
}

template <typename Real>
OverlappedAllReduce<Real>::~OverlappedAllReduce() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  wake_.notify_one();
  thread_.join();
}

template <typename Real>
void OverlappedAllReduce<Real>::begin(Real* grads) {
  grads_ = grads;
  bucket_begin_ = bucket_end_ = -1;
  buckets_sent_ = 0;
  std::lock_guard<std::mutex> lock(mutex_);
  error_ = nullptr;
}

template <typename Real>
void OverlappedAllReduce<Real>::ready(int64_t begin, int64_t end) {
  if (bucket_end_ < 0) {
    bucket_end_ = end;
  } else {
    CB_CHECK(end == bucket_begin_, "overlapped all-reduce: gradient ranges out of order");
  }
  bucket_begin_ = begin;
  if (bucket_end_ - bucket_begin_ >= bucket_values_) {
    send(bucket_begin_, bucket_end_);
    bucket_begin_ = bucket_end_ = -1;
  }
}

template <typename Real>
void OverlappedAllReduce<Real>::send(int64_t begin, int64_t end) {
  if (end <= begin) return;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    queue_.emplace_back(begin, end);
  }
  buckets_sent_++;
  wake_.notify_one();
}

template <typename Real>
void OverlappedAllReduce<Real>::wait_idle() {
  std::unique_lock<std::mutex> lock(mutex_);
  idle_.wait(lock, [this] { return queue_.empty() && !busy_; });
}

template <typename Real>
void OverlappedAllReduce<Real>::finish() {
  if (bucket_end_ >= 0) send(bucket_begin_, bucket_end_);
  bucket_begin_ = bucket_end_ = -1;
  wait_idle();
  std::exception_ptr e;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    std::swap(e, error_);
  }
  if (e) std::rethrow_exception(e);
}

template <typename Real>
void OverlappedAllReduce<Real>::finish_quietly() noexcept {
  // Buckets already queued are sent: the other ranks queued them too and wait for them. The
  // partial one is not (this rank ends the job; see train's abortWorld).
  bucket_begin_ = bucket_end_ = -1;
  wait_idle();
}

template <typename Real>
void OverlappedAllReduce<Real>::run() {
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    wake_.wait(lock, [this] { return stop_ || !queue_.empty(); });
    if (queue_.empty()) return;  // stop_, with nothing left
    const auto [begin, end] = queue_.front();
    queue_.pop_front();
    busy_ = true;
    const bool skip = error_ != nullptr;  // after an error the ranks are out of step
    lock.unlock();
    std::exception_ptr e;
    if (!skip) {
      try {
        comm_.all_reduce_sum(grads_ + begin, end - begin, memory_);
      } catch (...) {
        e = std::current_exception();
      }
    }
    lock.lock();
    if (e && !error_) error_ = e;
    busy_ = false;
    if (queue_.empty()) idle_.notify_all();
  }
}

template class OverlappedAllReduce<float>;
template class OverlappedAllReduce<double>;

}  // namespace cb
