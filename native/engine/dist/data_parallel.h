// Data-parallel training of one Model over the ranks of a Communicator (DESIGN.md
// "Scale-out"). Every rank runs the forward and backward of its own slice of the global batch,
// with the loss divided by the global batch's token count (Batch::loss_tokens), so that the
// sum of the ranks' gradients is the global batch's gradient; then:
//  - plain: one all-reduce of the gradients, and the same AdamW step on every rank;
//  - ZeRO-1 (llm.c's zero stage 1): a reduce-scatter leaves each rank the summed gradients of
//    its shard of the flat parameters, the rank updates that shard with the AdamW moments it
//    alone keeps, and an all-gather brings every rank every shard's new parameters.
// Both give the single process's result up to the summation order of the gradient sums.
// Plain data parallel on host buffers can overlap the all-reduce with the backward, in
// buckets (overlapped_all_reduce.h); the sums are the same values either way.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "communicator.h"
#include "model/model.h"
#include "overlapped_all_reduce.h"

namespace cb {

template <typename Real>
class DataParallel {
 public:
  // Makes every rank's parameters rank 0's (the model was initialised from the same seed, but
  // a resume or a user's weights need not agree). With zero1 the model keeps its shard's
  // moments alone (Model::set_optimizer_shard), those it held so far.
  // bucket_values > 0 asks for the all-reduce overlapped with the backward in buckets of that
  // many values; it is taken for plain data parallel on host buffers (overlapped() says).
  DataParallel(Model<Real>& model, Communicator& comm, bool zero1, int64_t bucket_values = 0);

  bool zero1() const { return zero1_; }
  bool overlapped() const { return overlap_ != nullptr; }
  const Shards& shards() const { return shards_; }
  // model.backward(); after the last micro-batch of a step, overlapped, with the gradients'
  // all-reduce during it (step() then has it done).
  void backward(bool last_micro_batch);
  // The gradient exchange (unless the backward did it) and the optimizer step (class comment).
  void step(const AdamWSettings& s);
  // A whole flat state ("params", "adamM", "adamV") on rank 0, the moments gathered from the
  // shards under ZeRO-1; an empty vector on other ranks under ZeRO-1 (collective: every rank
  // calls it).
  std::vector<Real> gather_state(const std::string& which);
  // Writes a whole flat state given on every rank (a resumed checkpoint): the moments' shard
  // alone under ZeRO-1.
  void write_state(const std::string& which, const Real* whole);

 private:
  Model<Real>& model_;
  Communicator& comm_;
  bool zero1_;
  Shards shards_;
  std::unique_ptr<OverlappedAllReduce<Real>> overlap_;
  bool reduced_ = false;  // the gradients of this step were summed during the backward
};

}  // namespace cb
