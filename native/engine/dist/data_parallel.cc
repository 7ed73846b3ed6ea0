// Data-parallel training (data_parallel.h).
#include "data_parallel.h"

#include <cstring>

#include "error.h"

namespace cb {

template <typename Real>
DataParallel<Real>::DataParallel(Model<Real>& model, Communicator& comm, bool zero1,
                                 int64_t bucket_values)
    : model_(model), comm_(comm), zero1_(zero1),
      shards_(even_shards(model.layout().total(), comm.world())) {
  CB_CHECK(bucket_values >= 0, "data parallel: the bucket size must not be negative");
  const int64_t total = model.layout().total();
  // Rank 0's parameters everywhere: broadcast through the host (once per run).
  std::vector<Real> params(static_cast<size_t>(total));
  model.read_state("params", params.data(), 0, total);
  comm.broadcast(params.data(), total * int64_t(sizeof(Real)), 0);
  model.write_state("params", params.data(), 0, total);
  if (zero1_) {
    // The moments loaded so far (a resumed checkpoint's) are kept: this rank's shard of them.
    const int r = comm.rank();
    std::vector<Real> m(static_cast<size_t>(total)), v(static_cast<size_t>(total));
    model.read_state("adamM", m.data(), 0, total);
    model.read_state("adamV", v.data(), 0, total);
    model.set_optimizer_shard(shards_.offset(r), shards_.offset(r) + shards_.count(r));
    model.write_state("adamM", m.data() + shards_.offset(r), shards_.offset(r), shards_.count(r));
    model.write_state("adamV", v.data() + shards_.offset(r), shards_.offset(r), shards_.count(r));
  }
  if (bucket_values > 0 && !zero1_ && &model.ops().memory() == &host_memory()) {
    overlap_ = std::make_unique<OverlappedAllReduce<Real>>(comm, model.ops().memory(),
                                                           bucket_values);
  }
}

template <typename Real>
void DataParallel<Real>::backward(bool last_micro_batch) {
  if (overlap_ == nullptr || !last_micro_batch) {
    model_.backward();
    return;
  }
  OverlappedAllReduce<Real>& overlap = *overlap_;
  overlap.begin(model_.grads());
  model_.set_gradients_ready([&overlap](int64_t begin, int64_t end) { overlap.ready(begin, end); });
  try {
    model_.backward();
  } catch (...) {
    model_.set_gradients_ready(nullptr);
    overlap.finish_quietly();
    throw;
  }
  model_.set_gradients_ready(nullptr);
  overlap.finish();
  reduced_ = true;
}

template <typename Real>
void DataParallel<Real>::step(const AdamWSettings& s) {
  DeviceMemory& memory = model_.ops().memory();
  const int64_t total = model_.layout().total();
  if (!zero1_) {
    if (!reduced_) comm_.all_reduce_sum(model_.grads(), total, memory);
    reduced_ = false;
    model_.step(s);
    return;
  }
  comm_.reduce_scatter_sum(model_.grads(), shards_, memory);
  model_.step(s);  // this rank's shard alone
  // params() counts as a write: the bf16 copy is made again from the gathered values.
  comm_.all_gather(model_.params(), shards_, memory);
}

template <typename Real>
std::vector<Real> DataParallel<Real>::gather_state(const std::string& which) {
  const int64_t total = model_.layout().total();
  const bool sharded = zero1_ && (which == "adamM" || which == "adamV");
  if (!sharded) {
    std::vector<Real> whole(static_cast<size_t>(total));
    model_.read_state(which, whole.data(), 0, total);
    return whole;
  }
  const int r = comm_.rank();
  std::vector<Real> mine(size_t(shards_.count(r)));
  model_.read_state(which, mine.data(), shards_.offset(r), shards_.count(r));
  // The shards are contiguous and in rank order, so rank 0's concatenation is the whole state.
  const std::vector<uint8_t> bytes =
      comm_.gather(mine.data(), int64_t(mine.size() * sizeof(Real)));
  if (r != 0) return {};
  CB_CHECK(int64_t(bytes.size()) == total * int64_t(sizeof(Real)),
           "gather_state: the ranks' shards do not add up to the parameter count");
  std::vector<Real> whole(static_cast<size_t>(total));
  std::memcpy(whole.data(), bytes.data(), bytes.size());
  return whole;
}

template <typename Real>
void DataParallel<Real>::write_state(const std::string& which, const Real* whole) {
  const bool sharded = zero1_ && (which == "adamM" || which == "adamV");
  if (!sharded) {
    model_.write_state(which, whole, 0, model_.layout().total());
    return;
  }
  const int r = comm_.rank();
  model_.write_state(which, whole + shards_.offset(r), shards_.offset(r), shards_.count(r));
}

template class DataParallel<float>;
template class DataParallel<double>;

}  // namespace cb
