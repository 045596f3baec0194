// Per-voxel math of the bias field (the oracle is rasd_kernels/reference/bias_field.py), shared
// by the bias_field and appearance ops: psi(p) is the cubic B-spline of a coarse lattice and
// the image is multiplied by exp(psi).
//
// The 4^d taps are separable, so the backends evaluate psi a row (a line of voxels along W) at
// a time: the lattice contracted over the row's D and H cells gives a "bias line" of nx
// values (bias_line_node), then each voxel takes 4 taps of that line (bias_taps).
#pragma once

#include "defs.h"
#include "interp.h"
#include "mathf.h"

namespace rasd {

// The lattice of one (sample, appearance) and its spline placement per axis slot (D, H, W).
struct BiasLattice {
  const float* coef;  // [nz, ny, nx]; nz = 1 in 2D
  int nz, ny, nx;
  float inv_spacing[3], offset[3];
};

// scalars of one (sample, appearance) start with spacing (d) and offset (d); nz is ignored in
// 2D. 1 / spacing is rounded once from double.
RASD_HD BiasLattice bias_lattice(int d, const float* coef, int nz, int ny, int nx,
                                 const float* scalars) {
  BiasLattice b{coef, d == 3 ? nz : 1, ny, nx, {1.0f, 1.0f, 1.0f}, {0.0f, 0.0f, 0.0f}};
  for (int a = 0; a < d; ++a) {
    const int slot = a + 3 - d;
    b.inv_spacing[slot] = float(1.0 / double(scalars[a]));
    b.offset[slot] = scalars[d + a];
  }
  return b;
}

// The spline cell of voxel coordinate p along axis slot 0, 1 or 2 (D, H, W).
RASD_HD SplineCell bias_cell(const BiasLattice& b, int slot, int p) {
  return spline_cell(float(p), b.inv_spacing[slot], b.offset[slot]);
}

// Node j of the bias line of a row whose D and H cells are cz, cy (cz unused in 2D).
template <int DIM>
RASD_HD float bias_line_node(const BiasLattice& b, const SplineCell& cz, const SplineCell& cy,
                             int j) {
  float acc = 0.0f;
  for (int a = 0; a < (DIM == 3 ? 4 : 1); ++a) {
    const float wz = DIM == 3 ? cz.w[a] : 1.0f;
    const int iz = DIM == 3 ? spline_node(cz, a, b.nz) : 0;
    for (int t = 0; t < 4; ++t) {
      const float w = wz * cy.w[t];
      acc += w * b.coef[(iz * b.ny + spline_node(cy, t, b.ny)) * b.nx + j];
    }
  }
  return acc;
}

// psi of a voxel: the weights w0..w3 of its W cell times the bias line at the cell's nodes.
RASD_HD float bias_taps(float w0, float w1, float w2, float w3, float c0, float c1, float c2,
                        float c3) {
  return w0 * c0 + w1 * c1 + w2 * c2 + w3 * c3;
}

// psi at column x of a row, from the row's bias line [nx].
RASD_HD float bias_at(const BiasLattice& b, const float* line, int x) {
  const SplineCell c = bias_cell(b, 2, x);
  return bias_taps(c.w[0], c.w[1], c.w[2], c.w[3], line[spline_node(c, 0, b.nx)],
                   line[spline_node(c, 1, b.nx)], line[spline_node(c, 2, b.nx)],
                   line[spline_node(c, 3, b.nx)]);
}

// A voxel value times the bias exp(psi).
RASD_HD float apply_bias(float x, float psi) { return x * exp_f(psi); }

}  // namespace rasd
