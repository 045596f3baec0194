// CPU emulation of the CUDA execution model, for testing csrc/cuda/*.cu on machines without
// a GPU (tests/test_cuda_backend.py builds it with g++ and drives it through the same
// launcher interface as rasd_kernels._cuda).
//
// Force-included before each kernel file (g++ -include). Every thread of a block is a
// std::thread; __syncthreads() is a barrier of the block's threads (a stalled barrier, i.e. a
// __syncthreads() not reached by the whole block, aborts with a message instead of hanging);
// blocks run one after the other, so __shared__ variables become function statics. Dynamic
// shared memory is filled with NaN before each block (reading a value no thread wrote shows
// up in the results) and followed by a guard checked after each block (an overflow is
// reported). Atomics are real atomics. Not emulated: warp shuffles / votes (the kernels use
// none), memory ordering beyond what the barrier gives.
#pragma once

#define RASD_CUDA_EMULATION 1

#include <cmath>
#include <cstdint>
#include <cstring>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static

struct dim3 {
  unsigned x = 1, y = 1, z = 1;
};

struct float4 {
  float x, y, z, w;
};

inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }

namespace rasd_emu {
extern thread_local dim3 thread_index;
extern thread_local dim3 block_index;
extern dim3 block_dim, grid_dim;
void sync_threads();
float* dynamic_shared();

template <typename T, typename Pick>
T atomic_update(T* addr, T value, Pick pick) {
  T old = __atomic_load_n(addr, __ATOMIC_SEQ_CST);
  while (!__atomic_compare_exchange_n(addr, &old, pick(old, value), false, __ATOMIC_SEQ_CST,
                                      __ATOMIC_SEQ_CST)) {
  }
  return old;
}
}  // namespace rasd_emu

#define threadIdx (rasd_emu::thread_index)
#define blockIdx (rasd_emu::block_index)
#define blockDim (rasd_emu::block_dim)
#define gridDim (rasd_emu::grid_dim)
#define __syncthreads() rasd_emu::sync_threads()
#define RASD_DYNAMIC_SHARED(name) float* name = rasd_emu::dynamic_shared()

template <typename T>
inline T atomicMax(T* addr, T v) {
  return rasd_emu::atomic_update(addr, v, [](T a, T b) { return a < b ? b : a; });
}
template <typename T>
inline T atomicMin(T* addr, T v) {
  return rasd_emu::atomic_update(addr, v, [](T a, T b) { return b < a ? b : a; });
}
