// philox_fill: out[b, e] = Philox uniform / normal element e of (seed, sample_index[b], stream).
//
// One thread per Philox block of four elements (one call gives four words, i.e. four uniforms
// or two Box-Muller pairs); grid-stride loops over blocks (x) and samples (y), so any grid is
// correct and the launcher only picks one that fills the device.
#include "common/philox.h"
#include "cuda/device.cuh"

extern "C" __global__ void rasd_philox_fill(float* __restrict__ out,
                                            const long long* __restrict__ sample_index,
                                            long long batch, long long per_sample,
                                            unsigned long long seed, unsigned int stream,
                                            int normal) {
  using namespace rasd;
  const long long blocks = (per_sample + 3) / 4;
  for (long long b = blockIdx.y; b < batch; b += gridDim.y) {
    const PhiloxStream s = philox_stream(seed, (unsigned long long)sample_index[b], stream);
    float* row = out + b * per_sample;
    for (long long j = (long long)blockIdx.x * blockDim.x + threadIdx.x; j < blocks;
         j += (long long)gridDim.x * blockDim.x) {
      uint32_t w[4];
      philox_block(s, uint32_t(j), w);
      float v[4];
      if (normal) {
        normals_of_words(w, v);
      } else {
        uniforms_of_words(w, v);
      }
      const long long e0 = 4 * j;
      const int n = per_sample - e0 < 4 ? int(per_sample - e0) : 4;
      if (n == 4 && ((unsigned long long)(row + e0) & 15ull) == 0ull) {
        *reinterpret_cast<float4*>(row + e0) = make_float4(v[0], v[1], v[2], v[3]);
      } else {
        for (int i = 0; i < n; ++i) row[e0 + i] = v[i];
      }
    }
  }
}

#ifndef __CUDACC_RTC__
#include "cuda/launch.h"

namespace rasd {
namespace cuda {

KernelList philox_fill_kernels() {
  static const KernelEntry entries[] = {kernel_entry("rasd_philox_fill", &rasd_philox_fill)};
  return KernelList{entries, 1};
}

}  // namespace cuda
}  // namespace rasd
#endif
