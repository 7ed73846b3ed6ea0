// The CUDA emulation's <cuda_runtime.h> (native/tests/cuda_emu), which the build-time rewrite
// of each .cu file includes first, as nvcc includes the real one: the host runtime, the device
// language and the launches.
#pragma once

#include "../device_language.h"
#include "../launch.h"
#include "../runtime_api.h"
