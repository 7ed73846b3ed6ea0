// The parameter layout table: every parameter tensor of the model as (name, shape, offset,
// weight decay, init) inside one contiguous buffer. Gradients and the AdamW moments are
// buffers of the same size and reuse the table.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "config.h"

namespace cb {

enum class Init { Normal, Zeros, RopeAxial };

struct ParamEntry {
  std::string name;
  std::vector<int64_t> shape;
  int64_t offset = 0;  // in values, into the flat buffer
  int64_t size = 0;    // product of shape
  bool decay = false;  // AdamW weight decay applies (linear weight matrices only)
  Init init = Init::Normal;
  float init_std = 0.02f;  // for Init::Normal
};

class ParamLayout {
 public:
  explicit ParamLayout(const ModelConfig& config);

  const std::vector<ParamEntry>& entries() const { return entries_; }
  int64_t total() const { return total_; }
  // Throws cb::Error for an unknown name.
  const ParamEntry& find(const std::string& name) const;
  int64_t offset(const std::string& name) const { return find(name).offset; }

 private:
  void add(const std::string& name, std::vector<int64_t> shape, bool decay, Init init);
  std::vector<ParamEntry> entries_;
  int64_t total_ = 0;
};

// Names of the per-layer tensors, e.g. layer_param(3, "qkv.w") == "blocks.3.qkv.w".
std::string layer_param(int layer, const char* suffix);

}  // namespace cb
