// Host side of the CUDA backend: every csrc/cuda/<op>.cu lists its kernels by name, and the
// Python layer (rasd_kernels/backends/cuda.py) launches them through one generic entry point
// (module.cpp, or the CPU emulation of the tests) with a packed argument buffer. The launch
// geometry therefore lives in one place, Python, for the compiled module and for the CuPy
// fallback alike.
#pragma once

#ifndef __CUDACC_RTC__

#include <cstddef>
#include <utility>

namespace rasd {
namespace cuda {

// Calls a kernel with arguments unpacked from an array of pointers (emulation only; a real
// launch goes through cudaLaunchKernel, which does the same on the device).
using Trampoline = void (*)(const void* kernel, void** args);

struct KernelEntry {
  const char* name;    // the extern "C" name, as NVRTC sees it too
  const void* kernel;  // the __global__ function (its host stub under nvcc)
  Trampoline call;     // null outside the emulation
};

struct KernelList {
  const KernelEntry* entries;
  int count;
};

template <typename... A, size_t... I>
void call_unpacked(void (*f)(A...), void** args, std::index_sequence<I...>) {
  f(*static_cast<A*>(args[I])...);
}

template <typename... A>
void trampoline(const void* f, void** args) {
  call_unpacked(reinterpret_cast<void (*)(A...)>(const_cast<void*>(f)), args,
                std::index_sequence_for<A...>{});
}

template <typename... A>
KernelEntry kernel_entry(const char* name, void (*f)(A...)) {
#ifdef RASD_CUDA_EMULATION
  return KernelEntry{name, reinterpret_cast<const void*>(f), &trampoline<A...>};
#else
  return KernelEntry{name, reinterpret_cast<const void*>(f), nullptr};
#endif
}

KernelList philox_fill_kernels();
KernelList gmm_shapes_kernels();
KernelList bias_field_kernels();
KernelList appearance_kernels();

}  // namespace cuda
}  // namespace rasd

#endif  // __CUDACC_RTC__
