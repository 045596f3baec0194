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
//
// Files: this one holds the entry point, the warps (per unit of rows and per union interval
// along H) and the row kernels; gmm_shapes_avx512.h lists the others (the field plan, the
// field lookup, the label bounds).
#include <algorithm>
#include <cstdint>
#include <limits>

#include "gmm_field_lookup_avx512.h"  // last: it includes avx512.h

namespace rasd {
namespace cpu {
namespace gmm {

bool avx512_available() { return RASD_AVX512_KERNELS && avx512_enabled(); }

#if RASD_AVX512_KERNELS
RASD_AVX512_BEGIN

namespace avx512 {
namespace {

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

// ---- rows --------------------------------------------------------------------------------
//
// Label bounds: see gmm_label_bounds_avx512.cpp.

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
}  // namespace avx512

bool avx512_supports(const Problem& pb) {
  using namespace avx512;
  for (int s = 0; s < pb.wg.count; ++s)
    if (pb.wg.nodes[s] > LINE) return false;
  if (pb.wu.count > 32) return false;  // alpha / beta held in two registers
  for (int s = 0; s < pb.fg.count; ++s)
    if (pb.fg.nodes[s] > MAX_FIELD_N) return false;
  return pb.ext.W >= 2;
}

void perlin_avx512(const Problem& pb, int64_t batch, uint8_t* labels) {
  using namespace avx512;
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
