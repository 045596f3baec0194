// spline_maximum: the largest value of each (sample, appearance)'s bias spline over a lattice
// of points spanning the image (the oracle is rasd_kernels/reference/spline_maximum.py), by
// one contraction per axis with the 4-tap cubic B-spline weights of the points: a few hundred
// thousand multiply-adds for a 512^2 image, where the reference's dense basis matrices take
// over ten times that.
#include <algorithm>
#include <limits>
#include <vector>

#include "../common/interp.h"
#include "cpu.h"

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

// The maximum of one lattice [nodes...] over its evaluation points, or a quarter of the
// largest magnitude if that is larger (a field negative everywhere keeps its sign when
// divided by it). Each step contracts the leading axis and moves its points last, so after d
// steps the axes are back in order; the last step is reduced point by point, never stored.
// a, b: scratch of max_input floats each (the largest input of a step).
float one_maximum(const float* coef, const Extent& ext, const std::vector<int>& nodes,
                  const float* scalars, int per_spacing, float* a, float* b) {
  const int d = ext.d;
  const int sizes[3] = {ext.D, ext.H, ext.W};
  size_t total = 1;
  for (int i = 0; i < d; ++i) total *= size_t(nodes[size_t(i)]);
  std::copy(coef, coef + total, a);
  float lo = std::numeric_limits<float>::infinity(), hi = -lo;
  for (int axis = 0; axis < d; ++axis) {
    const int n = nodes[size_t(axis)];
    const std::vector<SplineCell> cells =
        axis_points(sizes[axis + 3 - d], n, per_spacing, float(1.0 / double(scalars[axis])),
                    scalars[d + axis]);
    const size_t rest = total / size_t(n);
    if (axis + 1 < d) {
      contract_leading(a, n, rest, cells.data(), cells.size(), b);
      total = cells.size() * rest;
      transpose(b, cells.size(), rest, a);
      continue;
    }
    for (size_t p = 0; p < cells.size(); ++p) {
      contract_leading(a, n, rest, &cells[p], 1, b);
      min_max(b, int64_t(rest), lo, hi);
    }
  }
  return std::max(std::max(hi, 0.25f * std::max(hi, -lo)), 1e-12f);
}

// The largest input of the d steps: the points of the axes contracted before it times the
// nodes of the others.
size_t max_input(const std::vector<int>& nodes, int per_spacing) {
  size_t largest = 0;
  for (size_t step = 0; step < nodes.size(); ++step) {
    size_t size = 1;
    for (size_t a = 0; a < nodes.size(); ++a)
      size *= a < step ? size_t(per_spacing * (nodes[a] - 3) + 1) : size_t(nodes[a]);
    largest = std::max(largest, size);
  }
  return largest;
}

}  // namespace

void spline_maximum(const float* coef, const float* scalars, int64_t count, int scalar_stride,
                    const Extent& ext, const std::vector<int>& nodes, int per_spacing,
                    float* out) {
  int64_t per_lattice = 1;
  for (int n : nodes) per_lattice *= n;
  const size_t capacity = max_input(nodes, per_spacing);
  begin_call();
  parallel_for(count, 2 * capacity, [&](int64_t i, float* scratch) {
    out[i] = one_maximum(coef + i * per_lattice, ext, nodes, scalars + i * scalar_stride,
                         per_spacing, scratch, scratch + capacity);
  });
}

}  // namespace cpu
}  // namespace rasd
