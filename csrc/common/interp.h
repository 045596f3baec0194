// Interpolation of coarse grids (the oracle is rasd_kernels/reference/interp.py).
//
// Linear grids: n nodes span an axis of N voxels, node i at i (N - 1) / (n - 1)
// (align_corners=True); positions are clamped into [0, N - 1]. Packed grids store their
// scales one after the other, each n^d floats in C order (D, H, W).
// Cubic B-splines: control point j of an axis sits at (j - 1 - offset) * spacing.
#pragma once

#include "defs.h"
#include "mathf.h"

namespace rasd {

// Cell and fraction of a clamped position on one axis. `scale` is (n - 1) / (N - 1).
struct AxisLerp {
  int i0;   // first node, in [0, n - 2]
  float f;  // weight of node i0 + 1
};

RASD_HD AxisLerp axis_lerp(float pos, float size_minus_1, float scale, int nodes) {
  const float t = clamp_to(pos, 0.0f, size_minus_1) * scale;
  const int i0 = min_of(int(t), nodes - 2);  // t >= 0, so truncation is floor
  return AxisLerp{i0, t - float(i0)};
}

// The same at an integer voxel coordinate p, with the cell found in exact integer arithmetic
// (node positions then give fraction 0, never 0.9999999 of the previous cell).
RASD_HD AxisLerp axis_lerp_voxel(int p, int size, int nodes) {
  if (size <= 1) return AxisLerp{0, 0.0f};
  const int num = p * (nodes - 1);
  int i0 = num / (size - 1);
  int rem = num - i0 * (size - 1);
  if (i0 > nodes - 2) {  // p == size - 1
    i0 = nodes - 2;
    rem = size - 1;
  }
  return AxisLerp{i0, float(rem) / float(size - 1)};
}

RASD_HD float lerp(float a, float b, float f) { return a + f * (b - a); }

// (n - 1) / (N - 1): the cell fraction per voxel of n nodes over N voxels, rounded once from
// double so that every backend gets the same float.
RASD_HD float node_scale(int nodes, int size) {
  return float(double(nodes - 1) / double(size - 1));
}

// A line of nodes (a grid contracted to one axis) at cell i0, fraction f.
RASD_HD float line_lerp(const float* RASD_RESTRICT line, int i0, float f) {
  return lerp(line[i0], line[i0 + 1], f);  // int indices: 32-bit gathers in SIMD loops
}

// Node j along W of an n^DIM grid (C order) contracted over the cell (cz, cy) of a row: a
// row's warp line, from which every voxel of the row needs one lerp (cz unused in 2D).
template <int DIM>
RASD_HD float contract_node(const float* RASD_RESTRICT grid, int n, AxisLerp cz, AxisLerp cy,
                            int j) {
  if (DIM == 3) {
    const float* g00 = grid + (cz.i0 * n + cy.i0) * n + j;
    const float* g10 = g00 + n * n;
    return lerp(lerp(g00[0], g00[n], cy.f), lerp(g10[0], g10[n], cy.f), cz.f);
  }
  const float* g0 = grid + cy.i0 * n + j;
  return lerp(g0[0], g0[n], cy.f);
}

// Trilinear interpolation of one n^3 grid (C order) in cell (iz, iy, ix) at fractions
// (fz, fy, fx). Scalars rather than AxisLerp arguments: GCC does not vectorise the gathers
// below when the cells arrive as structs.
RASD_HD float trilinear(const float* RASD_RESTRICT g, int n, int iz, int iy, int ix, float fz,
                        float fy, float fx) {
  const int i = (iz * n + iy) * n + ix;
  const int sy = n, sz = n * n;
  const float c00 = lerp(g[i], g[i + 1], fx);
  const float c01 = lerp(g[i + sy], g[i + sy + 1], fx);
  const float c10 = lerp(g[i + sz], g[i + sz + 1], fx);
  const float c11 = lerp(g[i + sz + sy], g[i + sz + sy + 1], fx);
  return lerp(lerp(c00, c01, fy), lerp(c10, c11, fy), fz);
}

// Bilinear interpolation of one n^2 grid (C order).
RASD_HD float bilinear(const float* RASD_RESTRICT g, int n, int iy, int ix, float fy,
                       float fx) {
  const int i = iy * n + ix;
  return lerp(lerp(g[i], g[i + 1], fx), lerp(g[i + n], g[i + n + 1], fx), fy);
}

// One n^3 grid at a position already inside the volume (q* in [0, N - 1]); s* are the
// node_scale of each axis.
RASD_HD float sample_grid3(const float* RASD_RESTRICT g, int n, float qz, float qy, float qx,
                           float sz, float sy, float sx) {
  const AxisLerp cz = axis_lerp(qz, 3.0e38f, sz, n);
  const AxisLerp cy = axis_lerp(qy, 3.0e38f, sy, n);
  const AxisLerp cx = axis_lerp(qx, 3.0e38f, sx, n);
  return trilinear(g, n, cz.i0, cy.i0, cx.i0, cz.f, cy.f, cx.f);
}

RASD_HD float sample_grid2(const float* RASD_RESTRICT g, int n, float qy, float qx, float sy,
                           float sx) {
  const AxisLerp cy = axis_lerp(qy, 3.0e38f, sy, n);
  const AxisLerp cx = axis_lerp(qx, 3.0e38f, sx, n);
  return bilinear(g, n, cy.i0, cx.i0, cy.f, cx.f);
}

// Cubic B-spline: the lattice cell of a voxel coordinate and the weights of its four nodes
// i - 1 .. i + 2 (node indices are clamped into the lattice by the caller).
struct SplineCell {
  int i;       // floor(t)
  float w[4];  // weights of nodes i - 1, i, i + 1, i + 2
};

RASD_HD void bspline_weights(float f, float w[4]) {
  const float f2 = f * f, f3 = f2 * f, g = 1.0f - f;
  w[0] = g * g * g * (1.0f / 6.0f);
  w[1] = (3.0f * f3 - 6.0f * f2 + 4.0f) * (1.0f / 6.0f);
  w[2] = (-3.0f * f3 + 3.0f * f2 + 3.0f * f + 1.0f) * (1.0f / 6.0f);
  w[3] = f3 * (1.0f / 6.0f);
}

// t = p / spacing + offset + 1 (control point j sits at (j - 1 - offset) * spacing).
RASD_HD SplineCell spline_cell(float p, float inv_spacing, float offset) {
  const float t = p * inv_spacing + offset + 1.0f;
  const float fl = floor_f(t);
  SplineCell c;
  c.i = int(fl);
  bspline_weights(t - fl, c.w);
  return c;
}

// Index of tap j (0..3) of a cell, clamped into a lattice of n nodes.
RASD_HD int spline_node(const SplineCell& c, int j, int n) {
  return clamp_to(c.i - 1 + j, 0, n - 1);
}

}  // namespace rasd
