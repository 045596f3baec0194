// gmm_shapes: coarse grids -> argmax label map (gmm_shapes.cpp; the AVX-512 kernel of the
// perlin mode in gmm_shapes_avx512.cpp and the files its header lists), and the internals
// shared by the portable kernel and the AVX-512 one.
#pragma once

#include <stdexcept>
#include <vector>

#include "../common/interp.h"
#include "cpu.h"

namespace rasd {
namespace cpu {

void gmm_shapes(uint8_t* labels, const float* fields, const float* warps, int64_t batch,
                int num_labels, const Extent& ext, const std::vector<int>& field_nodes,
                const std::vector<int>& warp_nodes, bool blobs, bool zeros);

namespace gmm {

constexpr int MAX_SCALES = MAX_GRID_SCALES;  // csrc/common/defs.h

// The scales of one packed grid set: scale s holds nodes[s]^d floats from offset[s].
struct Grids {
  int count = 0;
  int nodes[MAX_SCALES] = {};
  int64_t offset[MAX_SCALES] = {};
  int64_t total = 0;
  int max_nodes = 0;

  Grids(const std::vector<int>& n, int d) {
    if (n.size() > size_t(MAX_SCALES)) throw std::invalid_argument("too many grid scales");
    for (int v : n) {
      if (v < 2) throw std::invalid_argument("grid scales need >= 2 nodes");
      nodes[count] = v;
      offset[count] = total;
      total += d == 3 ? int64_t(v) * v * v : int64_t(v) * v;
      max_nodes = max_of(max_nodes, v);
      ++count;
    }
  }
};

// Exact cells of every scale at every integer coordinate of one axis: [scale][coordinate].
// Rows are padded to a multiple of 16 entries (copies of the last) so that SIMD code may read
// whole vectors past the end of an axis.
struct AxisTable {
  int size = 1, stride = 16;
  std::vector<int> i0;
  std::vector<float> f;

  AxisTable(int axis_size, const Grids& g) : size(axis_size), stride((axis_size + 15) / 16 * 16) {
    i0.resize(size_t(g.count) * stride);
    f.resize(size_t(g.count) * stride);
    for (int s = 0; s < g.count; ++s)
      for (int p = 0; p < stride; ++p) {
        const AxisLerp c = axis_lerp_voxel(min_of(p, size - 1), size, g.nodes[s]);
        i0[size_t(s) * stride + p] = c.i0;
        f[size_t(s) * stride + p] = c.f;
      }
  }
  AxisLerp at(int s, int p) const {
    return AxisLerp{i0[size_t(s) * stride + p], f[size_t(s) * stride + p]};
  }
  const int* i0_row(int s) const { return &i0[size_t(s) * stride]; }
  const float* f_row(int s) const { return &f[size_t(s) * stride]; }
};

// The warp scales along W share one piecewise-linear structure: between consecutive node
// positions of *any* scale (a "union interval") every scale is linear in x, so a whole warp
// line is u(x) = alpha_j + beta_j (x - start_j) with j the union interval of column x.
struct UnionIntervals {
  int count = 0;              // J
  int stride = 32;            // max(J, 32): entries per scale below (padded with the last)
  std::vector<int> segment;   // [S][stride]: cell of scale s on interval j
  std::vector<float> frac0;   // [S][stride]: fraction of that cell at the interval start
  std::vector<float> slope;   // [S]: (m_s - 1) / (W - 1), cell fraction per voxel
  std::vector<float> start;   // [stride]: first column of interval j (padded with the last)
  std::vector<int> column_j;  // [W padded to 16]: interval of each column
  std::vector<float> column_dx;  // [W padded]: x - start of its interval

  UnionIntervals(int W, const Grids& g);
};

struct Problem {
  Extent ext;
  int K;
  const float* fields;
  const float* warps;
  Grids fg, wg;
  AxisTable wz, wy, wx;  // warp cells along D, H, W
  UnionIntervals wu;     // warp union intervals along W
  UnionIntervals wuy;    // the same along H (its columns are rows)
  bool zeros;            // border "zeros": fields fall to 0 outside the volume
};

// Contract one warp grid of scale s over the row's (z, y) cell: line[j] for j < n.
template <int DIM>
void contract(const float* RASD_RESTRICT grid, int n, AxisLerp cz, AxisLerp cy,
              float* RASD_RESTRICT line) {
#pragma omp simd
  for (int j = 0; j < n; ++j) line[j] = contract_node<DIM>(grid, n, cz, cy, j);
}

// The AVX-512 kernel of the perlin mode, for CPUs and grid sizes that avx512_available and
// avx512_supports accept (elsewhere the portable kernel runs). Defined in
// gmm_shapes_avx512.cpp.
bool avx512_available();
bool avx512_supports(const Problem& pb);
void perlin_avx512(const Problem& pb, int64_t batch, uint8_t* labels);

}  // namespace gmm
}  // namespace cpu
}  // namespace rasd
