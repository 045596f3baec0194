// The rows of appearance hand-vectorised for AVX-512: the intensity times the bias,
// x = mean e^psi (pass 1, without texture), and the gamma curve ((x - lo) factor)^gamma
// (pass 5); and a part used alone: the label stats of a row (pass 1 with texture). A stat of
// 16 voxels is one permute of the [K, 2] table held in two registers; psi comes from the row's
// bias line as in the bias_field op's rows (bias_psi, bias_field_avx512.h).
//
// Why not the portable exp_f / pow_unit (mathf.h): they spend a third of their work on
// taking floats apart and putting them together, which AVX-512 does in one instruction each
// (getexp / getmant, scalef). Both rows end in 2^n e^f with |f| <= ln 2 / 2, e^f by its Taylor
// polynomial of degree 7 (relative error below 6e-9). For the gamma curve, log2 v = e +
// log2 m with the mantissa m in [3/4, 3/2) (so that log2 v is not a difference of two numbers
// near 1 when v is just below 1), log2 m a cubic on each of 32 intervals in the exact offset
// from the interval's start (coefficients from a register permute, the table built once in
// double by interpolation at Chebyshev nodes: error below 3e-9): about 32 instructions per 16
// voxels against 42. The results agree with exp_f / pow_unit to a few float ulp (and the
// gamma curve stays right for subnormal v, which pow_unit's bit arithmetic does not handle);
// the tests compare them.
// The rows are compiled for AVX-512 (avx512.h) and only called when the CPU has it.
#include <cmath>

#include "../common/layout.h"
#include "appearance.h"
#include "bias_field_avx512.h"  // last: it includes avx512.h

namespace rasd {
namespace cpu {

bool appearance_avx512_available() { return RASD_AVX512_KERNELS && avx512_enabled(); }

#if RASD_AVX512_KERNELS
RASD_AVX512_BEGIN

namespace {

constexpr int INTERVALS = 32;        // of the mantissa; two registers per coefficient
constexpr double MANTISSA_LO = 0.75;  // the mantissa's range [3/4, 3/2)
constexpr double WIDTH = MANTISSA_LO / INTERVALS;  // 3/128: every start is a float

// Interval i is [s_i, s_i + w), s_i = 3/4 + i w; coef[c][i]: coefficient of d^c of
// log2(s_i + d), d in [0, w]. The offset d = m - s_i is exact in float.
struct Log2Table {
  alignas(64) float start[INTERVALS];
  alignas(64) float coef[4][INTERVALS];
  Log2Table() {
    constexpr double pi = 3.14159265358979323846;
    for (int i = 0; i < INTERVALS; ++i) {
      start[i] = float(MANTISSA_LO + i * WIDTH);
      // The cubic through the function at the four Chebyshev nodes of [0, w], in Newton form,
      // then expanded in powers of d.
      double r[4], f[4];
      for (int k = 0; k < 4; ++k) {
        r[k] = WIDTH * (0.5 + 0.5 * std::cos((2 * k + 1) * pi / 8.0));
        f[k] = std::log2(double(start[i]) + r[k]);
      }
      for (int level = 1; level < 4; ++level)  // divided differences, in place
        for (int k = 3; k >= level; --k) f[k] = (f[k] - f[k - 1]) / (r[k] - r[k - level]);
      double p[4] = {f[3], 0.0, 0.0, 0.0};  // Horner on the Newton form: p = p (r - r_k) + f_k
      for (int k = 2; k >= 0; --k) {
        for (int c = 3; c >= 1; --c) p[c] = p[c - 1] - r[k] * p[c];
        p[0] = f[k] - r[k] * p[0];
      }
      for (int c = 0; c < 4; ++c) coef[c][i] = float(p[c]);
    }
  }
};

const Log2Table& log2_table() {
  static const Log2Table table;
  return table;
}

RASD_INLINE __m512 splat(float v) { return _mm512_set1_ps(v); }

// e^f for |f| <= ln 2 / 2: Taylor to degree 7 (relative error below 6e-9).
RASD_INLINE __m512 exp_reduced(__m512 f) {
  __m512 p = splat(1.0f / 5040.0f);
  p = _mm512_fmadd_ps(p, f, splat(1.0f / 720.0f));
  p = _mm512_fmadd_ps(p, f, splat(1.0f / 120.0f));
  p = _mm512_fmadd_ps(p, f, splat(1.0f / 24.0f));
  p = _mm512_fmadd_ps(p, f, splat(1.0f / 6.0f));
  p = _mm512_fmadd_ps(p, f, splat(0.5f));
  p = _mm512_fmadd_ps(p, f, splat(1.0f));
  return _mm512_fmadd_ps(p, f, splat(1.0f));
}

constexpr int NEAREST = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;

// label_stats [K, 2] (K <= 16) in two registers: a stat of 16 voxels is one permute. Labels
// >= K take the last row, as label_stats_offset.
struct LabelStats {
  __m512 lo, hi;
  __m512i last;
  LabelStats(const float* stats, int K)
      : lo(_mm512_maskz_loadu_ps(low_lanes(K * layout::LABEL_STATS), stats)),
        hi(_mm512_maskz_loadu_ps(low_lanes(K * layout::LABEL_STATS - 16), stats + 16)),
        last(_mm512_set1_epi32(K - 1)) {}
  RASD_INLINE __m512 at(const uint8_t* labels, __mmask16 valid, int stat) const {
    const __m512i k =
        _mm512_min_epi32(_mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(valid, labels)), last);
    const __m512i offset = _mm512_add_epi32(
        _mm512_mullo_epi32(k, _mm512_set1_epi32(layout::LABEL_STATS)), _mm512_set1_epi32(stat));
    return _mm512_permutex2var_ps(lo, offset, hi);
  }
};

}  // namespace

float intensity_row_avx512(const uint8_t* labels, const float* label_stats, int K,
                           const BiasRows::Windows& bias, const float* line, int W, float* x) {
  const LabelStats stats(label_stats, K);
  __m512 top = _mm512_setzero_ps();
  for (int i = 0; i < W; i += 16) {
    const __mmask16 valid = low_lanes(W - i);
    const __m512 mean = stats.at(labels + i, valid, layout::LABEL_MEAN);
    // e^psi = 2^n e^f, n = round(psi / ln 2), f = psi - n ln 2 (ln 2 in two parts, as exp_f),
    // with psi clamped to exp_f's range.
    const __m512 p = _mm512_min_ps(_mm512_max_ps(bias_psi(bias, line, W, i, valid),
                                                 splat(-87.0f)), splat(88.0f));
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(p, splat(1.44269504088896341f)),
                                          NEAREST);
    const __m512 f = _mm512_fnmadd_ps(n, splat(-2.12194440e-4f),
                                      _mm512_fnmadd_ps(n, splat(0.693359375f), p));
    const __m512 v = _mm512_mul_ps(mean, _mm512_scalef_ps(exp_reduced(f), n));
    _mm512_mask_storeu_ps(x + i, valid, v);
    top = _mm512_mask_max_ps(top, valid, top, _mm512_abs_ps(v));
  }
  return _mm512_reduce_max_ps(top);
}

