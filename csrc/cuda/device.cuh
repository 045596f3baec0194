// Device helpers shared by the CUDA kernels of csrc/cuda/*.cu.
//
// Everything here compiles three ways: with nvcc (the rasd_kernels._cuda module), with NVRTC
// (the CuPy fallback of rasd_kernels/backends/cuda.py, which has no C++ standard library),
// and with g++ under csrc/cuda/emulation/emulate.h (the CPU emulation used by the tests). So:
// no standard headers, no warp shuffles, and block-uniform control flow around every
// __syncthreads().
#pragma once

#include "common/bias_field.h"
#include "common/defs.h"
#include "common/interp.h"
#include "common/mathf.h"

// Dynamic shared memory of a kernel (the emulation supplies its own definition).
#ifndef RASD_DYNAMIC_SHARED
#define RASD_DYNAMIC_SHARED(name) extern __shared__ float name[]
#endif

namespace rasd {
namespace cuda {

// ---- coarse grid scales ---------------------------------------------------------------------

// Up to MAX_SCALES node counts packed in one 64-bit kernel argument: bits 0-3 hold the count,
// then 10 bits per scale (node counts up to MAX_GRID_NODES, defs.h).
// rasd_kernels/backends/cuda.py packs them.
constexpr int MAX_SCALES = MAX_GRID_SCALES;

struct Scales {
  int count;
  int nodes[MAX_SCALES];
  int offset[MAX_SCALES];  // first float of scale s in a packed grid set (sum of n^d before)
  int start[MAX_SCALES];   // first node of scale s in a line holding every scale (sum of n)
  int total;               // floats of one packed grid set
  int line;                // nodes of all scales together
};

__device__ __forceinline__ Scales unpack_scales(unsigned long long packed, int d) {
  Scales s;
  s.count = int(packed & 15ull);
  s.total = 0;
  s.line = 0;
#pragma unroll
  for (int i = 0; i < MAX_SCALES; ++i) {
    const int n = i < s.count ? int((packed >> (4 + 10 * i)) & 1023ull) : 0;
    s.nodes[i] = n;
    s.offset[i] = s.total;
    s.start[i] = s.line;
    s.total += d == 3 ? n * n * n : n * n;
    s.line += n;
  }
  return s;
}

__device__ __forceinline__ float negative_infinity() { return bits_float(0xff800000u); }
__device__ __forceinline__ float positive_infinity() { return bits_float(0x7f800000u); }

// ---- float atomics ------------------------------------------------------------------------

// max into a non-negative float (stats start at 0): non-negative floats order as their bits.
__device__ __forceinline__ void atomic_max_nonnegative(float* addr, float v) {
  atomicMax(reinterpret_cast<int*>(addr), int(float_bits(v)));
}

// Signed min / max: non-negative values order as signed ints, negative ones reversed as
// unsigned ints, and the two ranges never mix up (every negative bit pattern is above every
// non-negative one as unsigned, below as signed). Adding 0 turns -0 into +0.
__device__ __forceinline__ void atomic_max_float(float* addr, float v) {
  const uint32_t bits = float_bits(v + 0.0f);
  if ((bits >> 31) == 0u) {
    atomicMax(reinterpret_cast<int*>(addr), int(bits));
  } else {
    atomicMin(reinterpret_cast<unsigned int*>(addr), bits);
  }
}

__device__ __forceinline__ void atomic_min_float(float* addr, float v) {
  const uint32_t bits = float_bits(v + 0.0f);
  if ((bits >> 31) == 0u) {
    atomicMin(reinterpret_cast<int*>(addr), int(bits));
  } else {
    atomicMax(reinterpret_cast<unsigned int*>(addr), bits);
  }
}

// ---- block reductions ---------------------------------------------------------------------

// Largest blockDim.x supported by the reductions (a power of two).
constexpr int MAX_BLOCK = 256;

// Tree reduction through shared memory (blockDim.x a power of two <= MAX_BLOCK). Every thread
// of the block must call it; the result is valid in thread 0.
__device__ __forceinline__ void block_min_max(float& lo, float& hi) {
  __shared__ float s_lo[MAX_BLOCK];
  __shared__ float s_hi[MAX_BLOCK];
  const int t = threadIdx.x;
  s_lo[t] = lo;
  s_hi[t] = hi;
  __syncthreads();
  for (int half = blockDim.x / 2; half > 0; half /= 2) {
    if (t < half) {
      s_lo[t] = min_of(s_lo[t], s_lo[t + half]);
      s_hi[t] = max_of(s_hi[t], s_hi[t + half]);
    }
    __syncthreads();
  }
  lo = s_lo[0];
  hi = s_hi[0];
  __syncthreads();  // the scratch may be reused right after
}

// ---- rows ---------------------------------------------------------------------------------

// A row is a line of voxels along W at fixed (z, y); 2D images have one slice (z = 0).
struct Row {
  int z, y;
};

__device__ __forceinline__ Row row_of(long long row, int size_y) {
  return Row{int(row / size_y), int(row % size_y)};
}

// ---- the bias spline, a row at a time -------------------------------------------------------

// Bias lines (csrc/common/bias_field.h) lines[r * nx + j] of the rows row0 .. row0 + count - 1;
// the whole block shares the work.
template <int DIM>
__device__ __forceinline__ void bias_lines(const BiasLattice& b, long long row0, int count,
                                           int size_y, float* lines) {
  const int n = count * b.nx;
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    const int r = i / b.nx, j = i - r * b.nx;
    const Row row = row_of(row0 + r, size_y);
    lines[i] = bias_line_node<DIM>(b, bias_cell(b, 0, row.z), bias_cell(b, 1, row.y), j);
  }
}

}  // namespace cuda
}  // namespace rasd
