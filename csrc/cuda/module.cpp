// rasd_kernels._cuda: launches the kernels of csrc/cuda/*.cu by name on the caller's stream.
//
// No torch header: tensors arrive as device addresses (ints), the stream as the integer handle
// torch.cuda.current_stream().cuda_stream, and the kernel arguments as one packed buffer with
// the offset of each argument (rasd_kernels/backends/cuda.py packs them and computes every
// launch geometry, for this module and for the CuPy fallback alike). A launch never
// synchronises and never allocates device memory, so it can be captured in a CUDA graph.
// Importing the module needs no GPU: the CUDA runtime is linked statically and only talks to
// the driver on the first call.
#include <cuda_runtime_api.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <vector>

#include "launch.h"

namespace py = pybind11;
using rasd::cuda::KernelEntry;
using rasd::cuda::KernelList;

namespace {

const std::unordered_map<std::string, const KernelEntry*>& kernels() {
  static const auto table = [] {
    std::unordered_map<std::string, const KernelEntry*> t;
    for (const KernelList& list :
         {rasd::cuda::philox_fill_kernels(), rasd::cuda::gmm_shapes_kernels(),
          rasd::cuda::bias_field_kernels(), rasd::cuda::appearance_kernels()}) {
      for (int i = 0; i < list.count; ++i) t.emplace(list.entries[i].name, &list.entries[i]);
    }
    return t;
  }();
  return table;
}

void check(cudaError_t err, const std::string& what) {
  if (err == cudaSuccess) return;
  cudaGetLastError();  // clear a non-sticky error so that later calls are not blamed
  throw std::runtime_error(what + ": " + cudaGetErrorName(err) + " (" +
                           cudaGetErrorString(err) + ")");
}

// Makes `device` current for the launch and restores the caller's device afterwards.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    check(cudaGetDevice(&previous_), "cudaGetDevice");
    if (previous_ != device) check(cudaSetDevice(device), "cudaSetDevice");
  }
  ~DeviceGuard() { cudaSetDevice(previous_); }

 private:
  int previous_ = 0;
};

using Dim = std::tuple<unsigned, unsigned, unsigned>;

void launch(const std::string& name, const Dim& grid, const Dim& block, size_t shared_bytes,
            uintptr_t stream, int device, const py::bytes& args,
            const std::vector<size_t>& offsets) {
  const auto it = kernels().find(name);
  if (it == kernels().end()) throw std::invalid_argument("no CUDA kernel named " + name);
  // Copy the arguments into 8-byte aligned storage: each offset is aligned to its size.
  const std::string packed = args;
  std::vector<uint64_t> storage((packed.size() + 7) / 8 + 1);
  std::memcpy(storage.data(), packed.data(), packed.size());
  std::vector<void*> pointers;
  pointers.reserve(offsets.size());
  for (size_t off : offsets) {
    if (off >= packed.size()) throw std::invalid_argument("argument offset out of range");
    pointers.push_back(reinterpret_cast<char*>(storage.data()) + off);
  }
  DeviceGuard guard(device);
  const dim3 g(std::get<0>(grid), std::get<1>(grid), std::get<2>(grid));
  const dim3 b(std::get<0>(block), std::get<1>(block), std::get<2>(block));
  check(cudaLaunchKernel(it->second->kernel, g, b, pointers.data(), shared_bytes,
                         reinterpret_cast<cudaStream_t>(stream)),
        "launching " + name);
}

// (number of devices, "" or why there is none); never throws, so that import-time probing
// on a machine without a driver gives a reason rather than an exception.
std::pair<int, std::string> device_count() {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    cudaGetLastError();
    return {0, std::string(cudaGetErrorName(err)) + ": " + cudaGetErrorString(err)};
  }
  return {count, count > 0 ? "" : "cudaGetDeviceCount found no device"};
}

std::vector<std::string> kernel_names() {
  std::vector<std::string> names;
  for (const auto& kv : kernels()) names.push_back(kv.first);
  return names;
}

}  // namespace

PYBIND11_MODULE(_cuda, m) {
  m.doc() = "rasd_kernels CUDA kernels, launched by name on a caller's stream";
  m.def("launch", &launch, py::arg("name"), py::arg("grid"), py::arg("block"),
        py::arg("shared_bytes"), py::arg("stream"), py::arg("device"), py::arg("args"),
        py::arg("offsets"),
        "Launch kernel `name` asynchronously; args packed at offsets (little endian).");
  m.def("device_count", &device_count, "(devices, reason when there is none)");
  m.def("kernel_names", &kernel_names);
}