void label_lookup_avx512(const uint8_t* labels, const float* label_stats, int K, int W,
                         bool texture, float* mean, float* sd) {
  const LabelStats stats(label_stats, K);
  for (int i = 0; i < W; i += 16) {
    const __mmask16 valid = low_lanes(W - i);
    _mm512_mask_storeu_ps(mean + i, valid, stats.at(labels + i, valid, layout::LABEL_MEAN));
    if (texture)
      _mm512_mask_storeu_ps(sd + i, valid, stats.at(labels + i, valid, layout::LABEL_STD));
  }
}

void normalise_row_avx512(float* x, int W, float lo, float factor, float gamma) {
  const Log2Table& t = log2_table();
  const __m512 start_lo = _mm512_load_ps(t.start), start_hi = _mm512_load_ps(t.start + 16);
  __m512 c_lo[4], c_hi[4];
  for (int c = 0; c < 4; ++c) {
    c_lo[c] = _mm512_load_ps(t.coef[c]);
    c_hi[c] = _mm512_load_ps(t.coef[c] + 16);
  }
  const __m512 g = splat(gamma);
  for (int i = 0; i < W; i += 16) {
    const __mmask16 valid = low_lanes(W - i);
    const __m512 v = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(valid, x + i), splat(lo)),
                                   splat(factor));
    const __mmask16 positive = _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_GT_OQ);
    // v = m 2^e, m in [3/4, 3/2); m on interval j = trunc((m - 3/4) / w), d = m - s_j.
    __m512 m = _mm512_getmant_ps(v, _MM_MANT_NORM_1_2, _MM_MANT_SIGN_zero);
    __m512 e = _mm512_getexp_ps(v);
    const __mmask16 upper = _mm512_cmp_ps_mask(m, splat(1.5f), _CMP_GE_OQ);
    m = _mm512_mask_mul_ps(m, upper, m, splat(0.5f));
    e = _mm512_mask_add_ps(e, upper, e, splat(1.0f));
    // (The product may round up to 32 just below 3/2; a neighbour's cubic is as good there.)
    const __m512i j = _mm512_min_epi32(
        _mm512_cvttps_epi32(
            _mm512_fmadd_ps(m, splat(float(1.0 / WIDTH)), splat(-float(INTERVALS)))),
        _mm512_set1_epi32(INTERVALS - 1));
    const __m512 d = _mm512_sub_ps(m, _mm512_permutex2var_ps(start_lo, j, start_hi));
    __m512 log2m = _mm512_permutex2var_ps(c_lo[3], j, c_hi[3]);
    for (int c = 2; c >= 0; --c)
      log2m = _mm512_fmadd_ps(log2m, d, _mm512_permutex2var_ps(c_lo[c], j, c_hi[c]));
    // 2^y, y = gamma log2 v <= 0 (but for rounding), floored where the portable exp_f flushes (e^-87).
    const __m512 y = _mm512_max_ps(_mm512_mul_ps(g, _mm512_add_ps(e, log2m)), splat(-125.5f));
    const __m512 n = _mm512_roundscale_ps(y, NEAREST);
    const __m512 p = exp_reduced(_mm512_mul_ps(_mm512_sub_ps(y, n),
                                               splat(0.693147180559945309f)));
    // 0^gamma = 0 (and nothing from the garbage that v = 0 gave above); at most 1, as
    // normalise() (csrc/common/appearance.h).
    _mm512_mask_storeu_ps(x + i, valid,
                          _mm512_min_ps(_mm512_maskz_scalef_ps(positive, p, n), splat(1.0f)));
  }
}

RASD_AVX512_END
#else  // built without AVX-512 support: the portable loop always runs

float intensity_row_avx512(const uint8_t*, const float*, int, const BiasRows::Windows&,
                           const float*, int, float*) {
  return 0.0f;
}
void label_lookup_avx512(const uint8_t*, const float*, int, int, bool, float*, float*) {}
void normalise_row_avx512(float*, int, float, float, float) {}

#endif

}  // namespace cpu
}  // namespace rasd
