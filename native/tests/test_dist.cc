// The parts of data parallelism that run in one process (engine/dist/, Model's optimizer
// shard): the shard ranges, the launcher's environment, NCCL's loader without NCCL, and
// ZeRO-1's step: two shard-stepping replicas of a model, fed the same gradients, end with the
// parameters and moments of the unsharded step, value for value; and the all-reduce overlapped
// with the backward, against an in-process stand-in for the other ranks. The collectives
// themselves run across processes in tests/ranks.test.ts (mpirun).
#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "cuda/cuda.h"
#include "dist/communicator.h"
#include "dist/data_parallel.h"
#include "dist/nccl_library.h"
#include "harness.h"
#include "model/backends.h"
#include "model_fixture.h"
#include "cpu/parallel.h"
#include "cpu/sgemm.h"

CB_TEST("dist", even_shards_tile_the_buffer) {
  for (int64_t total : {0, 1, 7, 1000, 1001}) {
    for (int world : {1, 2, 3, 4, 7}) {
      const cb::Shards s = cb::even_shards(total, world);
      EXPECT(s.offset(0) == 0 && s.begin.back() == total, "shards must cover [0, total)");
      for (int r = 0; r < world; r++) {
        EXPECT(s.count(r) == total / world || s.count(r) == total / world + 1,
               "shard " + std::to_string(r) + " of " + std::to_string(world) + " is uneven");
      }
    }
  }
}

CB_TEST("dist", launch_info_reads_the_launchers) {
  auto clear = [] {
    for (const char* v : {"OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_LOCAL_RANK",
                          "OMPI_COMM_WORLD_LOCAL_SIZE", "PMI_SIZE", "PMI_RANK", "SLURM_PROCID",
                          "SLURM_NTASKS", "SLURM_LOCALID"}) {
      unsetenv(v);
    }
  };
  clear();
  EXPECT(cb::launch_info().world == 1 && cb::launch_info().launcher == "none", "no launcher");
  setenv("SLURM_PROCID", "3", 1);
  setenv("SLURM_NTASKS", "8", 1);
  setenv("SLURM_LOCALID", "1", 1);
  const cb::LaunchInfo slurm = cb::launch_info();
  EXPECT(slurm.launcher == "slurm" && slurm.rank == 3 && slurm.world == 8 && slurm.local_rank == 1,
         "srun's variables");
  setenv("OMPI_COMM_WORLD_SIZE", "2", 1);  // OpenMPI's win over Slurm's (mpirun inside srun)
  setenv("OMPI_COMM_WORLD_RANK", "1", 1);
  const cb::LaunchInfo ompi = cb::launch_info();
  EXPECT(ompi.launcher == "openmpi" && ompi.rank == 1 && ompi.world == 2, "mpirun's variables");
  setenv("OMPI_COMM_WORLD_RANK", "2", 1);
  bool refused = false;
  try {
    cb::launch_info();
  } catch (const cb::Error& e) {
    refused = std::string(e.what()).find("rank 2 of 2") != std::string::npos;
  }
  EXPECT(refused, "a rank outside the world must be refused");
  clear();
}

CB_TEST("dist", nccl_loader_names_what_is_missing) {
  setenv("CB_NCCL_LIBRARY", "/nonexistent/libnccl.so.2", 1);
  std::string why;
  const cb::NcclLibrary* nccl = cb::nccl_library(&why);
  unsetenv("CB_NCCL_LIBRARY");
  EXPECT(nccl == nullptr, "a missing NCCL must not load");
  EXPECT(why.find("/nonexistent/libnccl.so.2") != std::string::npos, "the reason: " + why);
}

