// Kernel launches in the emulation: `k<<<grid, block, smem, stream>>>(args)` is rewritten at
// build time (launch_rewriter.cc) into `::cb_emu::launch(site, grid, block, smem,
// stream)(caller, resolver)(args)`. The arguments are copied and converted to the kernel's
// parameter types at the call, as CUDA does; then the launch is checked as the GPU checks it (launch.cc) and either runs to its
// end before the call returns or, on a capturing stream, is recorded for the graph.
#pragma once

#include <cstddef>
#include <memory>
#include <tuple>
#include <type_traits>
#include <utility>

#include "block_scheduler.h"
#include "runtime_api.h"

namespace cb_emu {

// Where a launch is written: the kernel expression and the file and line of the <<<...>>>.
struct LaunchSite {
  const char* kernel;
  const char* file;
  int line;
};

// Checks the configuration, then runs the grid or records it (launch.cc). Failures set the
// calling thread's last error (cudaGetLastError), naming the site.
void submit(const void* kernel, const LaunchSite& site, const BlockShape& shape,
            std::shared_ptr<const KernelBody> body, cudaStream_t stream);

// A kernel call with its arguments copied (decayed); every thread calls the kernel with its own
// copy, converted to the parameter types as an ordinary call converts them. `Caller` is the
// rewriter's lambda `[=](auto&&... a) { KERNEL(a...); }`, so template kernels deduce their
// arguments as with nvcc.
template <typename Caller, typename Args>
class KernelCall final : public KernelBody {
 public:
  KernelCall(Caller caller, Args args) : caller_(caller), args_(std::move(args)) {}
  void run() const override {
    std::apply([this](const auto&... a) { caller_(a...); }, args_);
  }

 private:
  Caller caller_;
  Args args_;
};

// The kernel's address, which cudaFuncSetAttribute keys on: `Resolver` is the rewriter's lambda
// `[=](auto p) -> decltype(p = KERNEL, p)`, which compiles when KERNEL converts to a pointer with
// the argument types as parameters (a plain kernel, a template-id, a pointer variable, or a
// template deduced from exact argument types). Otherwise null: the launch then has the default
// limits (48 KiB of dynamic shared memory).
template <typename Resolver, typename Pointer>
const void* kernel_address(const Resolver& resolver) {
  if constexpr (std::is_invocable<const Resolver&, Pointer>::value) {
    return reinterpret_cast<const void*>(resolver(Pointer{}));
  } else {
    return nullptr;
  }
}

template <typename Caller, typename Resolver>
class Launch {
 public:
  Launch(LaunchSite site, BlockShape shape, cudaStream_t stream, Caller caller,
         Resolver resolver)
      : site_(site), shape_(shape), stream_(stream), caller_(caller), resolver_(resolver) {}

  template <typename... A>
  void operator()(A&&... args) const {
    using Args = std::tuple<std::decay_t<A>...>;
    const void* kernel = kernel_address<Resolver, void (*)(std::decay_t<A>...)>(resolver_);
    submit(kernel, site_, shape_,
           std::make_shared<KernelCall<Caller, Args>>(caller_, Args(std::forward<A>(args)...)),
           stream_);
  }

 private:
  LaunchSite site_;
  BlockShape shape_;
  cudaStream_t stream_;
  Caller caller_;
  Resolver resolver_;
};

// `::cb_emu::launch(site, grid, block, smem, stream)(caller, resolver)(args)`.
class LaunchConfig {
 public:
  LaunchConfig(LaunchSite site, dim3 grid, dim3 block, size_t dynamic_smem = 0,
               cudaStream_t stream = nullptr)
      : site_(site), shape_{grid, block, dynamic_smem}, stream_(stream) {}
  template <typename Caller, typename Resolver>
  Launch<Caller, Resolver> operator()(Caller caller, Resolver resolver) const {
    return Launch<Caller, Resolver>(site_, shape_, stream_, caller, resolver);
  }

 private:
  LaunchSite site_;
  BlockShape shape_;
  cudaStream_t stream_;
};

inline LaunchConfig launch(LaunchSite site, dim3 grid, dim3 block, size_t dynamic_smem = 0,
                           cudaStream_t stream = nullptr) {
  return LaunchConfig(site, grid, block, dynamic_smem, stream);
}

}  // namespace cb_emu
