// The completions of the warp shuffles, votes and __syncwarp (device_language.h): called by the
// last lane of a rendezvous with every lane's argument, after all of them deposited theirs, so
// each lane reads values that its source lanes had at the call, as in the GPU's lockstep.
#include <string>

#include "device_language.h"

namespace cb_emu {
namespace {

ShuffleArg& lane_arg(void* const* args, int lane) { return *static_cast<ShuffleArg*>(args[lane]); }

// The lane each lane of the mask reads: source_of(lane, its arg) within the width's segment.
template <typename SourceOf>
void complete(void* const* args, unsigned mask, const char* name, SourceOf source_of) {
  for (int lane = 0; lane < 32; lane++) {
    if (!(mask >> lane & 1u)) continue;
    ShuffleArg& a = lane_arg(args, lane);
    if (a.width < 1 || a.width > 32 || (a.width & (a.width - 1)) != 0) {
      trap(std::string(name) + ": width " + std::to_string(a.width) + " is not a power of two "
           "in [1, 32]");
    }
    const int segment = lane & ~(a.width - 1);
    const int src = source_of(lane, a, segment);
    if (!(mask >> src & 1u)) {
      trap(std::string(name) + ": lane " + std::to_string(lane) + " reads lane " +
           std::to_string(src) + ", which is not in the mask");
    }
  }
  // Read every source before writing any result (a lane's result field is its own).
  uint64_t values[32];
  for (int lane = 0; lane < 32; lane++) {
    if (mask >> lane & 1u) values[lane] = lane_arg(args, lane).value;
  }
  for (int lane = 0; lane < 32; lane++) {
    if (!(mask >> lane & 1u)) continue;
    ShuffleArg& a = lane_arg(args, lane);
    a.result = values[source_of(lane, a, lane & ~(a.width - 1))];
  }
}

}  // namespace

// __shfl_sync: lane `source` of the segment (modulo the width).
void complete_shfl(void* const* args, unsigned mask) {
  complete(args, mask, "__shfl_sync", [](int, const ShuffleArg& a, int segment) {
    return segment + ((a.source % a.width) + a.width) % a.width;
  });
}

// __shfl_up_sync: lane - delta, or the lane's own value before the segment's start.
void complete_shfl_up(void* const* args, unsigned mask) {
  complete(args, mask, "__shfl_up_sync", [](int lane, const ShuffleArg& a, int segment) {
    return lane - a.source >= segment ? lane - a.source : lane;
  });
}

// __shfl_down_sync: lane + delta, or the lane's own value past the segment's end.
void complete_shfl_down(void* const* args, unsigned mask) {
  complete(args, mask, "__shfl_down_sync", [](int lane, const ShuffleArg& a, int segment) {
    return lane + a.source < segment + a.width ? lane + a.source : lane;
  });
}

// __shfl_xor_sync: lane ^ lane_mask, or the lane's own value for a lane of a later segment.
void complete_shfl_xor(void* const* args, unsigned mask) {
  complete(args, mask, "__shfl_xor_sync", [](int lane, const ShuffleArg& a, int segment) {
    const int src = lane ^ a.source;
    return src >= 0 && src < segment + a.width ? src : lane;
  });
}

void complete_vote(void* const* args, unsigned mask) {
  unsigned ballot = 0;
  for (int lane = 0; lane < 32; lane++) {
    if ((mask >> lane & 1u) && static_cast<VoteArg*>(args[lane])->predicate != 0) {
      ballot |= 1u << lane;
    }
  }
  for (int lane = 0; lane < 32; lane++) {
    if (mask >> lane & 1u) static_cast<VoteArg*>(args[lane])->ballot = ballot;
  }
}

void complete_syncwarp(void* const*, unsigned) {}

}  // namespace cb_emu