// On a GPU machine with NCCL (CB_NCCL_LIBRARY or libnccl.so.2): the loaded entry points work
// on device buffers, through the same calls and stream as the MPI communicator's (one rank:
// the sum of one buffer, out of place, so the values must travel). Without NCCL it says so and
// passes: NCCL is optional, and scripts/device-check.sh reports that line.
CB_TEST("cuda", nccl_all_reduces_and_broadcasts_device_buffers) {
  std::string why;
  const cb::NcclLibrary* nccl = cb::nccl_library(&why);
  if (nccl == nullptr) {
    std::printf("note cuda/nccl: not loaded: %s\n", why.c_str());
    return;
  }
  std::printf("note cuda/nccl: NCCL %d from %s\n", nccl->version, nccl->path.c_str());
  std::unique_ptr<cb::ModelOps<float>> gpu = cb::make_model_ops<float>("cuda");
  cb::DeviceMemory& memory = gpu->memory();
  cb::NcclUniqueId id;
  cb::nccl_check(*nccl, nccl->get_unique_id(&id), "ncclGetUniqueId");
  cb::NcclComm comm = nullptr;
  cb::nccl_check(*nccl, nccl->comm_init_rank(&comm, 1, id, 0), "ncclCommInitRank");
  const size_t n = 1000003;  // not a multiple of any chunk size
  std::vector<float> host(n), back(n, 0.0f);
  for (size_t i = 0; i < n; i++) host[i] = float(i % 977) - 488.5f;
  void* send = memory.allocate(n * sizeof(float));
  void* recv = memory.allocate(n * sizeof(float));
  memory.upload(send, host.data(), n * sizeof(float));
  memory.zero(recv, n * sizeof(float));
  memory.synchronize();
  cb::nccl_check(*nccl, nccl->all_reduce(send, recv, n, cb::kNcclFloat32, cb::kNcclSum, comm,
                                         nullptr),
                 "ncclAllReduce");
  memory.synchronize();
  memory.download(back.data(), recv, n * sizeof(float));
  EXPECT(back == host, "a one-rank all-reduce must copy the buffer");
  memory.zero(recv, n * sizeof(float));
  memory.synchronize();
  cb::nccl_check(*nccl, nccl->broadcast(send, recv, n, cb::kNcclFloat32, 0, comm, nullptr),
                 "ncclBroadcast");
  memory.synchronize();
  memory.download(back.data(), recv, n * sizeof(float));
  EXPECT(back == host, "a one-rank broadcast must copy the buffer");
  memory.release(send);
  memory.release(recv);
  cb::nccl_check(*nccl, nccl->comm_destroy(comm), "ncclCommDestroy");
}

// A CPU model of `c` with the same random parameters every time it is made.
static std::unique_ptr<cb::Model<float>> test_model(const cb::ModelConfig& c) {
  auto m = std::make_unique<cb::Model<float>>(c, cb::make_model_ops<float>("cpu"), 7);
  cbt::randomize_params(*m, 11);
  cbt::set_test_codebook(*m);
  return m;
}

CB_TEST("dist", zero1_shards_step_like_the_whole) {
  const cb::ModelConfig c = cbt::tiny_config(0);
  const cbt::SlotPlan plan = cbt::plan_slots(c, {1, 2, 2});
  const cb::Batch<float> batch = cbt::random_batch<float>(c, plan, 3, 5);
  auto whole = test_model(c);
  const int64_t total = whole->layout().total();
  // A cut inside a tensor, so that a tensor's AdamW runs in two pieces.
  const int64_t cut = whole->layout().entries()[3].offset + 5;
  auto first = test_model(c), second = test_model(c);
  first->set_optimizer_shard(0, cut);
  second->set_optimizer_shard(cut, total);
  cb::AdamWSettings s;
  s.lr = 1e-2f;
  std::vector<float> params(static_cast<size_t>(total));
  for (int step = 0; step < 3; step++) {
    whole->zero_grad();
    whole->forward(batch, true);
    whole->backward();
    // Both replicas hold the whole model's parameters and gradients, as after the exchange.
    for (cb::Model<float>* m : {first.get(), second.get()}) {
      whole->read_state("params", params.data(), 0, total);
      m->write_state("params", params.data(), 0, total);
      std::memcpy(m->grads(), whole->grads(), size_t(total) * sizeof(float));
      m->set_step_count(whole->step_count());
    }
    whole->step(s);
    first->step(s);
    second->step(s);
    std::vector<float> a(static_cast<size_t>(total)), b(static_cast<size_t>(total));
    whole->read_state("params", a.data(), 0, total);
    first->read_state("params", b.data(), 0, cut);
    second->read_state("params", b.data() + cut, cut, total - cut);
    EXPECT(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0,
           "the shards' parameters differ from the whole step's at step " + std::to_string(step));
    for (const char* which : {"adamM", "adamV"}) {
      whole->read_state(which, a.data(), 0, total);
      first->read_state(which, b.data(), 0, cut);
      second->read_state(which, b.data() + cut, cut, total - cut);
      EXPECT(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0,
             std::string(which) + " of the shards differs from the whole step's");
    }
  }
  bool refused = false;
  try {
    first->read_state("adamM", params.data(), cut - 1, 2);
  } catch (const cb::Error& e) {
    refused = std::string(e.what()).find("optimizer shard") != std::string::npos;
  }
  EXPECT(refused, "moments outside the shard must be refused");
}

