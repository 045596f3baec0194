// gmm_shapes' AVX-512 kernel: the plan of the field scales (FieldPlan, gmm_shapes_avx512.h),
// built once per call. Where every union node lies on a lattice of at most 31 units per axis
// and there are at most 16 of them (UnionAxis::build), the sum of the scales is multilinear
// on each cell of the union and is tabulated, for every (sample, label), as the polynomial
// coefficients of each cell (tabulate, in double); a voxel of the row kernel then evaluates
// one polynomial instead of one interpolation per scale. Otherwise the plan holds the scales'
// node scales and the row kernel interpolates them one by one.
#include <algorithm>
#include <cmath>
#include <vector>

#include "gmm_shapes_avx512.h"  // last: it includes avx512.h

#if RASD_AVX512_KERNELS
RASD_AVX512_BEGIN

namespace rasd {
namespace cpu {
namespace gmm {
namespace avx512 {

namespace {

// The cell and fraction of position p (voxels) along an axis of N voxels in a grid of n
// nodes (align_corners), in double.
struct GridCell {
  int i = 0;
  double f = 0.0;
  GridCell() = default;
  GridCell(double p, int n, int N) {
    const double t = p * (n - 1) / (N - 1);
    i = std::min(int(t), n - 2);
    f = t - i;
  }
};

// One n^d grid at a point given by its cells along D, H, W, multilinear in double.
double grid_at(const float* g, int n, int d, const GridCell c[3]) {
  double v = 0.0;
  for (int corner = 0; corner < (1 << d); ++corner) {
    double w = 1.0;
    int64_t idx = 0;
    for (int a = 3 - d, bit = d - 1; a < 3; ++a, --bit) {
      const int up = (corner >> bit) & 1;
      w *= up ? c[a].f : 1.0 - c[a].f;
      idx = idx * n + c[a].i + up;
    }
    v += w * g[idx];
  }
  return v;
}

}  // namespace

FieldPlan::FieldPlan(const Problem& pb, int64_t batch) {
  const Extent& e = pb.ext;
  for (int s = 0; s < pb.fg.count; ++s) {
    const int n = pb.fg.nodes[s];
    scale[s][0] = e.d == 3 ? node_scale(n, e.D) : 0.0f;
    scale[s][1] = node_scale(n, e.H);
    scale[s][2] = node_scale(n, e.W);
  }
  merged = axis[1].build(pb.fg, e.H) && axis[2].build(pb.fg, e.W) &&
           (e.d == 2 || axis[0].build(pb.fg, e.D));
  const int sizes[3] = {e.D, e.H, e.W};
  for (int a = 0; a < 3; ++a) {
    per_voxel[a] = merged && (a > 0 || e.d == 3) ? axis[a].unit_scale : 1.0f;
    last[a] = merged && (a > 0 || e.d == 3) ? float(axis[a].units) : float(sizes[a] - 1);
  }
  if (!merged) return;
  cells = axis[2].count - 1;
  per_label = int64_t(e.d == 3 ? cells : 1) * cells * (1 << e.d) * 16;
  coef.assign(size_t(batch * pb.K * per_label), 0.0f);
  nodes_per_label = e.d == 2 ? int64_t(cells + 1) * (cells + 1) : 0;
  node_value.assign(size_t(batch * pb.K * nodes_per_label), 0.0f);
  score_slack.assign(size_t(batch * pb.K), 0.0f);
  parallel_for(batch * pb.K, 0, [&](int64_t bk, float*) {
    tabulate(pb, bk, coef.data() + bk * per_label, node_value.data() + bk * nodes_per_label,
             score_slack[size_t(bk)]);
  });
}

// The merged field of label bk in every cell, from its values at the union nodes (both in
// double): at offsets (fx, fy, fz) lattice units from the cell's first corner it is c0 +
// c1 fx + c2 fy + c3 fz + c4 fx fy + c5 fx fz + c6 fy fz + c7 fx fy fz; in 2D c0 + c1 fx +
// c2 fy + c3 fx fy (offsets in lattice units, the unit the row kernel's positions come in,
// rather than fractions of the cell spare a multiply per axis).
void FieldPlan::tabulate(const Problem& pb, int64_t bk, float* out, float* node_out,
                          float& slack) const {
  const float* fields = pb.fields + bk * pb.fg.total;
  const int d = pb.ext.d, C = cells, U = C + 1, uz_count = d == 3 ? U : 1;
  const int sizes[3] = {pb.ext.D, pb.ext.H, pb.ext.W};
  // Every union node's cell in every scale, per axis (the same for all nodes of a line).
  std::vector<GridCell> cell(size_t(3) * pb.fg.count * U);
  auto cell_of = [&](int a, int s, int u) -> GridCell& {
    return cell[(size_t(a) * pb.fg.count + s) * U + u];
  };
  for (int a = 3 - d; a < 3; ++a)
    for (int s = 0; s < pb.fg.count; ++s)
      for (int u = 0; u < U; ++u)
        cell_of(a, s, u) = GridCell(axis[a].pos[u], pb.fg.nodes[s], sizes[a]);
  std::vector<double> node(size_t(uz_count) * U * U);
  for (int uz = 0; uz < uz_count; ++uz)
    for (int uy = 0; uy < U; ++uy)
      for (int ux = 0; ux < U; ++ux) {
        double v = 0.0;
        for (int s = 0; s < pb.fg.count; ++s) {
          const GridCell c[3] = {d == 3 ? cell_of(0, s, uz) : GridCell(), cell_of(1, s, uy),
                                 cell_of(2, s, ux)};
          v += grid_at(fields + pb.fg.offset[s], pb.fg.nodes[s], d, c);
        }
        node[(size_t(uz) * U + uy) * U + ux] = v;
      }
  double largest = 0.0;
  for (size_t i = 0; i < node.size(); ++i) {
    if (d == 2) node_out[i] = float(node[i]);
    largest = std::max(largest, std::abs(node[i]));
  }
  // Every term of the float polynomial and every partial sum is at most 16 times the
  // largest node magnitude, and about 20 roundings (coefficients, FMAs) of 2^-24 each
  // reach it: below 2^-15 of the largest node. 2^-10 leaves a factor of 30.
  slack = float(largest * 0x1p-10) + 1e-30f;
  auto at = [&](int z, int y, int x) { return node[(size_t(z) * U + y) * U + x]; };
  const int terms = 1 << d;
  for (int cz = 0; cz < uz_count - (d == 3 ? 1 : 0); ++cz)
    for (int cy = 0; cy < C; ++cy)
      for (int cx = 0; cx < C; ++cx) {
        const double v000 = at(cz, cy, cx), v001 = at(cz, cy, cx + 1);
        const double v010 = at(cz, cy + 1, cx), v011 = at(cz, cy + 1, cx + 1);
        const double lx = axis[2].node_unit[cx + 1] - axis[2].node_unit[cx];
        const double ly = axis[1].node_unit[cy + 1] - axis[1].node_unit[cy];
        const double xy = (v011 - v010 - v001 + v000) / (lx * ly);
        double c[8] = {v000, (v001 - v000) / lx, (v010 - v000) / ly, xy};  // 2D order
        if (d == 3) {
          const double lz = axis[0].node_unit[cz + 1] - axis[0].node_unit[cz];
          const double v100 = at(cz + 1, cy, cx), v101 = at(cz + 1, cy, cx + 1);
          const double v110 = at(cz + 1, cy + 1, cx), v111 = at(cz + 1, cy + 1, cx + 1);
          c[3] = (v100 - v000) / lz;
          c[4] = xy;
          c[5] = (v101 - v100 - v001 + v000) / (lx * lz);
          c[6] = (v110 - v100 - v010 + v000) / (ly * lz);
          c[7] = (v111 - v110 - v101 - v011 + v100 + v010 + v001 - v000) / (lx * ly * lz);
        }
        float* row = out + ((int64_t(cz) * C + cy) * terms) * 16;
        for (int i = 0; i < terms; ++i) row[i * 16 + cx] = float(c[i]);
      }
}

}  // namespace avx512
}  // namespace gmm
}  // namespace cpu
}  // namespace rasd

RASD_AVX512_END
#endif  // RASD_AVX512_KERNELS
