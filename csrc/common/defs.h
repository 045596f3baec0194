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

// Limits of the coarse grids (field and warp scales), the same on every backend and mirrored
// in rasd_kernels/config.py: the CUDA kernels take the node counts of all scales packed in one
// 64-bit argument, 4 bits for the count and 10 per scale.
constexpr int MAX_GRID_SCALES = 6;
constexpr int MAX_GRID_NODES = 1023;
static_assert(4 + 10 * MAX_GRID_SCALES <= 64, "the packed scales fit one 64-bit argument");

template <typename T>
RASD_HD T min_of(T a, T b) { return a < b ? a : b; }

template <typename T>
RASD_HD T max_of(T a, T b) { return a < b ? b : a; }

template <typename T>
RASD_HD T clamp_to(T x, T lo, T hi) { return min_of(max_of(x, lo), hi); }

}  // namespace rasd
