// gmm_shapes' AVX-512 kernel: the label bounds.
//
// A voxel's label is the first label with the highest score, so leaving out a label where its
// score is strictly below the highest changes no label. With merged fields a label's score
// has a cheap upper bound on each union interval along H (a few rows) and along W (a few
// columns): there its position lines are bilinear in (column, row), so the positions stay in
// the box of their four corner values, and its field, multilinear on every cell of the union
// nodes, is at most its largest value at the points of that box whose coordinates are box
// ends or nodes inside the box (plus the float slack of the score). Each row first scores a
// seed label on every 16 voxels (the label of the row above at their middle, most often the
// winner; on a unit's first row the label with the highest bound), then each other label
// only on the 16 voxels where its bound reaches their floor,
// the least of their best scores so far (each at most the highest score). On rasd2d that
// leaves 1.7 of the other 15 labels to score per 16 voxels, and the label kernel takes 0.63
// instead of 1.20 ms per image. In 3D (rasd3d: 8 labels, boxes of a few voxels, half a
// million per volume) a version with 3D boxes ran 3.5 times slower: not used there.
//
// Here: the bounds of every label on the rows of one union interval along H, which the row
// kernel (gmm_shapes_avx512.cpp: seed_group, bounded_label_pass, bounded_row) compares with
// its floors. They run once per few rows, in scalar code.
#include <algorithm>
#include <limits>

#include "gmm_shapes_avx512.h"  // last: it includes avx512.h

#if RASD_AVX512_KERNELS
RASD_AVX512_BEGIN

namespace rasd {
namespace cpu {
namespace gmm {
namespace avx512 {

ColumnBlocks::ColumnBlocks(const Problem& pb) {
  const UnionIntervals& u = pb.wu;
  const int W = pb.ext.W;
  for (int x = 0; x < W; ++x)
    dx_last[u.column_j[x]] = std::max(dx_last[u.column_j[x]], u.column_dx[x]);
  for (int x0 = 0; x0 < W; x0 += 16) {
    j_first.push_back(u.column_j[x0]);
    j_last.push_back(u.column_j[std::min(x0 + 15, W - 1)]);
  }
}

namespace {

// The least and greatest position (lookup units) of one (label, axis) on rows dy_first ..
// dy_last of an interval along H, per union interval j along W: bilinear in (dx, dy), so
// extreme at the corners. Widened far beyond float rounding, then clamped like the positions.
void position_box(const float* form, const float* dx_last, int J, float dy_first,
                  float dy_last, float last, float* lo, float* hi) {
  const float* per_row = form + UNION_FLOATS;
  const float margin = 1e-4f * (last + 1.0f);
  for (int j = 0; j < J; ++j) {
    float least = 3.0e38f, greatest = -3.0e38f;
    for (const float dx : {0.0f, dx_last[j]}) {
      const float first = form[j] + form[32 + j] * dx;
      const float change = per_row[j] + per_row[32 + j] * dx;
      for (const float dy : {dy_first, dy_last}) {
        least = std::min(least, first + change * dy);
        greatest = std::max(greatest, first + change * dy);
      }
    }
    lo[j] = std::clamp(least - margin, 0.0f, last);
    hi[j] = std::clamp(greatest + margin, 0.0f, last);
  }
}

// Where a position q (lattice units, in [0, L]) lies on the union nodes of an axis: its cell
// and the fraction of the cell.
struct NodeCell {
  int cell;
  float frac;
  NodeCell(const UnionAxis& u, float q)
      : cell(u.cell_of_unit[std::min(int(q), u.units)]),
        frac((q - float(u.node_unit[cell])) * u.inverse_length[cell]) {}
};

// The largest value over [ylo, yhi] x [xlo, xhi] (lattice units) of a field given at the
// union nodes (U per axis, H before W) and bilinear on each cell: it is taken at a point whose
// coordinates are box ends or nodes inside the box (here, the nodes after the cell of the
// lower end up to the cell of the upper end).
float box_max(const float* nodes, int U, const UnionAxis& ay, const UnionAxis& ax, float ylo,
              float yhi, float xlo, float xhi) {
  const NodeCell x0(ax, xlo), x1(ax, xhi), y0(ay, ylo), y1(ay, yhi);
  // Largest along W at fraction fy of node rows cy, cy + 1.
  auto along_x = [&](int cy, float fy) {
    const float* r0 = nodes + size_t(cy) * U;
    const float* r1 = r0 + U;
    auto at = [&](int i) { return lerp(r0[i], r1[i], fy); };
    float most = std::max(lerp(at(x0.cell), at(x0.cell + 1), x0.frac),
                          lerp(at(x1.cell), at(x1.cell + 1), x1.frac));
    for (int i = x0.cell + 1; i <= x1.cell; ++i) most = std::max(most, at(i));
    return most;
  };
  float most = std::max(along_x(y0.cell, y0.frac), along_x(y1.cell, y1.frac));
  for (int i = y0.cell + 1; i <= y1.cell; ++i) most = std::max(most, along_x(i, 0.0f));
  return most;
}

}  // namespace

// The bound of every label on every 16 columns for rows dy_first .. dy_last of interval jy
// along H (2D, sample b): the largest box maximum of the W intervals they touch, plus the
// label's float slack. Vectors past the row get -inf (never scored).
void label_bounds(const Problem& pb, const FieldPlan& fp, const ColumnBlocks& cb, int64_t b,
                  int jy, float dy_first, float dy_last, const Scratch& ws) {
  const int J = pb.wu.count, U = fp.cells + 1;
  for (int k = 0; k < pb.K; ++k) {
    float lo[2][32], hi[2][32];
    for (int i = 0; i < 2; ++i)
      position_box(ws.interval_form(k * 2 + i, jy), cb.dx_last, J, dy_first, dy_last,
                   fp.last[1 + i], lo[i], hi[i]);
    const int64_t bk = b * pb.K + k;
    const float* nodes = fp.node_value.data() + bk * fp.nodes_per_label;
    float interval_max[32];
    for (int j = 0; j < J; ++j)
      interval_max[j] = box_max(nodes, U, fp.axis[1], fp.axis[2], lo[0][j], hi[0][j], lo[1][j],
                                hi[1][j]);
    float* out = ws.label_bound(k);
    const int vectors = int(cb.j_first.size());
    for (int v = 0; v < vectors; ++v) {
      float most = interval_max[cb.j_first[v]];
      for (int j = cb.j_first[v] + 1; j <= cb.j_last[v]; ++j) most = std::max(most, interval_max[j]);
      out[v] = most + fp.score_slack[size_t(bk)];
    }
    for (int64_t v = vectors; v < ws.vectors; ++v) out[v] = -std::numeric_limits<float>::infinity();
  }
}

}  // namespace avx512
}  // namespace gmm
}  // namespace cpu
}  // namespace rasd

RASD_AVX512_END
#endif  // RASD_AVX512_KERNELS
