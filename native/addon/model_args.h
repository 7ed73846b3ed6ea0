// Reading the model's config and batches from JS values (model.cc).
#pragma once

#include <napi.h>

#include "model/batch.h"
#include "model/config.h"
#include "model/param_layout.h"

namespace cbn {

// {vocab, latentDim, classes, depth, width, heads, mlpRatio, scales: number[], ropeMixLayers}
cb::ModelConfig parse_model_config(const Napi::Value& value);

// {batch, slots, labels: Int32Array, posP, posQ: Int32Array, uLatent, vLatent: Float32Array,
//  uLearned, vLearned: Uint8Array, targets: Int32Array, visibleEnd: Int32Array}; copied.
cb::Batch<float> parse_batch(const Napi::Value& value, int latent_dim);

const char* init_name(cb::Init init);

}  // namespace cbn
