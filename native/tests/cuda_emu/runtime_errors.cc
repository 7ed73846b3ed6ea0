// The last error of each host thread and the error strings (runtime_api.h). A failure's
// detail (which launch, which block, why) is appended to CUDA's text of its code, so the
// engine's CB_CUDA_CHECK messages say what went wrong in the emulation.
#include <cstdio>
#include <string>

#include "emulator.h"

namespace cb_emu {
namespace {

thread_local cudaError_t t_last_error = cudaSuccess;
thread_local cudaError_t t_detail_code = cudaSuccess;
thread_local std::string t_detail;

}  // namespace

cudaError_t fail(cudaError_t code, const std::string& detail) {
  t_last_error = code;
  t_detail_code = code;
  t_detail = detail;
  if (code == cudaErrorLaunchFailure) std::fprintf(stderr, "cuda-emu: %s\n", detail.c_str());
  return code;
}

}  // namespace cb_emu

const char* cudaGetErrorName(cudaError_t error) {
  switch (error) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevicePointer: return "cudaErrorInvalidDevicePointer";
    case cudaErrorInvalidMemcpyDirection: return "cudaErrorInvalidMemcpyDirection";
    case cudaErrorNoDevice: return "cudaErrorNoDevice";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
    case cudaErrorIllegalAddress: return "cudaErrorIllegalAddress";
    case cudaErrorLaunchOutOfResources: return "cudaErrorLaunchOutOfResources";
    case cudaErrorIllegalInstruction: return "cudaErrorIllegalInstruction";
    case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
    case cudaErrorNotSupported: return "cudaErrorNotSupported";
    case cudaErrorStreamCaptureUnsupported: return "cudaErrorStreamCaptureUnsupported";
    case cudaErrorStreamCaptureInvalidated: return "cudaErrorStreamCaptureInvalidated";
    case cudaErrorStreamCaptureUnmatched: return "cudaErrorStreamCaptureUnmatched";
    case cudaErrorStreamCaptureWrongThread: return "cudaErrorStreamCaptureWrongThread";
  }
  return "cudaErrorUnknown";
}

const char* cudaGetErrorString(cudaError_t error) {
  const char* text = "unknown error";
  switch (error) {
    case cudaSuccess: text = "no error"; break;
    case cudaErrorInvalidValue: text = "invalid argument"; break;
    case cudaErrorMemoryAllocation: text = "out of memory"; break;
    case cudaErrorInvalidConfiguration: text = "invalid configuration argument"; break;
    case cudaErrorInvalidDevicePointer: text = "invalid device pointer"; break;
    case cudaErrorInvalidMemcpyDirection: text = "invalid copy direction for memcpy"; break;
    case cudaErrorNoDevice: text = "no CUDA-capable device is detected"; break;
    case cudaErrorInvalidDevice: text = "invalid device ordinal"; break;
    case cudaErrorInvalidResourceHandle: text = "invalid resource handle"; break;
    case cudaErrorIllegalAddress: text = "an illegal memory access was encountered"; break;
    case cudaErrorLaunchOutOfResources: text = "too many resources requested for launch"; break;
    case cudaErrorIllegalInstruction: text = "an illegal instruction was encountered"; break;
    case cudaErrorLaunchFailure: text = "unspecified launch failure"; break;
    case cudaErrorNotSupported: text = "operation not supported"; break;
    case cudaErrorStreamCaptureUnsupported:
      text = "operation not permitted when stream is capturing";
      break;
    case cudaErrorStreamCaptureInvalidated:
      text = "operation failed due to a previous error during capture";
      break;
    case cudaErrorStreamCaptureUnmatched: text = "capture was not initiated in this stream"; break;
    case cudaErrorStreamCaptureWrongThread:
      text = "attempt to terminate a thread-local capture sequence from another thread";
      break;
  }
  if (error == cb_emu::t_detail_code && error != cudaSuccess && !cb_emu::t_detail.empty()) {
    thread_local std::string with_detail;
    with_detail = std::string(text) + " [cuda-emu: " + cb_emu::t_detail + "]";
    return with_detail.c_str();
  }
  return text;
}

cudaError_t cudaGetLastError() {
  const cudaError_t e = cb_emu::t_last_error;
  cb_emu::t_last_error = cudaSuccess;
  return e;
}

cudaError_t cudaPeekAtLastError() { return cb_emu::t_last_error; }
