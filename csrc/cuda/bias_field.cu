// bias_field: image *= exp(psi), psi the cubic B-spline of the coarse lattice coef.
//
// A block owns `rows_per_block` consecutive rows (lines along W) of one (sample, appearance):
// it contracts the lattice over each row's (z, y) cell into a bias line of nx coefficients in
// shared memory, then every voxel takes 4 taps of its line (the per-voxel math of
// csrc/common/bias_field.h, which the CPU backend runs too). Memory-bound: one read and one
// write per voxel.
#include "common/bias_field.h"
#include "cuda/device.cuh"

namespace rasd {
namespace cuda {

template <int DIM>
__device__ void bias_field(float* image, const float* coef, const float* scalars,
                           long long pairs, int size_z, int size_y, int size_x, int nz, int ny,
                           int nx, int scalar_stride, int rows_per_block) {
  RASD_DYNAMIC_SHARED(lines);  // [rows_per_block][nx]
  const long long rows_total = (long long)(DIM == 3 ? size_z : 1) * size_y;
  const long long voxels = rows_total * size_x;
  const long long lattice = (long long)(DIM == 3 ? nz : 1) * ny * nx;
  const long long tiles = (rows_total + rows_per_block - 1) / rows_per_block;
  for (long long p = blockIdx.y; p < pairs; p += gridDim.y) {
    const BiasLattice lat =
        bias_lattice(DIM, coef + p * lattice, nz, ny, nx, scalars + p * scalar_stride);
    for (long long tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
      const long long row0 = tile * rows_per_block;
      const int rows = int(min_of((long long)rows_per_block, rows_total - row0));
      __syncthreads();  // the previous tile's lines are no longer read
      bias_lines<DIM>(lat, row0, rows, size_y, lines);
      __syncthreads();
      float* x = image + p * voxels + row0 * size_x;
      for (int i = threadIdx.x; i < rows * size_x; i += blockDim.x) {
        const int r = i / size_x, col = i - r * size_x;
        x[i] = apply_bias(x[i], bias_at(lat, lines + r * nx, col));
      }
    }
  }
}

}  // namespace cuda
}  // namespace rasd

// image [pairs, *S], coef [pairs, *nodes], scalars [pairs, scalar_stride] (spacing, offset
// first); 2D passes size_z = nz = 1. Launch: 1D blocks, grid (row tiles, pairs) or fewer
// (grid-stride loops), rows_per_block * nx floats of dynamic shared memory.
#define RASD_BIAS_FIELD(DIM)                                                                  \
  extern "C" __global__ void rasd_bias_field_##DIM##d(                                        \
      float* __restrict__ image, const float* __restrict__ coef,                              \
      const float* __restrict__ scalars, long long pairs, int size_z, int size_y, int size_x, \
      int nz, int ny, int nx, int scalar_stride, int rows_per_block) {                        \
    rasd::cuda::bias_field<DIM>(image, coef, scalars, pairs, size_z, size_y, size_x, nz, ny,  \
                                nx, scalar_stride, rows_per_block);                           \
  }

RASD_BIAS_FIELD(2)
RASD_BIAS_FIELD(3)

#ifndef __CUDACC_RTC__
#include "cuda/launch.h"

namespace rasd {
namespace cuda {

KernelList bias_field_kernels() {
  static const KernelEntry entries[] = {
      kernel_entry("rasd_bias_field_2d", &rasd_bias_field_2d),
      kernel_entry("rasd_bias_field_3d", &rasd_bias_field_3d),
  };
  return KernelList{entries, 2};
}

}  // namespace cuda
}  // namespace rasd
#endif
