// NCCL, loaded at run time (NCCL is not in Debian, and a machine without GPUs has none): the
// handful of entry points data parallel training needs, declared here with NCCL's C ABI (nccl.h
// 2.x: a 128-byte unique id, an opaque communicator, int enums) so that this compiles without
// NCCL's headers. Collectives run on CUDA's legacy default stream (nullptr); the caller
// synchronises the device before and after (DeviceMemory::synchronize).
#pragma once

#include <cstddef>
#include <string>

namespace cb {

struct NcclUniqueId {
  char internal[128];
};
using NcclComm = struct ncclComm*;
enum NcclDataType : int { kNcclFloat32 = 7, kNcclFloat64 = 8 };
enum NcclRedOp : int { kNcclSum = 0 };

struct NcclLibrary {
  int (*get_version)(int* version) = nullptr;
  int (*get_unique_id)(NcclUniqueId* id) = nullptr;
  int (*comm_init_rank)(NcclComm* comm, int nranks, NcclUniqueId id, int rank) = nullptr;
  int (*comm_destroy)(NcclComm comm) = nullptr;
  int (*all_reduce)(const void* send, void* recv, size_t count, int type, int op, NcclComm comm,
                    void* stream) = nullptr;
  int (*reduce)(const void* send, void* recv, size_t count, int type, int op, int root,
                NcclComm comm, void* stream) = nullptr;
  int (*broadcast)(const void* send, void* recv, size_t count, int type, int root,
                   NcclComm comm, void* stream) = nullptr;
  int (*group_start)() = nullptr;
  int (*group_end)() = nullptr;
  const char* (*error_string)(int result) = nullptr;

  int version = 0;  // e.g. 22304 for 2.23.4
  std::string path;  // the file that was loaded
};

// libnccl.so.2 (CB_NCCL_LIBRARY overrides the name), loaded once; null with the reason in
// *why_not when it is not there or lacks an entry point.
const NcclLibrary* nccl_library(std::string* why_not);

// Throws cb::Error naming `what` and NCCL's message when `result` is not ncclSuccess.
void nccl_check(const NcclLibrary& nccl, int result, const char* what);

}  // namespace cb
