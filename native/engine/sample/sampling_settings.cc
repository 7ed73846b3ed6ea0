#include "sampling_settings.h"

#include <cfloat>
#include <cmath>
#include <string>

#include "../error.h"

namespace cb {
namespace {

bool finite_float(double v) { return std::isfinite(v) && std::fabs(v) <= FLT_MAX; }

bool int31(double v) { return v >= 0 && v <= 2147483647.0 && v == std::floor(v); }

}  // namespace

void check_sampling_settings(double guidance, double guidance_start, double temperature,
                             double top_k, double top_p) {
  CB_CHECK(finite_float(guidance),
           "sample: guidance must be a finite number, got " + format_number(guidance));
  CB_CHECK(int31(guidance_start),
           "sample: guidanceStart must be an integer in [0, 2147483647], got " +
               format_number(guidance_start));
  CB_CHECK(finite_float(temperature) && temperature >= 0,
           "sample: temperature must be a finite number >= 0, got " + format_number(temperature));
  CB_CHECK(int31(top_k),
           "sample: topK must be an integer in [0, 2147483647], got " + format_number(top_k));
  CB_CHECK(top_p > 0 && top_p <= 1, "sample: topP must be in (0, 1], got " + format_number(top_p));
}

}  // namespace cb
