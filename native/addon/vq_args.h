// The arguments the VQ classes of the addon share (VqNet in vq.cc, VqTrainer in
// vq_trainer.cc): the architecture object and a state dict of tensors.
#pragma once

#include <napi.h>

#include "vq/vq_config.h"
#include "vq/vq_model.h"

namespace cbn {

// {ch, chMult, zChannels, codes, codeDim, encoderBlocks, decoderBlocks} -> a validated config.
cb::VqConfig parse_vq_config(const Napi::Value& value);
// The same object from a config.
Napi::Object vq_config_object(Napi::Env env, const cb::VqConfig& c);
// {name: {shape, data: Float32Array}} -> views into the JS arrays (valid while the caller runs).
cb::HostTensors parse_vq_tensors(const Napi::Object& o);

}  // namespace cbn
