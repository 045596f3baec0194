// gmm_shapes, perlin mode, hand-vectorised for AVX-512 (16 voxels of a row per vector).
//
// Why intrinsics: the portable kernel needs per-lane gathers from the tiny coarse grids, and
// compilers emulate those with scalar loads. Here every lookup is a register permute, and the
// work that does not depend on the voxel is hoisted as far out as it goes:
//  - warps: between consecutive node positions of *any* warp scale along W (a union interval)
//    every scale is linear in x, so a warp line is alpha_j + beta_j (x - start_j). Each node
//    row of each grid is turned into that form once per unit of rows (after the lerp along D)
//    and the scales are summed the same way along H; on each union interval along H (a few
//    rows) the lines are expanded to every column, so 16 voxels need one FMA per
//    (label, axis) for their warped positions;
//  - fields: the sum of the field scales is multilinear on each cell of the union of their
//    nodes, so it is tabulated once per (sample, label) as the eight polynomial coefficients
//    of every cell, and a voxel evaluates one polynomial instead of one trilinear
//    interpolation per scale. Every union node lies on a lattice of L + 1 points per axis
//    (L = lcm of n_s - 1), so a position's cell and the cell's start are two register
//    permutes of its lattice unit. The warped positions of 16 neighbouring voxels fall in one
//    or two (D, H) cell rows; for each distinct one, each coefficient of its cells along W is
//    one register and every lane's is a permute (the cells of the next 16 voxels are looked
//    up before these passes, whose loop exit is hard to predict). Field configurations whose
//    lattice or union is too fine for registers interpolate the scales one by one the same
//    way, from their grid rows.
// The kernel is compiled for AVX-512 (avx512.h) and only called when the CPU has it.
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "gmm_shapes.h"
#include "avx512.h"  // last: see its header comment

