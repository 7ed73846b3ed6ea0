// The MPI communicator (communicator.h): MPI for host buffers, NCCL (loaded at run time) for
// CUDA device buffers when it loads, and MPI over host copies of device buffers otherwise.
//
// Every MPI call holds one mutex (MPI runs at MPI_THREAD_SERIALIZED: the addon calls in from
// whichever worker thread runs a model call, never two at once). A watchdog ends the rank
// when a collective waits longer than CB_DIST_TIMEOUT seconds (default 600): a peer that died
// without its launcher noticing, or that hangs, must not hang every other rank for ever.
#include <dirent.h>
#include <dlfcn.h>
#include <mpi.h>

#include <atomic>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <thread>

#include "communicator.h"
#include "error.h"
#include "nccl_library.h"

namespace cb {
namespace {

// Set by choose_local_gpu: more ranks on this machine than GPUs, so some share one. NCCL refuses
// two ranks of one communicator on one device, so such ranks exchange through MPI instead.
bool ranks_share_a_gpu = false;

template <typename Real>
MPI_Datatype mpi_type();
template <>
MPI_Datatype mpi_type<float>() {
  return MPI_FLOAT;
}
template <>
MPI_Datatype mpi_type<double>() {
  return MPI_DOUBLE;
}
template <typename Real>
int nccl_type();
template <>
int nccl_type<float>() {
  return kNcclFloat32;
}
template <>
int nccl_type<double>() {
  return kNcclFloat64;
}

void mpi_check(int rc, const char* what) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(rc, text, &length);
  CB_FAIL(std::string("MPI ") + what + " failed: " + std::string(text, size_t(length)));
}

// Elements per MPI call: MPI counts are int.
constexpr int64_t kChunk = int64_t(1) << 28;

int int_count(int64_t n, const char* what) {
  CB_CHECK(n <= INT_MAX, std::string(what) + ": " + std::to_string(n) +
                             " values is beyond MPI's int counts");
  return int(n);
}

// Seconds since `t0`.
double since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Ends this rank when a collective has waited longer than its limit (file comment). Its
// thread lives as long as the communicator.
class Watchdog {
 public:
  Watchdog(int rank, double limit_s) : rank_(rank), limit_s_(limit_s) {
    if (limit_s_ > 0) thread_ = std::thread([this] { watch(); });
  }
  ~Watchdog() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    wake_.notify_all();
    if (thread_.joinable()) thread_.join();
  }
  void enter(const char* what) {
    what_.store(what);
    started_.store(std::chrono::steady_clock::now().time_since_epoch().count());
  }
  void leave() { started_.store(0); }

 private:
  void watch() {
    std::unique_lock<std::mutex> lock(mutex_);
    while (!wake_.wait_for(lock, std::chrono::milliseconds(500), [this] { return stop_; })) {
      const int64_t t = started_.load();
      if (t == 0) continue;
      const auto start = std::chrono::steady_clock::time_point(
          std::chrono::steady_clock::duration(t));
      if (since(start) < limit_s_) continue;
      std::fprintf(stderr,
                   "checkerboard: error: rank %d waited %.0f s in %s for the other ranks (one "
                   "died or hangs); ending this rank (CB_DIST_TIMEOUT sets the limit)\n",
                   rank_, limit_s_, what_.load());
      std::fflush(stderr);
      std::_Exit(1);
    }
  }
  int rank_;
  double limit_s_;
  std::atomic<int64_t> started_{0};
  std::atomic<const char*> what_{""};
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stop_ = false;
  std::thread thread_;
};

class MpiCommunicator final : public Communicator {
 public:
  MpiCommunicator(int rank, int world, double timeout_s)
      : rank_(rank), world_(world), watchdog_(rank, timeout_s) {}

  int rank() const override { return rank_; }
  int world() const override { return world_; }

  std::string transport(bool device_buffers) const override {
    if (!device_buffers) return "mpi";
    std::string why;
    if (ranks_share_a_gpu) return "mpi (host copies: ranks share a GPU)";
    return nccl_library(&why) != nullptr ? "nccl" : "mpi (host copies: " + why + ")";
  }

  void all_reduce_sum(float* data, int64_t count, DeviceMemory& memory) override {
    all_reduce_impl(data, count, memory);
  }
  void all_reduce_sum(double* data, int64_t count, DeviceMemory& memory) override {
    all_reduce_impl(data, count, memory);
  }
  void reduce_scatter_sum(float* data, const Shards& s, DeviceMemory& memory) override {
    reduce_scatter_impl(data, s, memory);
  }
  void reduce_scatter_sum(double* data, const Shards& s, DeviceMemory& memory) override {
    reduce_scatter_impl(data, s, memory);
  }
  void all_gather(float* data, const Shards& s, DeviceMemory& memory) override {
    all_gather_impl(data, s, memory);
  }
  void all_gather(double* data, const Shards& s, DeviceMemory& memory) override {
    all_gather_impl(data, s, memory);
  }

