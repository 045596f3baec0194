// spline_maximum: the largest value of each (sample, appearance)'s bias spline over a lattice
// of points spanning the image (the oracle is rasd_kernels/reference/spline_maximum.py), by
// one contraction per axis with the 4-tap cubic B-spline weights of the points: a few hundred
// thousand multiply-adds for a 512^2 image, where the reference's dense basis matrices take
// over ten times that.
#include <algorithm>
#include <limits>
#include <vector>

#include "../common/interp.h"
#include "spline_maximum.h"

namespace rasd {
namespace cpu {

namespace {

// The spline cells of the evaluation points of one axis of `size` voxels: per_spacing (n - 3)
// + 1 points evenly spaced over [0, size - 1].
std::vector<SplineCell> axis_points(int size, int nodes, int per_spacing, float inv_spacing,
                                    float offset) {
  const int count = per_spacing * (nodes - 3) + 1;  // >= 2: the op asks n >= 4
  std::vector<SplineCell> cells(static_cast<size_t>(count));
  for (int p = 0; p < count; ++p) {
    const double pos = double(p) * (size - 1) / (count - 1);
    cells[size_t(p)] = spline_cell(float(pos), inv_spacing, offset);
  }
  return cells;
}

// out[p][r] = sum_t w_t(p) in[node_t(p)][r]: the leading axis (n nodes) of in [n][rest]
// contracted onto the points.
RASD_CPU_CLONES
void contract_leading(const float* in, int n, size_t rest, const SplineCell* cells,
                      size_t count, float* RASD_RESTRICT out) {
  for (size_t p = 0; p < count; ++p) {
    const SplineCell& c = cells[p];
    const float* r0 = in + size_t(spline_node(c, 0, n)) * rest;
    const float* r1 = in + size_t(spline_node(c, 1, n)) * rest;
    const float* r2 = in + size_t(spline_node(c, 2, n)) * rest;
    const float* r3 = in + size_t(spline_node(c, 3, n)) * rest;
    float* o = out + p * rest;
#pragma omp simd
    for (size_t r = 0; r < rest; ++r)
      o[r] = c.w[0] * r0[r] + c.w[1] * r1[r] + c.w[2] * r2[r] + c.w[3] * r3[r];
  }
}

// [rows][cols] -> [cols][rows].
void transpose(const float* in, size_t rows, size_t cols, float* RASD_RESTRICT out) {
  for (size_t i = 0; i < rows; ++i)
    for (size_t j = 0; j < cols; ++j) out[j * rows + i] = in[i * cols + j];
}

// The axes' evaluation points of one lattice.
struct AxisPoints {
  std::vector<SplineCell> cells[3];  // along D (3D only), H, W
  AxisPoints(const Extent& ext, const std::vector<int>& nodes, const float* scalars,
             int per_spacing) {
    const int d = ext.d;
    const int sizes[3] = {ext.D, ext.H, ext.W};
    for (int axis = 0; axis < d; ++axis) {
      cells[axis + 3 - d] =
          axis_points(sizes[axis + 3 - d], nodes[size_t(axis)], per_spacing,
                      float(1.0 / double(scalars[axis])), scalars[d + axis]);
    }
  }
};

// Scratch of one plane's reduction (below): [nH][nW] for the plane of a 3D lattice, then
// [pH][nW] twice and [pH] (p: evaluation points of an axis, n: nodes).
struct PlaneScratch {
  float *plane, *a, *b, *values;
  static size_t floats(int ny, int nx, size_t py) {
    return size_t(ny) * nx + 2 * py * size_t(nx) + py;
  }
  PlaneScratch(float* base, int ny, int nx, size_t py)
      : plane(base), a(plane + size_t(ny) * nx), b(a + py * size_t(nx)), values(b + py * nx) {}
};

// lo / hi over the points of a plane [ny][nx] of the lattice: H contracted onto its points
// ([pH][nW]), moved last ([nW][pH]), then W contracted point by point, never stored whole.
void plane_min_max(const float* plane, int ny, int nx, const AxisPoints& pts,
                   const PlaneScratch& s, float& lo, float& hi) {
  const std::vector<SplineCell>& ch = pts.cells[1];
  const std::vector<SplineCell>& cw = pts.cells[2];
  contract_leading(plane, ny, size_t(nx), ch.data(), ch.size(), s.a);
  transpose(s.a, ch.size(), size_t(nx), s.b);
  for (size_t p = 0; p < cw.size(); ++p) {
    contract_leading(s.b, nx, ch.size(), &cw[p], 1, s.values);
    min_max(s.values, int64_t(ch.size()), lo, hi);
  }
}

// The maximum of one lattice [nodes...] over its evaluation points, or a quarter of the
// largest magnitude if that is larger (a field negative everywhere keeps its sign when
// divided by it). A 3D lattice is contracted along D one point at a time, each giving a
// plane [nH][nW]: the scratch is a few planes, whatever the number of points (a dense
// contraction would hold [pD][pH][nW]: gigabytes for a 256^3 image at FWHM 1). Every value
// is the same sum in the same order as the dense contraction's.
float one_maximum(const float* coef, const Extent& ext, const std::vector<int>& nodes,
                  const float* scalars, int per_spacing, float* scratch) {
  const AxisPoints pts(ext, nodes, scalars, per_spacing);
  const int ny = nodes[size_t(ext.d - 2)], nx = nodes[size_t(ext.d - 1)];
  const PlaneScratch s(scratch, ny, nx, pts.cells[1].size());
  float lo = std::numeric_limits<float>::infinity(), hi = -lo;
  if (ext.d == 2) {
    plane_min_max(coef, ny, nx, pts, s, lo, hi);
  } else {
    const std::vector<SplineCell>& cd = pts.cells[0];
    for (size_t p = 0; p < cd.size(); ++p) {
      contract_leading(coef, nodes[0], size_t(ny) * nx, &cd[p], 1, s.plane);
      plane_min_max(s.plane, ny, nx, pts, s, lo, hi);
    }
  }
  return std::max(std::max(hi, 0.25f * std::max(hi, -lo)), 1e-12f);
}

// Scratch floats of one lattice's reduction.
size_t scratch_floats(const std::vector<int>& nodes, int per_spacing) {
  const size_t d = nodes.size();
  const int ny = nodes[d - 2], nx = nodes[d - 1];
  return PlaneScratch::floats(ny, nx, size_t(per_spacing) * size_t(ny - 3) + 1);
}

}  // namespace

void spline_maximum(const float* coef, const float* scalars, int64_t count, int scalar_stride,
                    const Extent& ext, const std::vector<int>& nodes, int per_spacing,
                    float* out) {
  int64_t per_lattice = 1;
  for (int n : nodes) per_lattice *= n;
  parallel_for(count, scratch_floats(nodes, per_spacing),
               [&](int64_t i, float* scratch) {
    out[i] = one_maximum(coef + i * per_lattice, ext, nodes, scalars + i * scalar_stride,
                         per_spacing, scratch);
  });
}

}  // namespace cpu
}  // namespace rasd
