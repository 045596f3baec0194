// gmm_shapes' AVX-512 kernel: the field of a label at 16 positions, for the row kernels of
// gmm_shapes_avx512.cpp (its only user). With merged fields (FieldPlan) a position's cell is
// two register permutes of its lattice unit and the field one polynomial from the cell row's
// coefficients; otherwise each scale is interpolated from its grid rows. Either way one pass
// per distinct (D, H) cell row among the 16 lanes (usually one or two).
//
// Everything here inlines into the row loops, and sits in an unnamed namespace (no symbol that
// another file could share). Include this header after every other one.
#pragma once

#include <cstdint>

#include "gmm_shapes_avx512.h"  // last: it includes avx512.h

#if RASD_AVX512_KERNELS
RASD_AVX512_BEGIN

namespace rasd {
namespace cpu {
namespace gmm {
namespace avx512 {
namespace {

// Cell index and fraction along one axis of a uniform field grid (positions already clamped).
inline void uniform_cell(__m512 q, float scale, int nodes, __m512i& i, __m512& f) {
  const __m512 t = _mm512_mul_ps(q, _mm512_set1_ps(scale));
  i = _mm512_min_epi32(_mm512_cvttps_epi32(t), _mm512_set1_epi32(nodes - 2));
  f = _mm512_sub_ps(t, _mm512_cvtepi32_ps(i));
}

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

}  // namespace
}  // namespace avx512
}  // namespace gmm
}  // namespace cpu
}  // namespace rasd

RASD_AVX512_END
#endif  // RASD_AVX512_KERNELS