  void all_reduce_host(double* data, int64_t count) override {
    Call call(this, "all-reduce");
    for (int64_t at = 0; at < count; at += kChunk) {
      mpi_check(MPI_Allreduce(MPI_IN_PLACE, data + at, int(std::min(kChunk, count - at)),
                              MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD),
                "all-reduce");
    }
  }

  void broadcast(void* data, int64_t bytes, int root) override {
    Call call(this, "broadcast");
    auto* p = static_cast<char*>(data);
    for (int64_t at = 0; at < bytes; at += kChunk) {
      mpi_check(MPI_Bcast(p + at, int(std::min(kChunk, bytes - at)), MPI_BYTE, root,
                          MPI_COMM_WORLD),
                "broadcast");
    }
  }

  std::vector<uint8_t> gather(const void* data, int64_t bytes) override {
    Call call(this, "gather");
    const int mine = int_count(bytes, "gather");
    std::vector<int> sizes(static_cast<size_t>(world_));
    mpi_check(MPI_Gather(&mine, 1, MPI_INT, sizes.data(), 1, MPI_INT, 0, MPI_COMM_WORLD),
              "gather (sizes)");
    std::vector<int> offsets(size_t(world_), 0);
    int64_t total = 0;
    for (int r = 0; r < world_; r++) {
      offsets[size_t(r)] = int_count(total, "gather");
      total += sizes[size_t(r)];
    }
    std::vector<uint8_t> out(rank_ == 0 ? size_t(int_count(total, "gather")) : 0);
    mpi_check(MPI_Gatherv(data, mine, MPI_BYTE, out.data(), sizes.data(), offsets.data(),
                          MPI_BYTE, 0, MPI_COMM_WORLD),
              "gather");
    return out;
  }

  void barrier() override {
    Call call(this, "barrier");
    mpi_check(MPI_Barrier(MPI_COMM_WORLD), "barrier");
  }

  [[noreturn]] void abort(int code) override {
    std::fflush(stderr);
    std::fflush(stdout);
    MPI_Abort(MPI_COMM_WORLD, code);
    std::_Exit(code);
  }

  ~MpiCommunicator() override {
    if (nccl_comm_ != nullptr) nccl_->comm_destroy(nccl_comm_);
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Finalize();
  }

 private:
  // One collective: the mutex, the watchdog, and the counters for buffer collectives.
  class Call {
   public:
    Call(MpiCommunicator* c, const char* what, double bytes = -1)
        : c_(c), lock_(c->mutex_), bytes_(bytes), t0_(std::chrono::steady_clock::now()) {
      c_->watchdog_.enter(what);
    }
    ~Call() {
      c_->watchdog_.leave();
      if (bytes_ < 0) return;
      c_->counters_.calls++;
      c_->counters_.bytes += bytes_;
      c_->counters_.seconds += since(t0_);
    }

   private:
    MpiCommunicator* c_;
    std::lock_guard<std::mutex> lock_;
    double bytes_;
    std::chrono::steady_clock::time_point t0_;
  };

  // NCCL for device buffers, initialised on the first device collective (every rank reaches it
  // at the same point of the same call sequence): rank 0's unique id goes out over MPI.
  const NcclLibrary* nccl_for(DeviceMemory& memory) {
    if (&memory == &host_memory()) return nullptr;
    if (!nccl_tried_) {
      nccl_tried_ = true;
      std::string why;
      int shared = ranks_share_a_gpu ? 1 : 0;  // every rank must take the same transport
      mpi_check(MPI_Allreduce(MPI_IN_PLACE, &shared, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD),
                "all-reduce (GPU sharing)");
      nccl_ = shared ? nullptr : nccl_library(&why);
      if (shared) why = "NCCL needs a GPU of its own for each rank, and ranks share one here";
      if (nccl_ == nullptr) {
        if (rank_ == 0) {
          std::fprintf(stderr,
                       "checkerboard: NCCL not loaded (%s); the ranks exchange gradients with "
                       "MPI through host memory\n",
                       why.c_str());
        }
      } else {
        NcclUniqueId id;
        std::memset(&id, 0, sizeof id);
        if (rank_ == 0) nccl_check(*nccl_, nccl_->get_unique_id(&id), "ncclGetUniqueId");
        mpi_check(MPI_Bcast(&id, int(sizeof id), MPI_BYTE, 0, MPI_COMM_WORLD),
                  "broadcast (NCCL id)");
        nccl_check(*nccl_, nccl_->comm_init_rank(&nccl_comm_, world_, id, rank_),
                   "ncclCommInitRank");
        if (rank_ == 0) {
          std::fprintf(stderr, "checkerboard: NCCL %d loaded from %s\n", nccl_->version,
                       nccl_->path.c_str());
        }
      }
    }
    return nccl_;
  }

