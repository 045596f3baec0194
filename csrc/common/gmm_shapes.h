// Per-voxel math of gmm_shapes (the oracle is rasd_kernels/reference/gmm_shapes.py): the
// warped position of a voxel and the blob scores. The grid interpolation it needs is in
// interp.h (warp lines: contract_node, line_lerp; fields: sample_grid2/3).
#pragma once

#include "defs.h"
#include "layout.h"

namespace rasd {

// Perlin mode: voxel coordinate p displaced by u, clamped into an axis of `size` voxels.
RASD_HD float warped_coordinate(float p, float u, int size) {
  return clamp_to(p + u, 0.0f, float(size - 1));
}

// Perlin mode, border "zeros" (the published zero padding): the factor of a field read at the
// displaced coordinate p + u along one axis, 1 inside the volume, falling linearly to 0 one
// voxel outside it. A label's score is its field at the clamped position times the product
// of the axes' factors.
RASD_HD float border_factor(float p, float u, int size) {
  const float q = p + u;
  const float outside = max_of(max_of(-q, q - float(size - 1)), 0.0f);
  return max_of(1.0f - outside, 0.0f);
}

// Blobs mode: score = log w - 0.5 v^T A v with v = q - centre, q = p + u the warped position
// (not clamped). p holds one label's parameters (layout::blob_*): centre, the upper triangle
// of A row by row, log w.
RASD_HD float blob_score3(const float* RASD_RESTRICT p, float q0, float q1, float q2) {
  const float* a = p + layout::blob_precision(3);  // a00 a01 a02 a11 a12 a22
  const float v0 = q0 - p[0];
  const float v1 = q1 - p[1];
  const float v2 = q2 - p[2];
  const float quad = a[0] * v0 * v0 + a[3] * v1 * v1 + a[5] * v2 * v2 +
                     2.0f * (a[1] * v0 * v1 + a[2] * v0 * v2 + a[4] * v1 * v2);
  return p[layout::blob_log_weight(3)] - 0.5f * quad;
}

RASD_HD float blob_score2(const float* RASD_RESTRICT p, float q0, float q1) {
  const float* a = p + layout::blob_precision(2);  // a00 a01 a11
  const float v0 = q0 - p[0];
  const float v1 = q1 - p[1];
  return p[layout::blob_log_weight(2)] - 0.5f * (a[0] * v0 * v0 + a[2] * v1 * v1 +
                                                 2.0f * a[1] * v0 * v1);
}

}  // namespace rasd
