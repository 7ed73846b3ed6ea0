// The parts of data parallelism that run in one process (engine/dist/, Model's optimizer
// shard): the shard ranges, the launcher's environment, NCCL's loader without NCCL, and
// ZeRO-1's step: two shard-stepping replicas of a model, fed the same gradients, end with the
// parameters and moments of the unsharded step, value for value. The collectives themselves
// run across processes in tests/ranks.test.ts (mpirun).
#include <array>
#include <cstdlib>
#include <cstring>
#include <string>

#include "dist/communicator.h"
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

CB_TEST("dist", zero1_shards_step_like_the_whole) {
  const cb::ModelConfig c = cbt::tiny_config(0);
  const cbt::SlotPlan plan = cbt::plan_slots(c, {1, 2, 2});
  const cb::Batch<float> batch = cbt::random_batch<float>(c, plan, 3, 5);
  auto make = [&] {
    auto m = std::make_unique<cb::Model<float>>(c, cb::make_model_ops<float>("cpu"), 7);
    cbt::randomize_params(*m, 11);
    cbt::set_test_codebook(*m);
    return m;
  };
  auto whole = make();
  const int64_t total = whole->layout().total();
  // A cut inside a tensor, so that a tensor's AdamW runs in two pieces.
  const int64_t cut = whole->layout().entries()[3].offset + 5;
  auto first = make(), second = make();
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
