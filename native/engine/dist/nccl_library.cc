// Loading libnccl.so.2 with dlopen (nccl_library.h).
#include "nccl_library.h"

#include <dlfcn.h>

#include <cstdlib>
#include <mutex>

#include "error.h"

namespace cb {
namespace {

template <typename F>
bool resolve(void* handle, const char* name, F* out, std::string* missing) {
  *out = reinterpret_cast<F>(dlsym(handle, name));
  if (*out == nullptr && missing->empty()) *missing = name;
  return *out != nullptr;
}

struct Loaded {
  NcclLibrary library;
  bool ok = false;
  std::string why_not;
};

Loaded load() {
  Loaded l;
  const char* name = std::getenv("CB_NCCL_LIBRARY");
  if (name == nullptr || *name == '\0') name = "libnccl.so.2";
  void* handle = dlopen(name, RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* e = dlerror();
    l.why_not = std::string(name) + " could not be loaded (" + (e ? e : "not found") + ")";
    return l;
  }
  NcclLibrary& n = l.library;
  std::string missing;
  resolve(handle, "ncclGetVersion", &n.get_version, &missing);
  resolve(handle, "ncclGetUniqueId", &n.get_unique_id, &missing);
  resolve(handle, "ncclCommInitRank", &n.comm_init_rank, &missing);
  resolve(handle, "ncclCommDestroy", &n.comm_destroy, &missing);
  resolve(handle, "ncclAllReduce", &n.all_reduce, &missing);
  resolve(handle, "ncclReduce", &n.reduce, &missing);
  resolve(handle, "ncclBroadcast", &n.broadcast, &missing);
  resolve(handle, "ncclGroupStart", &n.group_start, &missing);
  resolve(handle, "ncclGroupEnd", &n.group_end, &missing);
  resolve(handle, "ncclGetErrorString", &n.error_string, &missing);
  if (!missing.empty()) {
    l.why_not = std::string(name) + " has no " + missing + " (not NCCL 2?)";
    dlclose(handle);
    return l;
  }
  n.get_version(&n.version);
  Dl_info info;
  n.path = dladdr(reinterpret_cast<void*>(n.get_version), &info) && info.dli_fname
               ? info.dli_fname
               : name;
  // NCCL 2.x encodes major*10000 + minor*100 + patch (older: major*1000 + minor*100 + patch).
  if (n.version < 2000) {
    l.why_not = n.path + " reports version " + std::to_string(n.version) + " (NCCL 2 needed)";
    return l;
  }
  l.ok = true;
  return l;
}

}  // namespace

const NcclLibrary* nccl_library(std::string* why_not) {
  static std::once_flag once;
  static Loaded loaded;
  std::call_once(once, [] { loaded = load(); });
  if (!loaded.ok && why_not != nullptr) *why_not = loaded.why_not;
  return loaded.ok ? &loaded.library : nullptr;
}

void nccl_check(const NcclLibrary& nccl, int result, const char* what) {
  if (result == 0) return;
  CB_FAIL(std::string("NCCL ") + what + " failed: " + nccl.error_string(result) + " (" +
          std::to_string(result) + ")");
}

}  // namespace cb
