// gmm_shapes' perlin mode hand-vectorised for AVX-512: what the kernel's files share.
//
//  - gmm_shapes_avx512.cpp: the kernel (its header comment tells how it works): the warp
//    position lines of a unit of rows, then the row kernels, label by label;
//  - gmm_field_lookup_avx512.h: a label's field at 16 positions, for the row kernels;
//  - gmm_field_plan_avx512.cpp: the plan of the field scales (FieldPlan, below), built once
//    per call: their sum tabulated per cell of the union of their nodes, or the scales one by
//    one;
//  - gmm_label_bounds_avx512.cpp: in 2D, an upper bound of each label's score per 16 columns,
//    so that the row kernel skips labels that cannot win.
// Here: their constants, small vector helpers, the union of the field nodes along an axis,
// the field plan, the scratch of one thread and the label bounds' entry points.
//
// Include this header after every other one (it includes avx512.h, which must come last).
// Everything here is compiled for AVX-512 and only used when the CPU has it; the shared types
// live in namespace gmm::avx512, the vector helpers in an unnamed namespace (a copy in each
// file, no symbol that the linker could pick for code that runs without AVX-512).
#pragma once

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <vector>

#include "gmm_shapes.h"
#include "avx512.h"  // last: see its header comment

#if RASD_AVX512_KERNELS
RASD_AVX512_BEGIN

namespace rasd {
namespace cpu {
namespace gmm {
namespace avx512 {

constexpr int LINE = 32;          // floats of a warp node row (two registers)
constexpr int UNION_FLOATS = 64;  // alpha, beta of <= 32 union intervals (four registers)
constexpr int MAX_FIELD_N = 16;   // two field rows of n nodes fit in two registers
constexpr int ROWS_PER_UNIT = 128;  // rows of one (sample, slice) that share their warp planes
constexpr int MAX_LATTICE = 31;    // lattice units per axis of a merged field (two registers)

namespace {

inline __m512 lookup(__m512 lo, __m512 hi, __m512i idx) {
  return _mm512_permutex2var_ps(lo, idx, hi);
}

inline __m512 vlerp(__m512 a, __m512 b, __m512 f) {
  return _mm512_fmadd_ps(f, _mm512_sub_ps(b, a), a);
}

inline __m512 vclamp(__m512 v, float hi) {
  return _mm512_min_ps(_mm512_max_ps(v, _mm512_setzero_ps()), _mm512_set1_ps(hi));
}

// The first n <= 32 floats at p in two registers, zeros past n (never reads past p + n).
inline void load_short(const float* p, int n, __m512& lo, __m512& hi) {
  lo = _mm512_maskz_loadu_ps(low_lanes(n), p);
  hi = n > 16 ? _mm512_maskz_loadu_ps(low_lanes(n - 16), p + 16) : _mm512_setzero_ps();
}

}  // namespace

// The union of the field scales' nodes along one axis of N voxels. Node i of a scale of n
// nodes sits at lattice unit i L / (n - 1), L = lcm of the n_s - 1, so each unit interval
// [u, u + 1) lies in one cell: cell_of_unit[u] and start_of_unit[u] (the cell's first node,
// in lattice units) are all a position q in lattice units needs, from u = trunc(q). Built when
// L <= 31 and the union has at most 16 nodes.
struct UnionAxis {
  int count = 0;            // U nodes
  int units = 0;            // L
  float unit_scale = 0.0f;  // L / (N - 1): lattice units per voxel
  alignas(64) int cell_of_unit[32] = {};  // for u <= L (the last cell at u = L)
  alignas(64) float start_of_unit[32] = {};
  int node_unit[16] = {};   // node positions, in lattice units
  double pos[16] = {};      // node positions, in voxels
  float inverse_length[16] = {};  // 1 / (node_unit[c + 1] - node_unit[c]) of each cell c

  bool build(const Grids& g, int N) {
    int L = 1;
    for (int s = 0; s < g.count; ++s) {
      L = std::lcm(L, g.nodes[s] - 1);
      if (L > MAX_LATTICE) return false;
    }
    bool node_at[MAX_LATTICE + 1] = {};
    node_at[0] = node_at[L] = true;
    for (int s = 0; s < g.count; ++s)
      for (int i = 1; i < g.nodes[s] - 1; ++i) node_at[i * (L / (g.nodes[s] - 1))] = true;
    count = int(std::count(node_at, node_at + L + 1, true));
    if (count > 16 || N < 2) return false;
    units = L;
    unit_scale = float(double(L) / double(N - 1));
    int c = -1;
    for (int u = 0; u <= L; ++u) {
      if (node_at[u]) {
        node_unit[++c] = u;
        pos[c] = double(u) * (N - 1) / L;
      }
      cell_of_unit[u] = std::min(c, count - 2);
    }
    for (int u = 0; u <= L; ++u) start_of_unit[u] = float(node_unit[cell_of_unit[u]]);
    for (int i = 0; i + 1 < count; ++i) inverse_length[i] = 1.0f / float(node_unit[i + 1] - node_unit[i]);
    return true;
  }
};

// The field scales of one problem: either their sum on the union of their nodes, as
// polynomial coefficients per cell (one table per (sample, label)), or the scales one by one.
struct FieldPlan {
  bool merged = false;
  UnionAxis axis[3];  // D, H, W (D unused in 2D)
  int cells = 0;      // C = U - 1 cells per axis of the merged grid
  // Merged: [B][K][C_D][C][2^d][16]: for every cell row (z, y), coefficient i of the C cells
  // along x in one register (see tabulate).
  std::vector<float> coef;
  int64_t per_label = 0;
  // For the label bounds (merged, 2D only): the field at every union node ([B][K][U^2], H
  // before W) and how far the row kernel's float score may stray from the bilinear
  // interpolant of those nodes (per (sample, label): coefficient rounding and FMA rounding,
  // with a wide margin).
  std::vector<float> node_value;
  std::vector<float> score_slack;
  int64_t nodes_per_label = 0;
  float scale[MAX_SCALES][3] = {};  // per-scale node_scale of D, H, W
  // The unit of the row kernel's positions along D, H, W: lattice units when merged (saves
  // the conversion per voxel and label), voxels otherwise; `per_voxel` of that unit and the
  // last position (clamped to).
  float per_voxel[3] = {1.0f, 1.0f, 1.0f};
  float last[3] = {};

