// The matmul precision a model backend is made for (backends.h): fp32, or bf16 (bf16 operands,
// fp32 accumulation; the backend then offers the mixed-precision ops of mixed_ops.h).
#pragma once

#include <string>

#include "../error.h"

namespace cb {

enum class Precision { fp32, bf16 };

inline const char* precision_name(Precision p) { return p == Precision::bf16 ? "bf16" : "fp32"; }

// "fp32" or "bf16"; anything else is a cb::Error naming the choices.
inline Precision parse_precision(const std::string& text) {
  if (text == "fp32") return Precision::fp32;
  if (text == "bf16") return Precision::bf16;
  CB_FAIL("precision must be fp32 or bf16, got '" + text + "'");
}

}  // namespace cb