// A rank of several on one machine runs fewer threads than one process but cuts its products
// for the machine's count (set_cpu_threads' split_threads), so its sums round the same: the
// same bits whichever threads run the pieces.
CB_TEST("dist", products_round_as_cut_not_as_run) {
  struct Restore {
    ~Restore() { cb::set_cpu_threads(0); }
  } restore;
  for (const auto& shape : std::vector<std::array<int, 3>>{{8, 1536, 512}, {32, 2048, 512},
                                                          {300, 512, 1024}}) {
    const int m = shape[0], n = shape[1], k = shape[2];
    std::vector<float> a(size_t(m) * k), b(size_t(k) * n);
    uint32_t x = 12345;
    for (float* v : {a.data(), b.data()}) {
      const size_t len = v == a.data() ? a.size() : b.size();
      for (size_t i = 0; i < len; i++) {
        x = x * 1664525u + 1013904223u;
        v[i] = float(x >> 8) / float(1 << 24) - 0.5f;
      }
    }
    std::vector<std::vector<float>> c;
    for (const std::array<int, 2>& threads : std::vector<std::array<int, 2>>{{2, 2}, {1, 2}, {4, 2}}) {
      cb::set_cpu_threads(threads[0], threads[1]);
      c.emplace_back(size_t(m) * n, 0.0f);
      cb::cpu_sgemm(false, false, m, n, k, 1.0f, a.data(), k, b.data(), n, 0.0f, c.back().data(), n);
    }
    for (size_t i = 1; i < c.size(); i++) {
      EXPECT(std::memcmp(c[0].data(), c[i].data(), c[0].size() * sizeof(float)) == 0,
             "a " + std::to_string(m) + "x" + std::to_string(n) + "x" + std::to_string(k) +
                 " product cut for 2 threads differs when run on " +
                 std::to_string(i == 1 ? 1 : 4));
    }
  }
}

// Another rank whose gradients are this rank's: an all-reduce doubles the values (exactly), and
// records the ranges it was given. It reads a range when called and writes the sums a little
// later, so that a range summed before the backward was done with it loses the rest of its
// gradient.
class MirrorRank : public cb::Communicator {
 public:
  int fail_call = -1;  // the all-reduce that throws (-1: none)
  std::vector<std::pair<int64_t, int64_t>> ranges;  // [offset, offset + count) of each call
  const float* base = nullptr;  // the gradient buffer, for the offsets

  int rank() const override { return 0; }
  int world() const override { return 2; }
  std::string transport(bool) const override { return "mirror"; }
  void all_reduce_sum(float* data, int64_t count, cb::DeviceMemory&) override {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      ranges.emplace_back(data - base, data - base + count);
      if (int(ranges.size()) - 1 == fail_call) CB_FAIL("the mirror rank is gone");
    }
    // Read when called, written later: what the backward adds in between is lost.
    std::vector<float> sent(data, data + count);
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    for (int64_t i = 0; i < count; i++) data[i] = 2.0f * sent[size_t(i)];
  }
  void all_reduce_sum(double*, int64_t, cb::DeviceMemory&) override { unused(); }
  void reduce_scatter_sum(float*, const cb::Shards&, cb::DeviceMemory&) override { unused(); }
  void reduce_scatter_sum(double*, const cb::Shards&, cb::DeviceMemory&) override { unused(); }
  void all_gather(float*, const cb::Shards&, cb::DeviceMemory&) override { unused(); }
  void all_gather(double*, const cb::Shards&, cb::DeviceMemory&) override { unused(); }
  void all_reduce_host(double*, int64_t) override { unused(); }
  void broadcast(void*, int64_t, int) override {}  // both ranks hold the same parameters
  std::vector<uint8_t> gather(const void*, int64_t) override {
    unused();
    return {};
  }
  void barrier() override {}
  [[noreturn]] void abort(int) override { throw std::logic_error("abort"); }

 private:
  [[noreturn]] static void unused() { throw std::logic_error("not used by plain data parallel"); }
  std::mutex mutex_;
};

