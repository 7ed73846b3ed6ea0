// A sampling plan without the TypeScript planner, for the native tests and benchmarks: every
// scale's positions in raster order, `steps` blocks per scale (at most s^2) of sizes as even
// as possible (the larger ones last), prev positions paired by index within the previous block.
// It costs the same as the checkerboard plan with the same steps (same block sizes).
#pragma once

#include "../model/config.h"
#include "sampler.h"

namespace cb {

// Fills r.block_start, block_end, block_scale, pos_of and prev_pos_of (shared by all images).
void set_raster_plan(const ModelConfig& c, int steps, SampleRequest& r);

}  // namespace cb