  // A device buffer's values on the host for an MPI collective, written back after it.
  template <typename Real>
  struct HostCopy {
    HostCopy(Real* device, int64_t count, DeviceMemory& memory)
        : device_(device), memory_(memory), host_(static_cast<size_t>(count)) {
      memory_.download(host_.data(), device_, host_.size() * sizeof(Real));
    }
    void write_back(int64_t offset, int64_t count) {
      memory_.upload(device_ + offset, host_.data() + offset, size_t(count) * sizeof(Real));
    }
    Real* data() { return host_.data(); }

    Real* device_;
    DeviceMemory& memory_;
    std::vector<Real> host_;
  };

  template <typename Real>
  void all_reduce_impl(Real* data, int64_t count, DeviceMemory& memory) {
    Call call(this, "all-reduce", double(count) * sizeof(Real));
    if (const NcclLibrary* n = nccl_for(memory)) {
      memory.synchronize();
      nccl_check(*n, n->all_reduce(data, data, size_t(count), nccl_type<Real>(), kNcclSum,
                                   nccl_comm_, nullptr),
                 "all-reduce");
      memory.synchronize();
      return;
    }
    const bool host = &memory == &host_memory();
    std::unique_ptr<HostCopy<Real>> copy;
    if (!host) copy = std::make_unique<HostCopy<Real>>(data, count, memory);
    Real* p = host ? data : copy->data();
    for (int64_t at = 0; at < count; at += kChunk) {
      mpi_check(MPI_Allreduce(MPI_IN_PLACE, p + at, int(std::min(kChunk, count - at)),
                              mpi_type<Real>(), MPI_SUM, MPI_COMM_WORLD),
                "all-reduce");
    }
    if (copy) copy->write_back(0, count);
  }

  template <typename Real>
  void reduce_scatter_impl(Real* data, const Shards& s, DeviceMemory& memory) {
    CB_CHECK(int(s.begin.size()) == world_ + 1, "reduce-scatter: shards of another world");
    const int64_t total = s.begin.back();
    Call call(this, "reduce-scatter", double(total) * sizeof(Real));
    if (const NcclLibrary* n = nccl_for(memory)) {
      // Uneven shards: one reduce per shard to its owner, in one group.
      memory.synchronize();
      nccl_check(*n, n->group_start(), "group start");
      for (int r = 0; r < world_; r++) {
        nccl_check(*n, n->reduce(data + s.offset(r), data + s.offset(r), size_t(s.count(r)),
                                 nccl_type<Real>(), kNcclSum, r, nccl_comm_, nullptr),
                   "reduce");
      }
      nccl_check(*n, n->group_end(), "group end (reduce-scatter)");
      memory.synchronize();
      return;
    }
    const bool host = &memory == &host_memory();
    std::unique_ptr<HostCopy<Real>> copy;
    if (!host) copy = std::make_unique<HostCopy<Real>>(data, total, memory);
    Real* p = host ? data : copy->data();
    std::vector<int> counts(static_cast<size_t>(world_));
    for (int r = 0; r < world_; r++) counts[size_t(r)] = int_count(s.count(r), "reduce-scatter");
    std::vector<Real> mine(static_cast<size_t>(s.count(rank_)));
    mpi_check(MPI_Reduce_scatter(p, mine.data(), counts.data(), mpi_type<Real>(), MPI_SUM,
                                 MPI_COMM_WORLD),
              "reduce-scatter");
    std::copy(mine.begin(), mine.end(), p + s.offset(rank_));
    if (copy) copy->write_back(s.offset(rank_), s.count(rank_));
  }

  template <typename Real>
  void all_gather_impl(Real* data, const Shards& s, DeviceMemory& memory) {
    CB_CHECK(int(s.begin.size()) == world_ + 1, "all-gather: shards of another world");
    const int64_t total = s.begin.back();
    Call call(this, "all-gather", double(s.count(rank_)) * sizeof(Real));
    if (const NcclLibrary* n = nccl_for(memory)) {
      memory.synchronize();
      nccl_check(*n, n->group_start(), "group start");
      for (int r = 0; r < world_; r++) {
        nccl_check(*n, n->broadcast(data + s.offset(r), data + s.offset(r), size_t(s.count(r)),
                                    nccl_type<Real>(), r, nccl_comm_, nullptr),
                   "broadcast");
      }
      nccl_check(*n, n->group_end(), "group end (all-gather)");
      memory.synchronize();
      return;
    }
    const bool host = &memory == &host_memory();
    std::unique_ptr<HostCopy<Real>> copy;
    if (!host) copy = std::make_unique<HostCopy<Real>>(data, total, memory);
    Real* p = host ? data : copy->data();
    std::vector<int> counts(static_cast<size_t>(world_)), offsets(static_cast<size_t>(world_));
    for (int r = 0; r < world_; r++) {
      counts[size_t(r)] = int_count(s.count(r), "all-gather");
      offsets[size_t(r)] = int_count(s.offset(r), "all-gather");
    }
    mpi_check(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, p, counts.data(),
                             offsets.data(), mpi_type<Real>(), MPI_COMM_WORLD),
              "all-gather");
    if (copy) copy->write_back(0, total);
  }

  int rank_, world_;
  std::mutex mutex_;
  Watchdog watchdog_;
  bool nccl_tried_ = false;
  const NcclLibrary* nccl_ = nullptr;
  NcclComm nccl_comm_ = nullptr;
};