CB_TEST("dist", overlapped_all_reduce_sums_final_gradients) {
  const cb::ModelConfig c = cbt::tiny_config(1);
  const cbt::SlotPlan plan = cbt::plan_slots(c, {1, 2, 2});
  const cb::Batch<float> batch = cbt::random_batch<float>(c, plan, 3, 5);
  // Two micro-batches' gradients, summed once over the ranks: 2 * the single process's.
  auto reference = test_model(c);
  const int64_t total = reference->layout().total();
  reference->zero_grad();
  for (int micro = 0; micro < 2; micro++) {
    reference->forward(batch, true);
    reference->backward();
  }
  std::vector<float> expected(reference->grads(), reference->grads() + total);
  for (float& g : expected) g *= 2.0f;

  // Each range the backward reports is final then: what it holds at the call is what it holds
  // at the end.
  {
    auto model = test_model(c);
    model->zero_grad();
    model->forward(batch, true);
    std::vector<std::pair<int64_t, std::vector<float>>> seen;
    model->set_gradients_ready([&](int64_t begin, int64_t end) {
      seen.emplace_back(begin, std::vector<float>(model->grads() + begin, model->grads() + end));
    });
    model->backward();
    model->set_gradients_ready(nullptr);
    EXPECT(seen.size() == size_t(c.depth) + 2, "the head, each layer, the tensors before");
    for (const auto& [begin, values] : seen) {
      EXPECT(std::memcmp(values.data(), model->grads() + begin, values.size() * sizeof(float)) == 0,
             "the range at " + std::to_string(begin) + " changed after it was reported final");
    }
  }

  for (int64_t bucket : {int64_t(1), int64_t(2000), total}) {
    auto model = test_model(c);
    MirrorRank mirror;
    mirror.base = model->grads();
    cb::DataParallel<float> dp(*model, mirror, false, bucket);
    EXPECT(dp.overlapped(), "plain data parallel on the CPU must overlap");
    model->zero_grad();
    for (int micro = 0; micro < 2; micro++) {
      model->forward(batch, true);
      dp.backward(micro == 1);
      EXPECT(mirror.ranges.empty() == (micro == 0), "only the last micro-batch exchanges");
    }
    const std::string what = "buckets of " + std::to_string(bucket) + ": ";
    EXPECT(std::memcmp(model->grads(), expected.data(), size_t(total) * sizeof(float)) == 0,
           what + "the overlapped sums differ from the sums of the finished gradients");
    // The buckets tile the buffer from its end to its start, each one at least `bucket` long
    // but the last; one bucket per range when a bucket is one value.
    int64_t end = total;
    for (size_t i = 0; i < mirror.ranges.size(); i++) {
      const auto [b, e] = mirror.ranges[i];
      EXPECT(e == end && b < e, what + "bucket " + std::to_string(i) + " is out of place");
      EXPECT(e - b >= bucket || i + 1 == mirror.ranges.size(), what + "a bucket is too small");
      end = b;
    }
    EXPECT(end == 0, what + "the buckets must reach the buffer's start");
    const size_t ranges = size_t(c.depth) + 2;  // the head, each layer, the tensors before
    EXPECT(bucket != 1 || mirror.ranges.size() == ranges, what + "one bucket per range");
    EXPECT(bucket != total || mirror.ranges.size() == 1, what + "one bucket for everything");
    // The step has the sums already: it does not exchange again.
    const size_t exchanged = mirror.ranges.size();
    dp.step(cb::AdamWSettings{});
    EXPECT(mirror.ranges.size() == exchanged, what + "the step must not all-reduce again");
  }

  // A failed bucket fails the backward with its error, and the next step starts clean.
  auto model = test_model(c);
  MirrorRank mirror;
  mirror.base = model->grads();
  mirror.fail_call = 1;
  cb::DataParallel<float> dp(*model, mirror, false, 1);
  model->zero_grad();
  model->forward(batch, true);
  std::string error;
  try {
    dp.backward(true);
  } catch (const cb::Error& e) {
    error = e.what();
  }
  EXPECT(error.find("the mirror rank is gone") != std::string::npos, "the error: " + error);
  EXPECT(mirror.ranges.size() == 2, "no bucket may follow a failed one");
}

