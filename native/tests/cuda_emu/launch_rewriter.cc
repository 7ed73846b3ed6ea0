// cb_cuda_emu_rewrite IN.cu OUT.cc: the build-time step of the CUDA emulation (cuda_emu.h). It
// copies a .cu file unchanged except for the two pieces of CUDA syntax that are not C++:
//
//   KERNEL<<<grid, block[, smem[, stream]]>>>(args)
//     -> ::cb_emu::launch(::cb_emu::LaunchSite{"KERNEL", __FILE__, __LINE__},
//                         grid, block[, smem[, stream]])(CALLER, RESOLVER)(args)
//   with CALLER = [=](const auto&... a) { KERNEL(a...); } (template kernels deduce their
//   arguments as in an ordinary call) and RESOLVER = [=](auto p) -> decltype(p = KERNEL, p),
//   which gives the kernel's address where it is determined (launch.h: kernel_address)
//   extern __shared__ [__align__(n)] T name[];
//     -> T* const name = ::cb_emu::dynamic_shared<T>();
//
// KERNEL may be a template-id spanning lines (`k<A, B>\n  <<<...>>>`, `k<decltype(x)::value>`).
// The output starts with the emulation's <cuda_runtime.h> (nvcc includes it implicitly) and a
// #line directive, so diagnostics and __FILE__ name the original file and lines; every newline
// of the input is kept. Comments and string literals are copied untouched. Plain C++, no
// dependencies: the emulated build needs only a host compiler.
#include <algorithm>
#include <cctype>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

namespace {

struct Failure {
  std::string message;
  size_t offset;
};

bool is_ident(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }

size_t line_of(const std::string& text, size_t offset) {
  size_t line = 1;
  for (size_t i = 0; i < offset && i < text.size(); i++) line += text[i] == '\n';
  return line;
}

// The whitespace of `s` collapsed to single spaces (for the kernel's name in messages).
std::string one_line(const std::string& s) {
  std::string out;
  bool space = false;
  for (char c : s) {
    if (std::isspace(static_cast<unsigned char>(c))) {
      space = !out.empty();
      continue;
    }
    if (space) out += ' ';
    space = false;
    out += c;
  }
  return out;
}

std::string trim(const std::string& s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) b++;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) e--;
  return s.substr(b, e - b);
}

// The start of the kernel expression that ends at `end` in `out` (already copied text): an
// optional template argument list, balanced, preceded by a (possibly qualified) name.
size_t kernel_start(const std::string& out, size_t end) {
  size_t i = end;
  while (i > 0 && std::isspace(static_cast<unsigned char>(out[i - 1]))) i--;
  if (i > 0 && out[i - 1] == '>') {
    int depth = 0;
    while (i > 0) {
      const char c = out[--i];
      if (c == '>' || c == ')' || c == ']') depth++;
      if (c == '<' || c == '(' || c == '[') depth--;
      if (depth == 0) break;
    }
    if (depth != 0) throw Failure{"unbalanced template arguments before <<<", end};
    while (i > 0 && std::isspace(static_cast<unsigned char>(out[i - 1]))) i--;
  }
  const size_t name_end = i;
  while (i > 0 && (is_ident(out[i - 1]) || out[i - 1] == ':')) i--;
  if (i == name_end) throw Failure{"no kernel name before <<<", end};
  return i;
}

class Rewriter {
 public:
  explicit Rewriter(const std::string& in) : in_(in) {}

  std::string run() {
    while (pos_ < in_.size()) {
      if (starts("//")) {
        copy_until("\n");
      } else if (starts("/*")) {
        copy_until("*/", true);
      } else if (in_[pos_] == '"' || in_[pos_] == '\'') {
        copy_literal(in_[pos_]);
      } else if (starts("<<<")) {
        rewrite_launch();
      } else if (word_at("extern") && next_word_is("__shared__")) {
        rewrite_dynamic_shared();
      } else {
        out_ += in_[pos_++];
      }
    }
    return out_;
  }

 private:
  bool starts(const char* s) const { return in_.compare(pos_, std::char_traits<char>::length(s), s) == 0; }

  bool word_at(const char* w) const {
    const size_t n = std::char_traits<char>::length(w);
    return starts(w) && (pos_ == 0 || !is_ident(in_[pos_ - 1])) &&
           (pos_ + n >= in_.size() || !is_ident(in_[pos_ + n]));
  }

  bool next_word_is(const char* w) const {
    size_t i = pos_;
    while (i < in_.size() && is_ident(in_[i])) i++;
    while (i < in_.size() && std::isspace(static_cast<unsigned char>(in_[i]))) i++;
    return in_.compare(i, std::char_traits<char>::length(w), w) == 0;
  }