// NVIDIA GPUs the driver lists, counted without starting CUDA (which would fix the visible set).
int nvidia_gpu_count() {
  DIR* dir = opendir("/proc/driver/nvidia/gpus");
  if (dir == nullptr) return 0;
  int n = 0;
  while (const dirent* e = readdir(dir)) n += e->d_name[0] != '.';
  closedir(dir);
  return n;
}

// Several ranks on one machine with GPUs: each takes its local GPU, by narrowing
// CUDA_VISIBLE_DEVICES before CUDA starts (every thread then sees the same one device).
void choose_local_gpu(const LaunchInfo& l) {
  if (l.local_world <= 1) return;
  std::vector<std::string> visible;
  if (const char* v = std::getenv("CUDA_VISIBLE_DEVICES")) {
    std::string s = v;
    for (size_t at = 0; at <= s.size();) {
      const size_t comma = std::min(s.find(',', at), s.size());
      if (comma > at) visible.push_back(s.substr(at, comma - at));
      at = comma + 1;
    }
  } else {
    const int gpus = nvidia_gpu_count();
    for (int g = 0; g < gpus; g++) visible.push_back(std::to_string(g));
  }
  if (visible.empty()) return;
  ranks_share_a_gpu = visible.size() < size_t(l.local_world);
  setenv("CUDA_VISIBLE_DEVICES", visible[size_t(l.local_rank) % visible.size()].c_str(), 1);
}

std::unique_ptr<Communicator>& the_communicator() {
  static std::unique_ptr<Communicator> c;
  return c;
}

// OpenMPI's plugins, which it dlopens itself, resolve symbols of libmpi in the global scope;
// this library came in as a dependency of a module loaded with RTLD_LOCAL (the addon), so its
// symbols are made global first.
void make_mpi_global() {
  Dl_info info;
  if (dladdr(reinterpret_cast<void*>(&MPI_Init_thread), &info) && info.dli_fname != nullptr) {
    dlopen(info.dli_fname, RTLD_NOW | RTLD_GLOBAL | RTLD_NOLOAD);
  }
}

}  // namespace

bool dist_supported(std::string* why_not) {
  (void)why_not;
  return true;
}

std::string mpi_library_version() {
  char text[MPI_MAX_LIBRARY_VERSION_STRING];
  int length = 0;
  if (MPI_Get_library_version(text, &length) != MPI_SUCCESS) return "MPI (version unknown)";
  std::string v(text, size_t(length));
  const size_t line = v.find_first_of(",\n");  // "Open MPI v4.1.4, package: ..."
  return v.substr(0, line);
}

Communicator* dist_communicator() { return the_communicator().get(); }

Communicator* dist_init() {
  static std::once_flag once;
  static std::string failure;
  std::call_once(once, [] {
    try {
      const LaunchInfo l = launch_info();
      if (l.world <= 1) return;
      choose_local_gpu(l);
      make_mpi_global();
      int provided = 0;
      mpi_check(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided), "init");
      MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
      int rank = 0, world = 0;
      mpi_check(MPI_Comm_rank(MPI_COMM_WORLD, &rank), "rank");
      mpi_check(MPI_Comm_size(MPI_COMM_WORLD, &world), "size");
      CB_CHECK(rank == l.rank && world == l.world,
               "MPI says rank " + std::to_string(rank) + " of " + std::to_string(world) +
                   ", the " + l.launcher + " environment " + std::to_string(l.rank) + " of " +
                   std::to_string(l.world));
      CB_CHECK(provided >= MPI_THREAD_SERIALIZED,
               "this MPI does not support MPI_THREAD_SERIALIZED (calls from several threads)");
      double timeout = 600;
      if (const char* t = std::getenv("CB_DIST_TIMEOUT")) timeout = std::atof(t);
      the_communicator() = std::make_unique<MpiCommunicator>(rank, world, timeout);
    } catch (const std::exception& e) {
      failure = e.what();
    }
  });
  CB_CHECK(failure.empty(), failure);
  return the_communicator().get();
}

void dist_finalize() { the_communicator().reset(); }

}  // namespace cb
