#include "raster_plan.h"

#include <algorithm>

namespace cb {

void set_raster_plan(const ModelConfig& c, int steps, SampleRequest& r) {
  r.block_start = {0};  // block 0: the class token, slot 0
  r.block_end = {1};
  r.block_scale = {-1};
  r.pos_of = {-1};
  r.prev_pos_of = {-1};
  int slot = 1;
  for (size_t k = 0; k < c.scales.size(); k++) {
    const int count = c.scales[k] * c.scales[k], blocks = std::min(steps, count);
    int rank = 0, prev_first = -1, prev_size = 0;
    for (int b = 0; b < blocks; b++) {
      const int size = count / blocks + (b >= blocks - count % blocks ? 1 : 0);
      r.block_start.push_back(slot);
      r.block_end.push_back(slot + size);
      r.block_scale.push_back(int(k));
      for (int j = 0; j < size; j++, slot++) {
        r.pos_of.push_back(rank + j);
        r.prev_pos_of.push_back(prev_first < 0 ? -1 : prev_first + j % prev_size);
      }
      prev_first = rank;
      prev_size = size;
      rank += size;
    }
  }
}

}  // namespace cb
