// Factories of the CPU backends (cpu_ref.cc, cpu_backend.cc).
#pragma once

#include <cstdint>
#include <memory>

#include "../ops.h"

namespace cb {

std::unique_ptr<Backend> make_cpu_ref_backend();
// chunk_rows: points per nearest_codes chunk (0: automatic, about 16 MiB of scores).
std::unique_ptr<Backend> make_cpu_backend(int64_t chunk_rows);

}  // namespace cb
