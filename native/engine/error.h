// Errors of the native engine. Nothing in native code exits or aborts the process: every
// failure throws cb::Error, which carries the source file and line where it was detected,
// and the addon turns it into a JavaScript Error with `nativeFile` and `nativeLine`.
#pragma once

#include <stdexcept>
#include <string>

namespace cb {

class Error : public std::runtime_error {
 public:
  // `file` is __FILE__; it is stored relative to the repository root (native/engine/...).
  Error(const std::string& message, const char* file, int line);
  const std::string& file() const { return file_; }
  int line() const { return line_; }

 private:
  std::string file_;
  int line_;
};

// __FILE__ (an absolute path under CMake) relative to the repository root.
std::string source_path(const char* file);

// A number as an error message shows it: "3", "1.5", "1e+300", and as JavaScript spells the
// non-finite ones, "NaN", "Infinity", "-Infinity".
std::string format_number(double value);

}  // namespace cb

// CB_CHECK(cond, msg): throws cb::Error(msg) with the current file and line when cond is false.
// `msg` may be any expression convertible to std::string; it is only evaluated on failure.
#define CB_CHECK(cond, msg)                                    \
  do {                                                         \
    if (!(cond)) throw ::cb::Error((msg), __FILE__, __LINE__); \
  } while (0)

// CB_FAIL(msg): throws unconditionally.
#define CB_FAIL(msg) throw ::cb::Error((msg), __FILE__, __LINE__)
