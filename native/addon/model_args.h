// Reading the model's config and batches from JS values (model.cc).
#pragma once

#include <napi.h>

#include "model/batch.h"
#include "model/config.h"
#include "model/precision.h"
#include "model/param_layout.h"
#include "sample/sampler.h"

namespace cbn {

// {vocab, latentDim, classes, depth, width, heads, mlpRatio, scales: number[], ropeMixLayers}
cb::ModelConfig parse_model_config(const Napi::Value& value);

// {batch, slots, labels: Int32Array, posP, posQ: Int32Array, codes: Int32Array (batch *
//  codes_per_row), targets: Int32Array, visibleEnd: Int32Array}; copied.
cb::Batch<float> parse_batch(const Napi::Value& value, int64_t codes_per_row);

// {labels, imageIndex, blockStart, blockEnd, blockScale, posOf, prevPosOf: Int32Array,
//  guidance, guidanceStart, temperature, topK, topP, seed: number,
//  entropy, stepCodes, logits: boolean}; copied. Sizes are checked by cb::sample_images.
cb::SampleRequest parse_sample_request(const Napi::Value& value);

const char* init_name(cb::Init init);

// The Model constructor's optional 4th argument, "fp32" or "bf16" (undefined: none given, the
// backend name's own precision: cuda is bf16, every other fp32). bf16 on the cpu needs a CPU
// with avx512_bf16 (make_model_ops says so otherwise).
bool has_precision_arg(const Napi::CallbackInfo& info, size_t i);
cb::Precision precision_arg(const Napi::CallbackInfo& info, size_t i);

}  // namespace cbn
