// The functions the addon exports (one file each); addon.cc registers them.
#pragma once

#include <napi.h>

namespace cbn {

Napi::Value build_info(const Napi::CallbackInfo& info);     // info.cc
Napi::Value cuda_status(const Napi::CallbackInfo& info);    // info.cc
Napi::Value set_threads(const Napi::CallbackInfo& info);    // info.cc
Napi::Value gemm(const Napi::CallbackInfo& info);           // gemm.cc
Napi::Value nearest_codes(const Napi::CallbackInfo& info);  // nearest.cc
Napi::Value linear_seconds(const Napi::CallbackInfo& info);  // linear_timing.cc
Napi::Value gemm_limits(const Napi::CallbackInfo& info);     // gemm_limits.cc
void register_model(Napi::Env env, Napi::Object exports);    // model.cc: the Model class
void register_vq(Napi::Env env, Napi::Object exports);       // vq.cc: the VqNet class
void register_vq_trainer(Napi::Env env, Napi::Object exports);  // vq_trainer.cc
void register_dist(Napi::Env env, Napi::Object exports);        // dist.cc: several ranks

}  // namespace cbn
