// Qualifiers shared by host and device code: every per-voxel function in csrc/common is
// written once and compiled by g++ for the CPU backend and by nvcc for the CUDA backend.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define RASD_HD __host__ __device__ __forceinline__
#else
// Force inlining on the host: the CPU kernels call these helpers inside `omp simd` loops,
// which vectorise only when every call disappears.
#define RASD_HD inline __attribute__((always_inline))
#endif

#define RASD_RESTRICT __restrict__

namespace rasd {

template <typename T>
RASD_HD T min_of(T a, T b) { return a < b ? a : b; }

template <typename T>
RASD_HD T max_of(T a, T b) { return a < b ? b : a; }

template <typename T>
RASD_HD T clamp_to(T x, T lo, T hi) { return min_of(max_of(x, lo), hi); }

}  // namespace rasd