  // The plan of pb's field scales; when merged, the table of every (sample, label) of the
  // batch (gmm_field_plan_avx512.cpp).
  FieldPlan(const Problem& pb, int64_t batch);

  // The coefficient table of label bk (gmm_field_plan_avx512.cpp).
  void tabulate(const Problem& pb, int64_t bk, float* out, float* node_out, float& slack) const;
};

// Scratch of one thread, for one unit of rows at slice z:
//  - planes: the union form along W of every warp node row along H ([K][DIM][node rows][64]);
//  - rows: their sum over the scales in union form along H as well: per union interval jy of
//    H, the form at its first row and its change per row ([K][DIM][J_H][2][64]), so that a row
//    of voxels needs one FMA per register for its warp lines;
//  - lines: the position lines of the current interval jy expanded to every column
//    ([K][DIM][2][W padded]: at its first row, change per row), so that a row's positions
//    are one FMA per 16 voxels and axis, with no lookups; reaches: per (label, axis) whether
//    those positions may leave [0, last] on the interval's rows (1) or not (0);
//  - plane: one grid plane lerped along D; best: the best score so far along a row;
//  - label bounds (gmm_label_bounds_avx512.cpp): bound ([K][vectors padded]: per label and
//    16 columns, an upper bound of the label's score on the current interval's rows).
struct Scratch {
  int node_rows = 0;  // sum of the warp scales' nodes
  int row_offset[MAX_SCALES] = {};
  int intervals = 0;  // J_H
  int64_t width = 0;  // W rounded up to 16
  int64_t vectors = 0;  // width / 16, rounded up to 32
  float* planes;
  float* rows;
  float* lines;
  float* reaches;
  float* plane;
  float* best;  // the row's best score so far (width floats)
  float* bound;
  float* seeds;  // the row's seed label per 16 voxels (bytes)

  static int64_t padded_width(const Problem& pb) { return (int64_t(pb.ext.W) + 15) / 16 * 16; }
  static int64_t padded_vectors(const Problem& pb) { return (padded_width(pb) / 16 + 31) / 32 * 32; }
  static size_t floats(const Problem& pb) {
    int node_rows = 0;
    for (int s = 0; s < pb.wg.count; ++s) node_rows += pb.wg.nodes[s];
    const size_t per_kc = size_t(pb.K) * pb.ext.d;
    return per_kc * ((node_rows + 2 * pb.wuy.count) * UNION_FLOATS + 2 * padded_width(pb) + 1) +
           size_t(pb.wg.max_nodes) * pb.wg.max_nodes + padded_width(pb) +
           size_t(pb.K) * padded_vectors(pb) + padded_vectors(pb) / 4;
  }
  Scratch(const Problem& pb, float* buf)
      : intervals(pb.wuy.count), width(padded_width(pb)), vectors(padded_vectors(pb)) {
    for (int s = 0; s < pb.wg.count; ++s) {
      row_offset[s] = node_rows;
      node_rows += pb.wg.nodes[s];
    }
    const size_t per_kc = size_t(pb.K) * pb.ext.d;
    planes = buf;
    rows = planes + per_kc * node_rows * UNION_FLOATS;
    lines = rows + per_kc * 2 * intervals * UNION_FLOATS;
    reaches = lines + per_kc * 2 * width;
    plane = reaches + per_kc;
    best = plane + size_t(pb.wg.max_nodes) * pb.wg.max_nodes;
    bound = best + width;
    seeds = bound + size_t(pb.K) * vectors;
  }
  float* label_bound(int k) const { return bound + size_t(k) * vectors; }
  float* node_row(int kc, int s, int yi) const {
    return planes + (size_t(kc) * node_rows + row_offset[s] + yi) * UNION_FLOATS;
  }
  float* interval_form(int kc, int jy) const {  // [2][64]: form at the first row, per row
    return rows + (size_t(kc) * intervals + jy) * 2 * UNION_FLOATS;
  }
  float* line(int kc) const { return lines + size_t(kc) * 2 * width; }  // [2][width]
};

// ---- label bounds (gmm_label_bounds_avx512.cpp) -------------------------------------------

// What the bounds need of the union intervals along W: the offset of each interval's last
// column and the intervals that each 16 columns touch.
struct ColumnBlocks {
  float dx_last[32] = {};
  std::vector<int> j_first, j_last;  // per 16 columns
  explicit ColumnBlocks(const Problem& pb);
};

// The bound of every label on every 16 columns for rows dy_first .. dy_last of interval jy
// along H (2D, sample b), into ws.label_bound(k).
void label_bounds(const Problem& pb, const FieldPlan& fp, const ColumnBlocks& cb, int64_t b,
                  int jy, float dy_first, float dy_last, const Scratch& ws);

}  // namespace avx512
}  // namespace gmm
}  // namespace cpu
}  // namespace rasd

RASD_AVX512_END
#endif  // RASD_AVX512_KERNELS