  // Copies through the end of `end` (or of the line for "\n", which is copied as well).
  void copy_until(const char* end, bool include_end = false) {
    const size_t at = in_.find(end, pos_ + 2);
    const size_t stop = at == std::string::npos
                            ? in_.size()
                            : at + (include_end ? std::char_traits<char>::length(end) : 0);
    out_.append(in_, pos_, stop - pos_);
    pos_ = stop;
  }

  void copy_literal(char quote) {
    // A digit separator (1'000) is not a character literal.
    if (quote == '\'' && pos_ > 0 && std::isxdigit(static_cast<unsigned char>(in_[pos_ - 1]))) {
      out_ += in_[pos_++];
      return;
    }
    size_t i = pos_ + 1;
    while (i < in_.size() && in_[i] != quote && in_[i] != '\n') i += in_[i] == '\\' ? 2 : 1;
    if (i >= in_.size() || in_[i] != quote) throw Failure{"unterminated literal", pos_};
    out_.append(in_, pos_, i + 1 - pos_);
    pos_ = i + 1;
  }

  void rewrite_launch() {
    const size_t start = kernel_start(out_, out_.size());
    const std::string kernel = out_.substr(start);
    out_.resize(start);
    // The configuration: up to the first >>> outside brackets.
    size_t i = pos_ + 3;
    int depth = 0;
    for (; i < in_.size(); i++) {
      const char c = in_[i];
      if (c == '(' || c == '[' || c == '{') depth++;
      if (c == ')' || c == ']' || c == '}') depth--;
      if (depth == 0 && in_.compare(i, 3, ">>>") == 0) break;
      if (depth < 0) throw Failure{"unbalanced launch configuration", pos_};
    }
    if (i >= in_.size()) throw Failure{"<<< without >>>", pos_};
    const std::string config = in_.substr(pos_ + 3, i - pos_ - 3);
    // The kernel on one line (it appears three times); its newlines follow the call.
    const std::string name = one_line(kernel);
    out_ += "::cb_emu::launch(::cb_emu::LaunchSite{\"" + name + "\", __FILE__, __LINE__}, " +
            config + ")([=](const auto&... cb_emu_a) { " + name + "(cb_emu_a...); }, " +
            "[=](auto cb_emu_p) -> decltype((void)(cb_emu_p = " + name + "), decltype(cb_emu_p)()) { " +
            "cb_emu_p = " + name + "; return cb_emu_p; })";
    out_.append(std::count(kernel.begin(), kernel.end(), '\n'), '\n');
    pos_ = i + 3;
  }

  void rewrite_dynamic_shared() {
    const size_t semi = in_.find(';', pos_);
    if (semi == std::string::npos) throw Failure{"extern __shared__ without ;", pos_};
    std::string decl = in_.substr(pos_, semi - pos_);
    const size_t newlines = std::count(decl.begin(), decl.end(), '\n');
    decl = decl.substr(decl.find("__shared__") + 10);
    // The dynamic buffer is aligned for any type (dynamic_shared), so __align__ adds nothing.
    for (size_t a; (a = decl.find("__align__")) != std::string::npos;) {
      const size_t close = decl.find(')', a);
      if (close == std::string::npos) throw Failure{"__align__ without )", pos_};
      decl.erase(a, close + 1 - a);
    }
    const size_t bracket = decl.find('[');
    if (bracket == std::string::npos || trim(decl.substr(bracket)) != "[]") {
      throw Failure{"expected `extern __shared__ T name[];`", pos_};
    }
    std::string head = trim(decl.substr(0, bracket));
    size_t n = head.size();
    while (n > 0 && is_ident(head[n - 1])) n--;
    const std::string name = head.substr(n), type = trim(head.substr(0, n));
    if (name.empty() || type.empty()) throw Failure{"expected `extern __shared__ T name[];`", pos_};
    out_ += type + "* const " + name + " = ::cb_emu::dynamic_shared<" + type + ">()";
    out_.append(newlines, '\n');
    pos_ = semi;  // the ; is copied next
  }

  const std::string& in_;
  std::string out_;
  size_t pos_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s IN.cu OUT.cc\n", argv[0]);
    return 2;
  }
  std::ifstream in(argv[1], std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "%s: cannot read\n", argv[1]);
    return 1;
  }
  std::stringstream buf;
  buf << in.rdbuf();
  const std::string text = buf.str();
  std::string body;
  try {
    body = Rewriter(text).run();
  } catch (const Failure& f) {
    std::fprintf(stderr, "%s:%zu: cuda-emu rewrite: %s\n", argv[1], line_of(text, f.offset),
                 f.message.c_str());
    return 1;
  }
  std::ofstream out(argv[2], std::ios::binary);
  out << "// Generated by cb_cuda_emu_rewrite from " << argv[1] << "; do not edit.\n"
      << "#include <cuda_runtime.h>\n"
      << "#line 1 \"" << argv[1] << "\"\n"
      << body;
  if (!out) {
    std::fprintf(stderr, "%s: cannot write\n", argv[2]);
    return 1;
  }
  return 0;
}
