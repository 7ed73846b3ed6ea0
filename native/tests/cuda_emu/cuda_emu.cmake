# The CUDA emulation (tests only; included by native/CMakeLists.txt inside CB_BUILD_TESTS):
# every kernel of engine/cuda compiled as host C++ by the C++ compiler (no nvcc needed) and run
# on the CPU, so the `cuda` parity tests run where there is no GPU, as ctest's `cuda-emu`.
#   cb_cuda_emu_rewrite   turns each .cu into a .emu.cc in the build folder: the launch syntax
#                         and `extern __shared__` only (launch_rewriter.cc)
#   cb_cuda_emu           the emulated runtime: fibers, block scheduler, launches, memory,
#                         streams and graphs, device properties
#   cb_engine_emu         cb_engine_common + backends.cc and build_info.cc with CB_HAVE_CUDA +
#                         the rewritten kernels and the backend's host files
#   cb_engine_tests_emu   the test objects of cb_engine_tests + the emulator's own tests
# It is no backend and no product feature: nothing outside the test build links it.
set(CB_EMU_DIR "${CMAKE_CURRENT_SOURCE_DIR}/tests/cuda_emu")
set(CB_EMU_GENERATED "${CMAKE_CURRENT_BINARY_DIR}/cuda_emu")

add_executable(cb_cuda_emu_rewrite "${CB_EMU_DIR}/launch_rewriter.cc")
target_link_libraries(cb_cuda_emu_rewrite PRIVATE cb_warnings)

# cb_cuda_emu_sources(OUT_VAR FILE.cu...): the rewritten copies of the .cu files.
function(cb_cuda_emu_sources out_var)
  set(outputs)
  foreach(cu IN LISTS ARGN)
    get_filename_component(cu_abs "${cu}" ABSOLUTE BASE_DIR "${CMAKE_CURRENT_SOURCE_DIR}")
    get_filename_component(stem "${cu}" NAME_WE)
    set(out "${CB_EMU_GENERATED}/${stem}.emu.cc")
    add_custom_command(OUTPUT "${out}"
      COMMAND cb_cuda_emu_rewrite "${cu_abs}" "${out}"
      DEPENDS "${cu_abs}" cb_cuda_emu_rewrite
      COMMENT "cuda-emu: rewriting ${stem}.cu"
      VERBATIM)
    list(APPEND outputs "${out}")
  endforeach()
  set(${out_var} ${outputs} PARENT_SCOPE)
endfunction()

add_library(cb_cuda_emu STATIC
  "${CB_EMU_DIR}/fiber.cc"
  "${CB_EMU_DIR}/block_scheduler.cc"
  "${CB_EMU_DIR}/warp_intrinsics.cc"
  "${CB_EMU_DIR}/launch.cc"
  "${CB_EMU_DIR}/runtime_errors.cc"
  "${CB_EMU_DIR}/runtime_device.cc"
  "${CB_EMU_DIR}/runtime_memory.cc"
  "${CB_EMU_DIR}/runtime_streams.cc")
target_include_directories(cb_cuda_emu PUBLIC "${CB_EMU_DIR}/include")
target_link_libraries(cb_cuda_emu PRIVATE cb_warnings PUBLIC Threads::Threads)

# The emulated engine's build facts: build_info() reports the emulation as its CUDA compiler.
set(CB_CUDA_COMPILER_STRING "cuda-emu (${CMAKE_CXX_COMPILER_ID} ${CMAKE_CXX_COMPILER_VERSION})")
set(CB_CUDA_FLAGS_STRING "host C++, kernels rewritten by cb_cuda_emu_rewrite")
set(CB_CUDA_ARCHITECTURES_STRING "emulated sm_90")
configure_file(engine/build_config.h.in "${CB_EMU_GENERATED}/generated/cb_build_config.h" @ONLY)

cb_cuda_emu_sources(CB_EMU_KERNELS ${CB_CUDA_KERNEL_SOURCES})
add_library(cb_engine_emu STATIC $<TARGET_OBJECTS:cb_engine_common> ${CB_ENGINE_VARIANT_SOURCES}
            ${CB_CUDA_HOST_SOURCES} ${CB_EMU_KERNELS})
target_compile_definitions(cb_engine_emu PRIVATE CB_HAVE_CUDA)
# The rewritten kernels live in the build folder; their quoted includes ("check.h",
# "../error.h") resolve against engine/cuda.
target_include_directories(cb_engine_emu
  PUBLIC "${CMAKE_CURRENT_SOURCE_DIR}/engine"
  PRIVATE "${CMAKE_CURRENT_SOURCE_DIR}/engine/cuda" "${CB_EMU_GENERATED}/generated")
target_link_libraries(cb_engine_emu PUBLIC cb_engine_links cb_cuda_emu PRIVATE cb_engine_settings)
# Relaxed for the rewritten kernels only, warnings that nvcc's device compiler does not give
# for device code, so the sources do not heed them: `#pragma unroll` is nvcc's
# (-Wunknown-pragmas), and a kernel may take a parameter only some versions read
# (-Wunused-parameter; nvcc's -Xcompiler flags reach host code only).
set(CB_EMU_KERNEL_OPTIONS "-Wno-unknown-pragmas;-Wno-unused-parameter")
set_source_files_properties(${CB_EMU_KERNELS} PROPERTIES COMPILE_OPTIONS "${CB_EMU_KERNEL_OPTIONS}")

cb_cuda_emu_sources(CB_EMU_SELF_TESTS "${CB_EMU_DIR}/emulator_tests.cu")
add_executable(cb_engine_tests_emu $<TARGET_OBJECTS:cb_test_objects> ${CB_EMU_SELF_TESTS})
target_include_directories(cb_engine_tests_emu PRIVATE "${CMAKE_CURRENT_SOURCE_DIR}/tests")
set_source_files_properties(${CB_EMU_SELF_TESTS} PROPERTIES COMPILE_OPTIONS "${CB_EMU_KERNEL_OPTIONS}")
target_link_libraries(cb_engine_tests_emu PRIVATE cb_engine_emu cb_warnings)
add_test(NAME cuda-emu COMMAND cb_engine_tests_emu cuda)
# The emulated device is always there: a skipped cuda group is a failure here.
set_tests_properties(cuda-emu PROPERTIES FAIL_REGULAR_EXPRESSION "SKIP cuda")