namespace rasd {
namespace cpu {
namespace gmm {

bool avx512_available() { return RASD_AVX512_KERNELS && avx512_enabled(); }

#if RASD_AVX512_KERNELS
RASD_AVX512_BEGIN

namespace {

constexpr int LINE = 32;          // floats of a warp node row (two registers)
constexpr int UNION_FLOATS = 64;  // alpha, beta of <= 32 union intervals (four registers)
constexpr int MAX_FIELD_N = 16;   // two field rows of n nodes fit in two registers
constexpr int ROWS_PER_UNIT = 128;  // rows of one (sample, slice) that share their warp planes
constexpr int MAX_LATTICE = 31;    // lattice units per axis of a merged field (two registers)

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

// ---- fields ------------------------------------------------------------------------------

// Cell index and fraction along one axis of a uniform field grid (positions already clamped).
inline void uniform_cell(__m512 q, float scale, int nodes, __m512i& i, __m512& f) {
  const __m512 t = _mm512_mul_ps(q, _mm512_set1_ps(scale));
  i = _mm512_min_epi32(_mm512_cvttps_epi32(t), _mm512_set1_epi32(nodes - 2));
  f = _mm512_sub_ps(t, _mm512_cvtepi32_ps(i));
}

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

// Cells of 16 positions on the three axes of a grid, and where in its cell each position
// lies: the fraction of the cell (uniform grids) or the offset in voxels (the merged grid,
// whose iz is premultiplied by its C cells per row).
struct Cells {
  __m512i iz, iy, ix;
  __m512 fz, fy, fx;
};

// An n^DIM grid's row length and the load masks of a block of two rows (2n <= 32 floats).
struct GridShape {
  int n = 2;
  __mmask16 lo = 0, hi = 0;
  GridShape() = default;
  explicit GridShape(int nodes)
      : n(nodes), lo(low_lanes(2 * nodes)), hi(low_lanes(2 * nodes - 16)) {}
};

// Lerp along W inside a block of two grid rows held in (lo, hi): row r of the block starts at
// r * n; ix is the cell of each lane.
struct RowPair {
  __m512 lo, hi;
  RowPair(const float* p, const GridShape& gs)
      : lo(_mm512_maskz_loadu_ps(gs.lo, p)), hi(_mm512_maskz_loadu_ps(gs.hi, p + 16)) {}
  __m512 at(__m512i i0, __m512i i1, __m512 fx) const {
    return vlerp(lookup(lo, hi, i0), lookup(lo, hi, i1), fx);
  }
};

// out[lane] = value(r)[lane] for every valid lane, where r is the lane's entry of `row`: one
// call per distinct r among the valid lanes (usually one or two). Lane 0 is always valid and
// goes first. The row of a pass is taken from the register (a broadcast and a move to a
// general register), not through memory: a scalar load from a vector just stored waits for
// the store to retire, on every pass.
template <class Value>
RASD_INLINE __m512 per_distinct_row(__m512i row, __mmask16 valid, Value&& value) {
  int r0 = _mm_cvtsi128_si32(_mm512_castsi512_si128(row));
  __mmask16 same = _mm512_mask_cmpeq_epi32_mask(valid, row, _mm512_set1_epi32(r0));
  __m512 out = value(r0);
  unsigned todo = unsigned(valid) & ~unsigned(same);
  while (todo) {
    const __m512i first = _mm512_permutexvar_epi32(_mm512_set1_epi32(__builtin_ctz(todo)), row);
    r0 = _mm_cvtsi128_si32(_mm512_castsi512_si128(first));
    same = _mm512_mask_cmpeq_epi32_mask(__mmask16(todo), row, first);
    out = _mm512_mask_mov_ps(out, same, value(r0));
    todo &= ~unsigned(same);
  }
  return out;
}

// An n^DIM grid (n <= 16) at 16 positions given by their cells: one pass per distinct (D, H)
// cell among the valid lanes.
template <int DIM>
RASD_INLINE __m512 interpolate(const float* g, const GridShape& gs, const Cells& c,
                               __mmask16 valid) {
  const int n = gs.n;
  const __m512i vn = _mm512_set1_epi32(n), one = _mm512_set1_epi32(1);
  // Row (z, y) of the grid, as an index of rows of n floats.
  const __m512i row = _mm512_add_epi32(_mm512_mullo_epi32(c.iz, vn), c.iy);
  const __m512i ix1 = _mm512_add_epi32(c.ix, one);
  const __m512i ixn = _mm512_add_epi32(c.ix, vn);
  const __m512i ixn1 = _mm512_add_epi32(ixn, one);
  return per_distinct_row(row, valid, [&](int r0) {
    const RowPair near(g + size_t(r0) * n, gs);  // rows (z, y) and (z, y + 1)
    const __m512 c0 = vlerp(near.at(c.ix, ix1, c.fx), near.at(ixn, ixn1, c.fx), c.fy);
    __m512 v = c0;
    if (DIM == 3) {
      const RowPair far(g + (size_t(r0) + n) * n, gs);  // rows (z + 1, y), (z + 1, y + 1)
      const __m512 c1 = vlerp(far.at(c.ix, ix1, c.fx), far.at(ixn, ixn1, c.fx), c.fy);
      v = vlerp(c0, c1, c.fz);
    }
    return v;
  });
}

// The merged field at 16 positions from its coefficient table: one pass per distinct (D, H)
// cell row among the valid lanes, each coefficient of that row's cells one register.
template <int DIM>
RASD_INLINE __m512 merged_value(const float* table, const Cells& c, __mmask16 valid) {
  const __m512i row = _mm512_add_epi32(c.iz, c.iy);  // c.iz is the row of cell (z, 0)
  return per_distinct_row(row, valid, [&](int r0) {
    const float* p = table + int64_t(r0) * (1 << DIM) * 16;
    auto coefficient = [&](int i) {
      return _mm512_permutexvar_ps(c.ix, _mm512_loadu_ps(p + 16 * i));
    };
    __m512 v;
    if (DIM == 3) {
      const __m512 x_part = _mm512_fmadd_ps(
          c.fz, _mm512_fmadd_ps(c.fy, coefficient(7), coefficient(5)),
          _mm512_fmadd_ps(c.fy, coefficient(4), coefficient(1)));
      const __m512 rest = _mm512_fmadd_ps(
          c.fy, _mm512_fmadd_ps(c.fz, coefficient(6), coefficient(2)),
          _mm512_fmadd_ps(c.fz, coefficient(3), coefficient(0)));
      v = _mm512_fmadd_ps(c.fx, x_part, rest);
    } else {
      v = _mm512_fmadd_ps(c.fx, _mm512_fmadd_ps(c.fy, coefficient(3), coefficient(1)),
                          _mm512_fmadd_ps(c.fy, coefficient(2), coefficient(0)));
    }
    return v;
  });
}

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