// Sequences [first, first + count) of `b`, with the loss divided by the whole batch's token
// count (what a data-parallel rank feeds its model).
static cb::Batch<float> batch_slice(const cb::Batch<float>& b, int first, int count) {
  cb::Batch<float> s;
  s.B = count;
  s.T = b.T;
  const size_t T = size_t(b.T), L = size_t(b.T - 1);
  s.labels.assign(b.labels.begin() + first, b.labels.begin() + first + count);
  for (auto [from, to] : {std::pair{&b.pos_p, &s.pos_p}, std::pair{&b.pos_q, &s.pos_q},
                          std::pair{&b.targets, &s.targets}}) {
    to->assign(from->begin() + ptrdiff_t(first * T),
               from->begin() + ptrdiff_t((first + count) * T));
  }
  s.codes.assign(b.codes.begin() + ptrdiff_t(first * L),
                 b.codes.begin() + ptrdiff_t((first + count) * L));
  s.visible_end = b.visible_end;
  s.loss_tokens = 0;
  for (int32_t t : b.targets) s.loss_tokens += t >= 0;
  return s;
}

// Under `mpirun -np 2` (scripts/device-check.sh on a GPU machine with MPI; alone it says so and
// passes): two ranks of data-parallel training on the GPU (the CPU without one), each on its
// half of the batch, end three AdamW steps with the parameters of one process on the whole
// batch, up to the gradient sums' order (the bound of tests/ranks.test.ts).
CB_TEST("ranks", data_parallel_steps_match_one_process) {
  cb::Communicator* comm = cb::dist_init();
  if (comm == nullptr) {
    std::printf("note ranks: one process; run this group under mpirun -np 2\n");
    return;
  }
  const std::string device = cb::cuda_status().available ? "cuda" : "cpu";
  const cb::ModelConfig c = cbt::tiny_config(0);
  const cbt::SlotPlan plan = cbt::plan_slots(c, {1, 2, 2});
  const int B = 2 * comm->world();
  const cb::Batch<float> batch = cbt::random_batch<float>(c, plan, B, 5);
  auto make = [&] {
    auto m = std::make_unique<cb::Model<float>>(c, cb::make_model_ops<float>(device), 7);
    cbt::randomize_params(*m, 11);
    cbt::set_test_codebook(*m);
    return m;
  };
  auto whole = make(), part = make();
  cb::DataParallel<float> dp(*part, *comm, false);
  const cb::Batch<float> mine = batch_slice(batch, 2 * comm->rank(), 2);
  cb::AdamWSettings s;
  s.lr = 1e-2f;
  for (int step = 0; step < 3; step++) {
    whole->zero_grad();
    whole->forward(batch, true);
    whole->backward();
    whole->step(s);
    part->zero_grad();
    part->forward(mine, true);
    dp.backward(true);
    dp.step(s);
  }
  const int64_t total = whole->layout().total();
  std::vector<float> a(static_cast<size_t>(total)), b(static_cast<size_t>(total));
  whole->read_state("params", a.data(), 0, total);
  part->read_state("params", b.data(), 0, total);
  float largest = 0, diff = 0;
  for (size_t i = 0; i < a.size(); i++) {
    largest = std::max(largest, std::abs(a[i]));
    diff = std::max(diff, std::abs(a[i] - b[i]));
  }
  std::printf("note ranks: rank %d of %d on %s (%s): max |dw| / max |w| = %.3g\n", comm->rank(),
              comm->world(), device.c_str(), comm->transport(device != "cpu").c_str(),
              double(diff / largest));
  EXPECT(diff <= 1e-5f * largest, "the ranks' parameters left the one process's: " +
                                      std::to_string(diff / largest));
  cb::dist_finalize();
}
