#include "error.h"

#include <cmath>
#include <cstdio>

#include "cb_build_config.h"  // CB_REPO_ROOT

namespace cb {

std::string source_path(const char* file) {
  std::string path(file ? file : "?");
#ifdef CB_REPO_ROOT
  // CMake compiles every source by its absolute path; strip the repository root from it.
  const std::string root = std::string(CB_REPO_ROOT) + "/";
  if (path.compare(0, root.size(), root) == 0) return path.substr(root.size());
#endif
  // Fallback (e.g. a build tree that was moved): keep from the last "native/" on.
  const size_t at = path.rfind("native/");
  return at == std::string::npos ? path : path.substr(at);
}

std::string format_number(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "Infinity" : "-Infinity";
  char text[32];
  std::snprintf(text, sizeof text, "%.15g", value);
  return text;
}

Error::Error(const std::string& message, const char* file, int line)
    : std::runtime_error(message), file_(source_path(file)), line_(line) {}

}  // namespace cb
