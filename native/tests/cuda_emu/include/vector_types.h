// The CUDA emulation's <vector_types.h> (native/tests/cuda_emu): the emulated build's include path
// puts this folder first, so the engine's CUDA sources compile as host C++.
#pragma once

#include "../vector_types.h"
