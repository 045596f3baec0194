// gmm_shapes, perlin mode, hand-vectorised for AVX-512 (16 voxels of a row per vector).
//
// Why intrinsics: the portable kernel needs per-lane gathers from the tiny coarse grids, and
// compilers emulate those with scalar loads. Here every lookup is a register permute:
//  - warps: per row, the warp lines of all scales are merged into one piecewise-linear
//    function along W (UnionIntervals, <= 32 pieces in two registers), so the displacement
//    of 16 voxels is two vpermt2ps and one FMA per (label, axis);
//  - fields: the warped positions of 16 neighbouring voxels fall in one or two (D, H) cells
//    of a grid; for each distinct cell the two grid rows it needs (2n <= 32 floats) are
//    loaded into registers and the four W-neighbours of every lane are permutes.
// This file is compiled with AVX-512 flags and only called when the CPU has them.
#include <immintrin.h>

#include "gmm_shapes.h"

namespace rasd {
namespace cpu {
namespace gmm {

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512DQ__)

namespace {

constexpr int LINE = 32;        // floats per warp line slot (two registers)
constexpr int MAX_FIELD_N = 16;  // two field rows of n nodes fit in two registers

inline __m512 lookup(__m512 lo, __m512 hi, __m512i idx) {
  return _mm512_permutex2var_ps(lo, idx, hi);
}

inline __m512 vlerp(__m512 a, __m512 b, __m512 f) {
  return _mm512_fmadd_ps(f, _mm512_sub_ps(b, a), a);
}

inline __m512 vclamp(__m512 v, float hi) {
  return _mm512_min_ps(_mm512_max_ps(v, _mm512_setzero_ps()), _mm512_set1_ps(hi));
}

// Cell index and fraction along one axis of a field grid (positions already clamped).
inline void cell(__m512 q, float scale, __m512i nm2, __m512i& i, __m512& f) {
  const __m512 t = _mm512_mul_ps(q, _mm512_set1_ps(scale));
  i = _mm512_min_epi32(_mm512_cvttps_epi32(t), nm2);
  f = _mm512_sub_ps(t, _mm512_cvtepi32_ps(i));
}

inline __mmask16 low_lanes(int count) {
  return count >= 16 ? __mmask16(0xFFFF) : count <= 0 ? __mmask16(0) : __mmask16((1u << count) - 1);
}

// Lerp along W inside a block of two grid rows held in (lo, hi): row r of the block starts at
// r * n; ix is the cell of each lane.
struct RowPair {
  __m512 lo, hi;
  RowPair(const float* p, int n)
      : lo(_mm512_maskz_loadu_ps(low_lanes(2 * n), p)),
        hi(2 * n > 16 ? _mm512_maskz_loadu_ps(low_lanes(2 * n - 16), p + 16) : lo) {}
  __m512 at(__m512i i0, __m512i i1, __m512 fx) const {
    return vlerp(lookup(lo, hi, i0), lookup(lo, hi, i1), fx);
  }
};

// Field value at 16 clamped positions: one pass per distinct (D, H) cell among the lanes.
template <int DIM>
__m512 field(const float* g, int n, __m512 qz, __m512 qy, __m512 qx, const float scale[3],
             __mmask16 valid) {
  const __m512i nm2 = _mm512_set1_epi32(n - 2);
  __m512i iz = _mm512_setzero_si512(), iy, ix;
  __m512 fz = _mm512_setzero_ps(), fy, fx;
  if (DIM == 3) cell(qz, scale[0], nm2, iz, fz);
  cell(qy, scale[1], nm2, iy, fy);
  cell(qx, scale[2], nm2, ix, fx);
  const __m512i vn = _mm512_set1_epi32(n), one = _mm512_set1_epi32(1);
  // Row (z, y) of the grid, as an index of rows of n floats.
  const __m512i row = _mm512_add_epi32(_mm512_mullo_epi32(iz, vn), iy);
  alignas(64) int rows[16];
  _mm512_store_si512(rows, row);
  const __m512i ix1 = _mm512_add_epi32(ix, one);
  const __m512i ixn = _mm512_add_epi32(ix, vn);
  const __m512i ixn1 = _mm512_add_epi32(ixn, one);
  __m512 out = _mm512_setzero_ps();
  unsigned todo = valid;
  while (todo) {
    const int r0 = rows[__builtin_ctz(todo)];
    const __mmask16 same = _mm512_mask_cmpeq_epi32_mask(__mmask16(todo), row,
                                                         _mm512_set1_epi32(r0));
    const RowPair near(g + size_t(r0) * n, n);  // rows (z, y) and (z, y + 1)
    const __m512 c0 = vlerp(near.at(ix, ix1, fx), near.at(ixn, ixn1, fx), fy);
    __m512 v = c0;
    if (DIM == 3) {
      const RowPair far(g + (size_t(r0) + n) * n, n);  // rows (z + 1, y), (z + 1, y + 1)
      const __m512 c1 = vlerp(far.at(ix, ix1, fx), far.at(ixn, ixn1, fx), fy);
      v = vlerp(c0, c1, fz);
    }
    out = _mm512_mask_mov_ps(out, same, v);
    todo &= ~unsigned(same);
  }
  return out;
}

// Warp lines of one (label, axis) at row (z, y) in union-interval form: ab[0..32) = alpha_j,
// ab[32..64) = beta_j (see UnionIntervals). `line` is scratch for one contracted line.
template <int DIM>
void union_line(const Problem& pb, const float* grid, int z, int y, float* line, float* ab) {
  const UnionIntervals& u = pb.wu;
  __m512 a0 = _mm512_setzero_ps(), a1 = a0, b0 = a0, b1 = a0;
  const __m512i one = _mm512_set1_epi32(1);
  for (int s = 0; s < pb.wg.count; ++s) {
    const AxisLerp cz = DIM == 3 ? pb.wz.at(s, z) : AxisLerp{0, 0.0f};
    contract<DIM>(grid + pb.wg.offset[s], pb.wg.nodes[s], cz, pb.wy.at(s, y), line);
    const __m512 lo = _mm512_loadu_ps(line), hi = _mm512_loadu_ps(line + 16);
    const __m512 slope = _mm512_set1_ps(u.slope[s]);
    for (int half = 0; half < 2; ++half) {
      const __m512i seg = _mm512_loadu_si512(&u.segment[size_t(s) * u.stride + 16 * half]);
      const __m512 f0 = _mm512_loadu_ps(&u.frac0[size_t(s) * u.stride + 16 * half]);
      const __m512 v0 = lookup(lo, hi, seg);
      const __m512 d = _mm512_sub_ps(lookup(lo, hi, _mm512_add_epi32(seg, one)), v0);
      __m512& a = half ? a1 : a0;
      __m512& b = half ? b1 : b0;
      a = _mm512_add_ps(a, _mm512_fmadd_ps(d, f0, v0));
      b = _mm512_fmadd_ps(d, slope, b);
    }
  }
  _mm512_storeu_ps(ab, a0);
  _mm512_storeu_ps(ab + 16, a1);
  _mm512_storeu_ps(ab + 32, b0);
  _mm512_storeu_ps(ab + 48, b1);
}

// u at 16 columns of union intervals j, offsets dx: alpha_j + beta_j dx.
inline __m512 displacement(const float* ab, __m512i j, __m512 dx) {
  const __m512 alpha = lookup(_mm512_loadu_ps(ab), _mm512_loadu_ps(ab + 16), j);
  const __m512 beta = lookup(_mm512_loadu_ps(ab + 32), _mm512_loadu_ps(ab + 48), j);
  return _mm512_fmadd_ps(beta, dx, alpha);
}

template <int DIM>
void row_kernel(const Problem& pb, int64_t b, int z, int y, uint8_t* label, float* scratch) {
  const Extent& e = pb.ext;
  const int W = e.W;
  float* line = scratch;             // one contracted warp line
  float* lines = scratch + LINE;     // [K][DIM][64]: alpha, beta of every (label, axis)
  for (int k = 0; k < pb.K; ++k)
    for (int c = 0; c < DIM; ++c)
      union_line<DIM>(pb, pb.warps + ((b * pb.K + k) * DIM + c) * pb.wg.total, z, y, line,
                      lines + (size_t(k) * DIM + c) * 64);
  float scales[MAX_SCALES][3];
  for (int s = 0; s < pb.fg.count; ++s) {
    const int n = pb.fg.nodes[s];
    scales[s][0] = DIM == 3 ? node_scale(n, e.D) : 0.0f;
    scales[s][1] = node_scale(n, e.H);
    scales[s][2] = node_scale(n, W);
  }
  const __m512 iota = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const __m512 pz = _mm512_set1_ps(float(z)), py = _mm512_set1_ps(float(y));
  for (int x0 = 0; x0 < W; x0 += 16) {
    const __mmask16 valid = low_lanes(W - x0);
    const __m512 px = _mm512_add_ps(_mm512_set1_ps(float(x0)), iota);
    const __m512i j = _mm512_loadu_si512(&pb.wu.column_j[x0]);
    const __m512 dx = _mm512_loadu_ps(&pb.wu.column_dx[x0]);
    __m512 best = _mm512_set1_ps(-3.0e38f);
    __m512i lab = _mm512_setzero_si512();
    for (int k = 0; k < pb.K; ++k) {
      const float* lk = lines + size_t(k) * DIM * 64;
      __m512 qz = _mm512_setzero_ps(), qy, qx;
      if (DIM == 3) qz = vclamp(_mm512_add_ps(pz, displacement(lk, j, dx)), float(e.D - 1));
      qy = vclamp(_mm512_add_ps(py, displacement(lk + (DIM - 2) * 64, j, dx)), float(e.H - 1));
      qx = vclamp(_mm512_add_ps(px, displacement(lk + (DIM - 1) * 64, j, dx)), float(W - 1));
      const float* fk = pb.fields + (b * pb.K + k) * pb.fg.total;
      __m512 score = _mm512_setzero_ps();
      for (int s = 0; s < pb.fg.count; ++s)
        score = _mm512_add_ps(score, field<DIM>(fk + pb.fg.offset[s], pb.fg.nodes[s], qz, qy,
                                                qx, scales[s], valid));
      // Strictly greater: ties keep the lower label.
      const __mmask16 better = _mm512_cmp_ps_mask(score, best, _CMP_GT_OQ);
      best = _mm512_mask_mov_ps(best, better, score);
      lab = _mm512_mask_mov_epi32(lab, better, _mm512_set1_epi32(k));
    }
    _mm512_mask_cvtepi32_storeu_epi8(label + x0, valid, lab);
  }
}

}  // namespace

bool avx512_available() {
  static const bool ok = __builtin_cpu_supports("avx512f") &&
                         __builtin_cpu_supports("avx512bw") &&
                         __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
  return ok;
}

bool avx512_supports(const Problem& pb) {
  for (int s = 0; s < pb.wg.count; ++s)
    if (pb.wg.nodes[s] > LINE) return false;
  if (pb.wu.count > 32) return false;  // alpha / beta held in two registers
  for (int s = 0; s < pb.fg.count; ++s)
    if (pb.fg.nodes[s] > MAX_FIELD_N) return false;
  return pb.ext.W >= 2;
}

size_t avx512_scratch_floats(const Problem& pb) {
  return LINE + size_t(pb.K) * pb.ext.d * 64;
}

void perlin_row_avx512(const Problem& pb, int64_t b, int z, int y, uint8_t* label,
                       float* scratch) {
  if (pb.ext.d == 3) {
    row_kernel<3>(pb, b, z, y, label, scratch);
  } else {
    row_kernel<2>(pb, b, z, y, label, scratch);
  }
}

#else  // built without AVX-512 support: the portable kernel always runs

bool avx512_available() { return false; }
bool avx512_supports(const Problem&) { return false; }
size_t avx512_scratch_floats(const Problem&) { return 0; }
void perlin_row_avx512(const Problem&, int64_t, int, int, uint8_t*, float*) {}

#endif

}  // namespace gmm
}  // namespace cpu
}  // namespace rasd
