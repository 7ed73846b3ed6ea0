// The scalar settings of a sampling call, checked in one place so that the engine
// (check_request in sampler.cc) and the addon's argument parser (before it narrows the JS
// numbers to float and int) refuse the same values with the same messages.
#pragma once

namespace cb {

// Throws cb::Error naming the first bad setting and its value:
//   guidance        finite (as a float)
//   guidance_start  an integer in [0, 2^31 - 1]
//   temperature     finite (as a float) and >= 0 (0: greedy)
//   top_k           an integer in [0, 2^31 - 1] (0: off)
//   top_p           in (0, 1] (1: off)
void check_sampling_settings(double guidance, double guidance_start, double temperature,
                             double top_k, double top_p);

}  // namespace cb
