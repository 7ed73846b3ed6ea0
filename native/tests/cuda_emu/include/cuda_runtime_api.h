// The CUDA emulation's <cuda_runtime_api.h> (native/tests/cuda_emu): the emulated build's include path
// puts this folder first, so the engine's CUDA sources compile as host C++.
#pragma once

#include "../runtime_api.h"