  FieldPlan(const Problem& pb, int64_t batch) {
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
  void tabulate(const Problem& pb, int64_t bk, float* out, float* node_out, float& slack) const {
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
  static double grid_at(const float* g, int n, int d, const GridCell c[3]) {
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
};

// What the row kernel reads to score a label, copied into its own frame: read through a
// reference, every table would be reloaded after each store to the label row (a uint8_t store
// may alias anything). MERGED: the merged grid's table; otherwise the scales one by one.
template <bool MERGED>
struct FieldLookup {
  // Merged: per axis, the cell (along D premultiplied by the C cells of a row, so that the
  // row of a (z, y) cell is a sum) and the cell's start of every lattice unit, two registers
  // each (units 0..31).
  __m512i cell_lo[3], cell_hi[3];
  __m512 start_lo[3], start_hi[3];
  float last[3];  // positions are clamped to [0, last]
  const float* table;
  int64_t per_label;
  // One by one.
  int count;
  GridShape shape[MAX_SCALES];
  float scale[MAX_SCALES][3];
  int64_t offset[MAX_SCALES], total;
  const float* fields;

  FieldLookup(const Problem& pb, const FieldPlan& fp)
      : table(fp.coef.data()), per_label(fp.per_label), count(pb.fg.count),
        total(pb.fg.total), fields(pb.fields) {
    for (int a = 0; a < 3; ++a) {
      const UnionAxis& u = fp.axis[a];
      __m512i cell[2];
      for (int half = 0; half < 2; ++half) {
        cell[half] = _mm512_load_si512(u.cell_of_unit + 16 * half);
        if (a == 0) cell[half] = _mm512_mullo_epi32(cell[half], _mm512_set1_epi32(fp.cells));
      }
      cell_lo[a] = cell[0];
      cell_hi[a] = cell[1];
      start_lo[a] = _mm512_load_ps(u.start_of_unit);
      start_hi[a] = _mm512_load_ps(u.start_of_unit + 16);
      last[a] = fp.last[a];
    }
    for (int s = 0; s < count; ++s) {
      shape[s] = GridShape(pb.fg.nodes[s]);
      offset[s] = pb.fg.offset[s];
      for (int a = 0; a < 3; ++a) scale[s][a] = fp.scale[s][a];
    }
  }

  // The cell of 16 clamped positions (lattice units) along axis a and their offsets from the
  // cell's start. q = L is in the last cell.
  RASD_INLINE void merged_cell(int a, __m512 q, __m512i& i, __m512& f) const {
    const __m512i unit = _mm512_cvttps_epi32(q);
    i = _mm512_permutex2var_epi32(cell_lo[a], unit, cell_hi[a]);
    f = _mm512_sub_ps(q, _mm512_permutex2var_ps(start_lo[a], unit, start_hi[a]));
  }

  // Merged: the cells of 16 clamped positions, and the score of label bk there.
  template <int DIM>
  RASD_INLINE Cells cells(__m512 qz, __m512 qy, __m512 qx) const {
    Cells c;
    c.iz = _mm512_setzero_si512();
    c.fz = _mm512_setzero_ps();
    if (DIM == 3) merged_cell(0, qz, c.iz, c.fz);
    merged_cell(1, qy, c.iy, c.fy);
    merged_cell(2, qx, c.ix, c.fx);
    return c;
  }
  template <int DIM>
  RASD_INLINE __m512 score_at(int64_t bk, const Cells& c, __mmask16 valid) const {
    return merged_value<DIM>(table + bk * per_label, c, valid);
  }

  // One by one: score of label bk (sample b, label k) at 16 clamped positions.
  template <int DIM>
  RASD_INLINE __m512 score(int64_t bk, __m512 qz, __m512 qy, __m512 qx, __mmask16 valid) const {
    static_assert(!MERGED, "merged fields are scored by cells and score_at");
    Cells c;
    c.iz = _mm512_setzero_si512();
    c.fz = _mm512_setzero_ps();
    const float* fk = fields + bk * total;
    __m512 sum = _mm512_setzero_ps();
    for (int s = 0; s < count; ++s) {
      const int n = shape[s].n;
      if (DIM == 3) uniform_cell(qz, scale[s][0], n, c.iz, c.fz);
      uniform_cell(qy, scale[s][1], n, c.iy, c.fy);
      uniform_cell(qx, scale[s][2], n, c.ix, c.fx);
      sum = _mm512_add_ps(sum, interpolate<DIM>(fk + offset[s], shape[s], c, valid));
    }
    return sum;
  }
};

// ---- warps -------------------------------------------------------------------------------

// Union-interval form of one line of scale s (n nodes along W): ab[0..32) += alpha_j,
// ab[32..64) += beta_j, held in four registers.
struct UnionLine {
  __m512 r[4];
  UnionLine() { r[0] = r[1] = r[2] = r[3] = _mm512_setzero_ps(); }

  void add_line(const UnionIntervals& u, int s, const float* line, int n) {
    __m512 lo, hi;
    load_short(line, n, lo, hi);
    const __m512i one = _mm512_set1_epi32(1);
    const __m512 slope = _mm512_set1_ps(u.slope[s]);
    for (int half = 0; half < 2; ++half) {
      const __m512i seg = _mm512_loadu_si512(&u.segment[size_t(s) * u.stride + 16 * half]);
      const __m512 f0 = _mm512_loadu_ps(&u.frac0[size_t(s) * u.stride + 16 * half]);
      const __m512 v0 = lookup(lo, hi, seg);
      const __m512 d = _mm512_sub_ps(lookup(lo, hi, _mm512_add_epi32(seg, one)), v0);
      r[half] = _mm512_add_ps(r[half], _mm512_fmadd_ps(d, f0, v0));
      r[2 + half] = _mm512_fmadd_ps(d, slope, r[2 + half]);
    }
  }
  // += lerp of two stored forms.
  void add_lerp(const float* a, const float* b, float f) {
    const __m512 vf = _mm512_set1_ps(f);
    for (int i = 0; i < 4; ++i)
      r[i] = _mm512_add_ps(
          r[i], vlerp(_mm512_loadu_ps(a + 16 * i), _mm512_loadu_ps(b + 16 * i), vf));
  }
  // += (b - a) * scale.
  void add_difference(const float* a, const float* b, float scale) {
    const __m512 vs = _mm512_set1_ps(scale);
    for (int i = 0; i < 4; ++i)
      r[i] = _mm512_fmadd_ps(
          _mm512_sub_ps(_mm512_loadu_ps(b + 16 * i), _mm512_loadu_ps(a + 16 * i)), vs, r[i]);
  }
  void store(float* out) const {
    for (int i = 0; i < 4; ++i) _mm512_storeu_ps(out + 16 * i, r[i]);
  }
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
//  - label bounds (see there): bound ([K][vectors padded]: per label and 16 columns, an
//    upper bound of the label's score on the current interval's rows).
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

// The forms of the union intervals along H that rows [y0, y1) of slice z fall in, from the
// node rows: every scale is linear in y on such an interval. The voxel's own coordinate along
// the warp's axis (z, y = start + dy, or x = start_j + dx) is added, and the whole form is
// put in the unit of the field lookup (fp.per_voxel), so that a row's position lines are one
// FMA per register and 16 positions one more.
void build_interval_forms(const Problem& pb, const FieldPlan& fp, int kc, int axis, int z,
                          int y0, int y1, const Scratch& ws) {
  const UnionIntervals& u = pb.wuy;
  for (int jy = u.column_j[y0]; jy <= u.column_j[y1 - 1]; ++jy) {
    UnionLine start, step;
    for (int s = 0; s < pb.wg.count; ++s) {
      const int cell = u.segment[size_t(s) * u.stride + jy];
      const float f0 = u.frac0[size_t(s) * u.stride + jy];
      start.add_lerp(ws.node_row(kc, s, cell), ws.node_row(kc, s, cell + 1), f0);
      step.add_difference(ws.node_row(kc, s, cell), ws.node_row(kc, s, cell + 1), u.slope[s]);
    }
    const __m512 one = _mm512_set1_ps(1.0f);
    if (axis == 2) {  // alpha_j += start_j, beta_j += 1
      start.r[0] = _mm512_add_ps(start.r[0], _mm512_loadu_ps(&pb.wu.start[0]));
      start.r[1] = _mm512_add_ps(start.r[1], _mm512_loadu_ps(&pb.wu.start[16]));
      start.r[2] = _mm512_add_ps(start.r[2], one);
      start.r[3] = _mm512_add_ps(start.r[3], one);
    } else {
      const __m512 at = _mm512_set1_ps(axis == 0 ? float(z) : u.start[size_t(jy)]);
      start.r[0] = _mm512_add_ps(start.r[0], at);
      start.r[1] = _mm512_add_ps(start.r[1], at);
      if (axis == 1) {  // + 1 per row
        step.r[0] = _mm512_add_ps(step.r[0], one);
        step.r[1] = _mm512_add_ps(step.r[1], one);
      }
    }
    if (fp.per_voxel[axis] != 1.0f) {
      const __m512 unit = _mm512_set1_ps(fp.per_voxel[axis]);
      for (int i = 0; i < 4; ++i) {
        start.r[i] = _mm512_mul_ps(start.r[i], unit);
        step.r[i] = _mm512_mul_ps(step.r[i], unit);
      }
    }
    float* out = ws.interval_form(kc, jy);
    start.store(out);
    step.store(out + UNION_FLOATS);
  }
}

// Union forms along W of every node row along H of every warp grid of sample b at slice z,
// then the interval forms along H of rows [y0, y1).
template <int DIM>
void build_planes(const Problem& pb, const FieldPlan& fp, int64_t b, int z, int y0, int y1,
                  const Scratch& ws) {
  for (int kc = 0; kc < pb.K * DIM; ++kc) {
    const float* grid = pb.warps + (b * pb.K * DIM + kc) * pb.wg.total;
    for (int s = 0; s < pb.wg.count; ++s) {
      const int n = pb.wg.nodes[s];
      const float* plane = grid + pb.wg.offset[s];  // 2D: the grid is the (H, W) plane
      if (DIM == 3) {
        const AxisLerp cz = pb.wz.at(s, z);
        const float* p0 = plane + size_t(cz.i0) * n * n;
        const float* p1 = p0 + size_t(n) * n;
        for (int i = 0; i < n * n; ++i) ws.plane[i] = lerp(p0[i], p1[i], cz.f);
        plane = ws.plane;
      }
      for (int yi = 0; yi < n; ++yi) {
        UnionLine form;
        form.add_line(pb.wu, s, plane + size_t(yi) * n, n);
        form.store(ws.node_row(kc, s, yi));
      }
    }
    build_interval_forms(pb, fp, kc, kc % DIM + 3 - DIM, z, y0, y1, ws);
  }
}

// One union-interval form (alpha, beta of <= 32 intervals along W) in registers.
struct FormRegs {
  __m512 alpha_lo, alpha_hi, beta_lo, beta_hi;
  explicit FormRegs(const float* ab)
      : alpha_lo(_mm512_loadu_ps(ab)), alpha_hi(_mm512_loadu_ps(ab + 16)),
        beta_lo(_mm512_loadu_ps(ab + 32)), beta_hi(_mm512_loadu_ps(ab + 48)) {}
  // alpha_j + beta_j dx at 16 columns of union intervals j, offsets dx.
  RASD_INLINE __m512 at(__m512i j, __m512 dx) const {
    return _mm512_fmadd_ps(lookup(beta_lo, beta_hi, j), dx, lookup(alpha_lo, alpha_hi, j));
  }
};

// The lines of one (label, axis) on one interval along H, expanded to every column (first
// row, change per row). BOUNDS: also their least and greatest values, into range[0..4).
template <bool BOUNDS>
void expand_line(const UnionIntervals& wu, const float* form, int64_t width, float* out,
                 float* range) {
  const FormRegs first(form), per_row(form + UNION_FLOATS);
  __m512 lo_first = _mm512_set1_ps(3.0e38f), hi_first = _mm512_set1_ps(-3.0e38f);
  __m512 lo_row = lo_first, hi_row = hi_first;
  for (int x0 = 0; x0 < width; x0 += 16) {
    const __m512i j = _mm512_loadu_si512(&wu.column_j[x0]);
    const __m512 dx = _mm512_loadu_ps(&wu.column_dx[x0]);
    const __m512 f = first.at(j, dx), r = per_row.at(j, dx);
    _mm512_storeu_ps(out + x0, f);
    _mm512_storeu_ps(out + width + x0, r);
    if (BOUNDS) {
      lo_first = _mm512_min_ps(lo_first, f);
      hi_first = _mm512_max_ps(hi_first, f);
      lo_row = _mm512_min_ps(lo_row, r);
      hi_row = _mm512_max_ps(hi_row, r);
    }
  }
  if (BOUNDS) {
    range[0] = _mm512_reduce_min_ps(lo_first);
    range[1] = _mm512_reduce_max_ps(hi_first);
    range[2] = _mm512_reduce_min_ps(lo_row);
    range[3] = _mm512_reduce_max_ps(hi_row);
  }
}

// The position lines of every (label, axis) on union interval jy along H, expanded to every
// column: at column x of union interval j along W (offset dx), alpha_j + beta_j dx, both for
// the interval's first row and for its change per row. Done when the rows enter a new interval
// (every few rows), it saves each (row, label, axis) two lookups per 16 voxels. The rows to
// come are dy_first .. dy_last >= 0 rows into the interval; where none of their positions
// along D or H can leave [0, last] (bounded as first + change * dy over the extremes of both,
// with a margin far above rounding), the row kernel skips the clamp there, which leaves every
// position as it was. Along W the row kernel always clamps.
void expand_lines(const Problem& pb, const FieldPlan& fp, int jy, float dy_first,
                  float dy_last, const Scratch& ws) {
  for (int kc = 0; kc < pb.K * pb.ext.d; ++kc) {
    const float* form = ws.interval_form(kc, jy);
    const int axis = kc % pb.ext.d + 3 - pb.ext.d;
    if (axis == 2) {
      expand_line<false>(pb.wu, form, ws.width, ws.line(kc), nullptr);
      continue;
    }
    float r[4];
    expand_line<true>(pb.wu, form, ws.width, ws.line(kc), r);
    const float lo = r[0] + std::min(r[2] * dy_first, r[2] * dy_last);
    const float hi = r[1] + std::max(r[3] * dy_first, r[3] * dy_last);
    const float margin = 1e-3f * fp.last[axis];
    ws.reaches[kc] = lo >= margin && hi <= fp.last[axis] - margin ? 0.0f : 1.0f;
  }
}

// ---- label bounds ------------------------------------------------------------------------
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

// What the bounds need of the union intervals along W: the offset of each interval's last
// column and the intervals that each 16 columns touch.
struct ColumnBlocks {
  float dx_last[32] = {};
  std::vector<int> j_first, j_last;  // per 16 columns
  explicit ColumnBlocks(const Problem& pb) {
    const UnionIntervals& u = pb.wu;
    const int W = pb.ext.W;
    for (int x = 0; x < W; ++x)
      dx_last[u.column_j[x]] = std::max(dx_last[u.column_j[x]], u.column_dx[x]);
    for (int x0 = 0; x0 < W; x0 += 16) {
      j_first.push_back(u.column_j[x0]);
      j_last.push_back(u.column_j[std::min(x0 + 15, W - 1)]);
    }
  }
};

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

// The positions along one axis of a row of one label, dy rows into its interval along H.
struct PositionLine {
  const float* first;
  const float* per_row;
  __m512 dy;
  PositionLine(const float* line, int64_t width, float dy_)
      : first(line), per_row(line + width), dy(_mm512_set1_ps(dy_)) {}
  RASD_INLINE __m512 at(int x0) const {
    return _mm512_fmadd_ps(_mm512_loadu_ps(per_row + x0), dy, _mm512_loadu_ps(first + x0));
  }
};

// The position lines of label k on a row dy rows into the current interval along H (z unused
// in 2D), and whether its positions along D or H may leave [0, last] there (then clamped).
template <int DIM>
struct LabelLines {
  PositionLine z, y, x;
  bool clamp_dh;
  LabelLines(const Scratch& ws, int k, float dy)
      : z(ws.line(k * DIM), ws.width, dy),
        y(ws.line(k * DIM + DIM - 2), ws.width, dy),
        x(ws.line(k * DIM + DIM - 1), ws.width, dy),
        clamp_dh(ws.reaches[k * DIM + DIM - 2] != 0.0f ||
                 (DIM == 3 && ws.reaches[k * DIM] != 0.0f)) {}
};

// Row y: label by label, each over the whole row, keeping the best score so far in ws.best.
// Positions along W are always clamped (a row spans the whole axis, so the warped ends leave
// it most of the time); along D and H only where the interval's lines may leave [0, last].
template <int DIM, bool MERGED, bool CLAMP_DH>
RASD_INLINE void label_pass(const FieldLookup<MERGED>& field, int64_t bk, int k, int W,
                            const LabelLines<DIM>& lines, float* best, uint8_t* label) {
  const PositionLine &lz = lines.z, &ly = lines.y, &lx = lines.x;
  auto position = [&](int a, const PositionLine& l, int x0) {
    return CLAMP_DH || a == 2 ? vclamp(l.at(x0), field.last[a]) : l.at(x0);
  };
  const __m512i vk = _mm512_set1_epi32(k);
  auto cells_at = [&](int x0) {
    const __m512 qz = DIM == 3 ? position(0, lz, x0) : _mm512_setzero_ps();
    return field.template cells<DIM>(qz, position(1, ly, x0), position(2, lx, x0));
  };
  // Merged: the cells of the next 16 voxels are found before this vector's passes, whose
  // loop exit is a data-dependent branch: after a misprediction the next vector's lookups
  // are already done. (The last vector looks up its own cells again.)
  Cells next;
  if constexpr (MERGED) next = cells_at(0);
  for (int x0 = 0; x0 < W; x0 += 16) {
    const __mmask16 valid = low_lanes(W - x0);
    __m512 score;
    if constexpr (MERGED) {
      const Cells here = next;
      next = cells_at(std::min(x0 + 16, W - 1) / 16 * 16);
      score = field.template score_at<DIM>(bk, here, valid);
    } else {
      const __m512 qz = DIM == 3 ? position(0, lz, x0) : _mm512_setzero_ps();
      score = field.template score<DIM>(bk, qz, position(1, ly, x0), position(2, lx, x0),
                                        valid);
    }
    // Strictly greater: ties keep the lower label.
    const __mmask16 better = k == 0 ? valid
        : _mm512_mask_cmp_ps_mask(valid, score, _mm512_loadu_ps(best + x0), _CMP_GT_OQ);
    _mm512_mask_storeu_ps(best + x0, better, score);
    _mm512_mask_cvtepi32_storeu_epi8(label + x0, better, vk);
  }
}

// The floors of 32 vectors of a row (see label bounds), two registers.
struct Floors {
  __m512 lo, hi;
  explicit Floors(float v) : lo(_mm512_set1_ps(v)), hi(lo) {}
  // Vectors whose bound (32 floats) reaches their floor.
  unsigned reached_by(const float* bound) const {
    return unsigned(_mm512_cmp_ps_mask(_mm512_loadu_ps(bound), lo, _CMP_GE_OQ)) |
           unsigned(_mm512_cmp_ps_mask(_mm512_loadu_ps(bound + 16), hi, _CMP_GE_OQ)) << 16;
  }
  void set(int lane, float v) {
    const unsigned bit = 1u << lane;
    lo = _mm512_mask_mov_ps(lo, __mmask16(bit & 0xFFFFu), _mm512_set1_ps(v));
    hi = _mm512_mask_mov_ps(hi, __mmask16(bit >> 16), _mm512_set1_ps(v));
  }
};

// Seeds the 32 vectors of a row from vector `group` on: on each 16 voxels the seed label w
// (seeds: one per vector) is scored first, its score and label taken as the best so far
// (positions clamped on every axis, which leaves positions inside [0, last] as they are: the
// score that label's own pass would compute). Returns the floor of each vector, their least
// seed score (+inf past the row); seeded_by[k]: the vectors whose seed is label k.
template <int DIM>
Floors seed_group(const Problem& pb, const FieldLookup<true>& field, int64_t b, float dy,
                  const uint8_t* seeds, int64_t group, const Scratch& ws, uint8_t* label,
                  uint32_t* seeded_by) {
  const int W = pb.ext.W;
  Floors floor(std::numeric_limits<float>::infinity());
  std::fill(seeded_by, seeded_by + pb.K, 0u);
  for (int lane = 0; lane < 32 && 16 * (group + lane) < W; ++lane) {
    const int x0 = int(16 * (group + lane));
    const int w = seeds[group + lane];
    auto position = [&](int a) {
      const PositionLine line(ws.line(w * DIM + a - (3 - DIM)), ws.width, dy);
      return vclamp(line.at(x0), field.last[a]);
    };
    const __m512 qz = DIM == 3 ? position(0) : _mm512_setzero_ps();
    const __mmask16 valid = low_lanes(W - x0);
    const Cells c = field.template cells<DIM>(qz, position(1), position(2));
    const __m512 score = field.template score_at<DIM>(b * pb.K + w, c, valid);
    _mm512_storeu_ps(ws.best + x0, score);
    _mm512_mask_cvtepi32_storeu_epi8(label + x0, valid, _mm512_set1_epi32(w));
    floor.set(lane, _mm512_mask_reduce_min_ps(valid, score));
    seeded_by[w] |= 1u << lane;
  }
  return floor;
}

// Label k on the 32 vectors of a row from vector `group` on, with bounds: scored only on the
// vectors whose bound reaches `older` (floors from before the previous label's pass: the
// latest wait on that pass's last score, and any lower floor is still a floor) and whose seed
// is another label. The seed was scored first, so ties go to k where k is below the seed and
// the seed still holds (what scoring in label order gives). Returns `floor` raised to the
// new best scores.
template <int DIM, bool CLAMP_DH>
RASD_INLINE Floors bounded_label_pass(const FieldLookup<true>& field, int64_t bk, int k, int W,
                                      const LabelLines<DIM>& lines, const uint8_t* seeds,
                                      int64_t group, unsigned todo, const Floors& older,
                                      Floors floor, const Scratch& ws, uint8_t* label) {
  const PositionLine &lz = lines.z, &ly = lines.y, &lx = lines.x;
  auto position = [&](int a, const PositionLine& l, int x0) {
    return CLAMP_DH || a == 2 ? vclamp(l.at(x0), field.last[a]) : l.at(x0);
  };
  const __m512i vk = _mm512_set1_epi32(k);
  todo &= older.reached_by(ws.label_bound(k) + group);
  while (todo) {
    const int lane = __builtin_ctz(todo);
    todo &= todo - 1;
    const int x0 = int(16 * (group + lane));
    const __mmask16 valid = low_lanes(W - x0);
    const __m512 qz = DIM == 3 ? position(0, lz, x0) : _mm512_setzero_ps();
    const Cells c = field.template cells<DIM>(qz, position(1, ly, x0), position(2, lx, x0));
    const __m512 score = field.template score_at<DIM>(bk, c, valid);
    const __m512 best = _mm512_loadu_ps(ws.best + x0);
    __mmask16 better = _mm512_mask_cmp_ps_mask(valid, score, best, _CMP_GT_OQ);
    const int w = seeds[group + lane];
    const __mmask16 tie = _mm512_mask_cmp_ps_mask(k < w ? valid : 0, score, best, _CMP_EQ_OQ);
    if (tie) {  // rare: exact ties
      // (masked: at the end of the last row, bytes past W are past the labels)
      const __m512i held = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(valid, label + x0));
      better |= tie & _mm512_cmpeq_epi32_mask(held, _mm512_set1_epi32(w));
    }
    const __m512 now = _mm512_mask_mov_ps(best, better, score);
    _mm512_storeu_ps(ws.best + x0, now);
    _mm512_mask_cvtepi32_storeu_epi8(label + x0, better, vk);
    floor.set(lane, _mm512_mask_reduce_min_ps(valid, now));
  }
  return floor;
}

// The seed label of every 16 voxels of row y: the label of the row above at their middle, or
// on a unit's first row (no row above in this unit) the label with the highest bound there.
void row_seeds(const Problem& pb, const uint8_t* above, const Scratch& ws, uint8_t* seeds) {
  const int W = pb.ext.W;
  for (int x0 = 0, v = 0; x0 < W; x0 += 16, ++v) {
    if (above) {
      seeds[v] = above[std::min(x0 + 8, W - 1)];
      continue;
    }
    int top = 0;
    for (int k = 1; k < pb.K; ++k)
      if (ws.label_bound(k)[v] > ws.label_bound(top)[v]) top = k;
    seeds[v] = uint8_t(top);
  }
}

// Row y with label bounds, 32 vectors at a time; above: the row above in this unit, or null.
template <int DIM>
void bounded_row(const Problem& pb, const FieldLookup<true>& field, int64_t b, int y,
                 const uint8_t* above, const Scratch& ws, uint8_t* label) {
  const float dy = pb.wuy.column_dx[y];
  const int W = pb.ext.W;
  uint32_t seeded_by[256];
  uint8_t* seeds = reinterpret_cast<uint8_t*>(ws.seeds);
  row_seeds(pb, above, ws, seeds);
  for (int64_t group = 0; 16 * group < W; group += 32) {
    Floors floor = seed_group<DIM>(pb, field, b, dy, seeds, group, ws, label, seeded_by);
    Floors older = floor;
    for (int k = 0; k < pb.K; ++k) {
      const LabelLines<DIM> lines(ws, k, dy);
      const unsigned todo = ~seeded_by[k];
      const Floors before = floor;
      if (lines.clamp_dh) {
        floor = bounded_label_pass<DIM, true>(field, b * pb.K + k, k, W, lines, seeds, group,
                                              todo, older, floor, ws, label);
      } else {
        floor = bounded_label_pass<DIM, false>(field, b * pb.K + k, k, W, lines, seeds, group,
                                               todo, older, floor, ws, label);
      }
      older = before;
    }
  }
}

template <int DIM, bool MERGED>
void row_kernel(const Problem& pb, const FieldLookup<MERGED>& field, int64_t b, int y,
                const Scratch& ws, uint8_t* label) {
  const float dy = pb.wuy.column_dx[y];
  for (int k = 0; k < pb.K; ++k) {
    const LabelLines<DIM> lines(ws, k, dy);
    if (lines.clamp_dh) {
      label_pass<DIM, MERGED, true>(field, b * pb.K + k, k, pb.ext.W, lines, ws.best, label);
    } else {
      label_pass<DIM, MERGED, false>(field, b * pb.K + k, k, pb.ext.W, lines, ws.best, label);
    }
  }
}

// Rows [y0, y1) of slice z of sample b.
// BOUNDED: with label bounds (merged fields only).
template <int DIM, bool MERGED, bool BOUNDED>
void unit_kernel(const Problem& pb, const FieldPlan& fp, const ColumnBlocks& cb, int64_t b,
                 int z, int y0, int y1, uint8_t* labels, const Scratch& ws) {
  static_assert(MERGED || !BOUNDED, "bounds need the merged fields");
  const FieldLookup<MERGED> field(pb, fp);
  build_planes<DIM>(pb, fp, b, z, y0, y1, ws);
  int expanded = -1;  // the interval along H whose lines ws.lines holds
  for (int y = y0; y < y1; ++y) {
    const int jy = pb.wuy.column_j[y];
    if (jy != expanded) {
      int last_row = y;  // of this interval within the unit
      while (last_row + 1 < y1 && pb.wuy.column_j[last_row + 1] == jy) ++last_row;
      const float dy_first = pb.wuy.column_dx[y], dy_last = pb.wuy.column_dx[last_row];
      expand_lines(pb, fp, jy, dy_first, dy_last, ws);
      if constexpr (BOUNDED) label_bounds(pb, fp, cb, b, jy, dy_first, dy_last, ws);
      expanded = jy;
    }
    uint8_t* label = labels + b * pb.ext.voxels() + (int64_t(z) * pb.ext.H + y) * pb.ext.W;
    if constexpr (BOUNDED) {
      bounded_row<DIM>(pb, field, b, y, y > y0 ? label - pb.ext.W : nullptr, ws, label);
    } else {
      row_kernel<DIM, MERGED>(pb, field, b, y, ws, label);
    }
  }
}

template <int DIM>
void unit_dispatch(const Problem& pb, const FieldPlan& fp, const ColumnBlocks& cb, int64_t b,
                   int z, int y0, int y1, uint8_t* labels, const Scratch& ws) {
  // Label bounds pay off in 2D, where rows are long and K large; in 3D (rasd3d) computing
  // them costs more than they save.
  if (fp.merged && DIM == 2 && label_bounds_enabled()) {
    unit_kernel<DIM, true, DIM == 2>(pb, fp, cb, b, z, y0, y1, labels, ws);
  } else if (fp.merged) {
    unit_kernel<DIM, true, false>(pb, fp, cb, b, z, y0, y1, labels, ws);
  } else {
    unit_kernel<DIM, false, false>(pb, fp, cb, b, z, y0, y1, labels, ws);
  }
}

}  // namespace

bool avx512_supports(const Problem& pb) {
  for (int s = 0; s < pb.wg.count; ++s)
    if (pb.wg.nodes[s] > LINE) return false;
  if (pb.wu.count > 32) return false;  // alpha / beta held in two registers
  for (int s = 0; s < pb.fg.count; ++s)
    if (pb.fg.nodes[s] > MAX_FIELD_N) return false;
  return pb.ext.W >= 2;
}

void perlin_avx512(const Problem& pb, int64_t batch, uint8_t* labels) {
  const FieldPlan fp(pb, batch);
  const ColumnBlocks cb(pb);
  const int64_t blocks = (pb.ext.H + ROWS_PER_UNIT - 1) / ROWS_PER_UNIT;
  const int64_t per_sample = int64_t(pb.ext.D) * blocks;
  parallel_for(batch * per_sample, Scratch::floats(pb), [&](int64_t unit, float* buf) {
    const Scratch ws(pb, buf);
    const int64_t b = unit / per_sample, r = unit % per_sample;
    const int z = int(r / blocks), y0 = int(r % blocks) * ROWS_PER_UNIT;
    const int y1 = std::min(y0 + ROWS_PER_UNIT, pb.ext.H);
    if (pb.ext.d == 3) {
      unit_dispatch<3>(pb, fp, cb, b, z, y0, y1, labels, ws);
    } else {
      unit_dispatch<2>(pb, fp, cb, b, z, y0, y1, labels, ws);
    }
  });
}

RASD_AVX512_END
#else  // built without AVX-512 support: the portable kernel always runs

bool avx512_supports(const Problem&) { return false; }
void perlin_avx512(const Problem&, int64_t, uint8_t*) {}

#endif

}  // namespace gmm
}  // namespace cpu
}  // namespace rasd
