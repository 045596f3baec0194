// Philox4x32-10 normals hand-vectorised for AVX-512: 16 blocks (64 normals) per step.
//
// Why intrinsics: the compiler vectorises the portable loop's 32x32 -> 64-bit products by
// widening every lane to 64 bits and narrowing back, about twice the instructions of the
// form below (two even/odd vpmuludq and two masked dword shuffles give the high and low
// halves in place). The arithmetic is the portable one (csrc/common/philox.h, mathf.h) op for
// op; only the float rounding of the fused multiply-adds may differ, as it does between the
// compiler's own vector clones.
// The kernel is compiled for AVX-512 (avx512.h) and only called when the CPU has it.
#include "philox_fill.h"
#include "avx512.h"  // last: see its header comment

namespace rasd {
namespace cpu {

bool normals_avx512_available() { return RASD_AVX512_KERNELS && avx512_enabled(); }

#if RASD_AVX512_KERNELS
RASD_AVX512_BEGIN

namespace {

RASD_INLINE __m512 splat(float v) { return _mm512_set1_ps(v); }

// High and low 32 bits of c * m for 16 lanes (m holds the multiplier in every 64-bit lane).
RASD_INLINE void mul_hi_lo(__m512i c, __m512i m, __m512i& hi, __m512i& lo) {
  const __m512i even = _mm512_mul_epu32(c, m);
  const __m512i odd = _mm512_mul_epu32(_mm512_srli_epi64(c, 32), m);
  hi = _mm512_mask_shuffle_epi32(odd, 0x5555, even, _MM_PERM_CDAB);
  lo = _mm512_mask_shuffle_epi32(even, 0xAAAA, odd, _MM_PERM_CDAB);
}

// The four output words of blocks first .. first + 15 of a stream, word i in w[i].
RASD_INLINE void philox16(const PhiloxStream& s, uint32_t first, __m512i w[4]) {
  const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  __m512i c0 = _mm512_add_epi32(_mm512_set1_epi32(int(first)), lane);
  __m512i c1 = _mm512_set1_epi32(int(s.stream));
  __m512i c2 = _mm512_set1_epi32(int(s.s_lo));
  __m512i c3 = _mm512_set1_epi32(int(s.s_hi));
  __m512i k0 = _mm512_set1_epi32(int(s.k0)), k1 = _mm512_set1_epi32(int(s.k1));
  const __m512i m0 = _mm512_set1_epi64(PHILOX_M0), m1 = _mm512_set1_epi64(PHILOX_M1);
  const __m512i w0 = _mm512_set1_epi32(int(PHILOX_W0)), w1 = _mm512_set1_epi32(int(PHILOX_W1));
  for (int round = 0; round < 10; ++round) {
    __m512i hi0, lo0, hi1, lo1;
    mul_hi_lo(c0, m0, hi0, lo0);
    mul_hi_lo(c2, m1, hi1, lo1);
    c0 = _mm512_ternarylogic_epi32(hi1, c1, k0, 0x96);  // three-way xor
    c2 = _mm512_ternarylogic_epi32(hi0, c3, k1, 0x96);
    c1 = lo1;
    c3 = lo0;
    k0 = _mm512_add_epi32(k0, w0);
    k1 = _mm512_add_epi32(k1, w1);
  }
  w[0] = c0;
  w[1] = c1;
  w[2] = c2;
  w[3] = c3;
}

// word_to_uniform.
RASD_INLINE __m512 uniform(__m512i w) {
  const __m512i odd = _mm512_add_epi32(_mm512_slli_epi32(_mm512_srli_epi32(w, 9), 1),
                                       _mm512_set1_epi32(1));
  return _mm512_mul_ps(_mm512_cvtepi32_ps(odd), splat(5.9604644775390625e-8f));
}

// log_f.
RASD_INLINE __m512 log16(__m512 v) {
  const __m512i bits = _mm512_castps_si512(v);
  __m512i e = _mm512_sub_epi32(_mm512_srli_epi32(bits, 23), _mm512_set1_epi32(126));
  const __m512 m = _mm512_castsi512_ps(_mm512_ternarylogic_epi32(
      bits, _mm512_set1_epi32(0x007fffff), _mm512_set1_epi32(0x3f000000), 0xEA));  // a&b | c
  const __mmask16 small = _mm512_cmp_ps_mask(m, splat(0.70710678f), _CMP_LT_OQ);
  e = _mm512_mask_sub_epi32(e, small, e, _mm512_set1_epi32(1));
  const __m512 x = _mm512_sub_ps(_mm512_mask_add_ps(m, small, m, m), splat(1.0f));
  const __m512 z = _mm512_mul_ps(x, x);
  __m512 p = splat(7.0376836292e-2f);
  p = _mm512_fmadd_ps(p, x, splat(-1.1514610310e-1f));
  p = _mm512_fmadd_ps(p, x, splat(1.1676998740e-1f));
  p = _mm512_fmadd_ps(p, x, splat(-1.2420140846e-1f));
  p = _mm512_fmadd_ps(p, x, splat(1.4249322787e-1f));
  p = _mm512_fmadd_ps(p, x, splat(-1.6668057665e-1f));
  p = _mm512_fmadd_ps(p, x, splat(2.0000714765e-1f));
  p = _mm512_fmadd_ps(p, x, splat(-2.4999993993e-1f));
  p = _mm512_fmadd_ps(p, x, splat(3.3333331174e-1f));
  const __m512 fe = _mm512_cvtepi32_ps(e);
  __m512 y = _mm512_mul_ps(_mm512_mul_ps(p, x), z);
  y = _mm512_fmadd_ps(splat(-2.12194440e-4f), fe, y);
  y = _mm512_fmadd_ps(splat(-0.5f), z, y);
  return _mm512_fmadd_ps(splat(0.693359375f), fe, _mm512_add_ps(x, y));
}

// sincos_2pi.
RASD_INLINE void sincos16(__m512 u, __m512& s, __m512& c) {
  constexpr int NEAREST = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
  const __m512 t = _mm512_sub_ps(u, _mm512_roundscale_ps(u, NEAREST));
  const __m512 j = _mm512_roundscale_ps(_mm512_mul_ps(splat(4.0f), t), NEAREST);
  const __m512 x = _mm512_mul_ps(_mm512_fnmadd_ps(splat(0.25f), j, t),
                                 splat(6.28318530717958648f));
  const __m512 z = _mm512_mul_ps(x, x);
  __m512 ps = splat(-1.9515295891e-4f);
  ps = _mm512_fmadd_ps(ps, z, splat(8.3321608736e-3f));
  ps = _mm512_fmadd_ps(ps, z, splat(-1.6666654611e-1f));
  const __m512 sx = _mm512_fmadd_ps(_mm512_mul_ps(ps, z), x, x);
  __m512 pc = splat(2.443315711809948e-5f);
  pc = _mm512_fmadd_ps(pc, z, splat(-1.388731625493765e-3f));
  pc = _mm512_fmadd_ps(pc, z, splat(4.166664568298827e-2f));
  const __m512 cx = _mm512_fmadd_ps(_mm512_mul_ps(pc, z), z,
                                    _mm512_fnmadd_ps(splat(0.5f), z, splat(1.0f)));
  // Rotate by q = j mod 4 quarter turns.
  const __m512i q = _mm512_cvtps_epi32(j);
  const __mmask16 swap = _mm512_test_epi32_mask(q, _mm512_set1_epi32(1));
  const __mmask16 s_neg = _mm512_test_epi32_mask(q, _mm512_set1_epi32(2));
  const __mmask16 c_neg =
      _mm512_test_epi32_mask(_mm512_add_epi32(q, _mm512_set1_epi32(1)), _mm512_set1_epi32(2));
  const __m512 s_swap = _mm512_mask_blend_ps(swap, sx, cx);
  const __m512 c_swap = _mm512_mask_blend_ps(swap, cx, sx);
  s = _mm512_mask_xor_ps(s_swap, s_neg, s_swap, splat(-0.0f));
  c = _mm512_mask_xor_ps(c_swap, c_neg, c_swap, splat(-0.0f));
}

// box_muller of 16 word pairs.
RASD_INLINE void box_muller16(__m512i a, __m512i b, __m512& even, __m512& odd) {
  const __m512 radius = _mm512_sqrt_ps(_mm512_mul_ps(splat(-2.0f), log16(uniform(a))));
  __m512 s, c;
  sincos16(uniform(b), s, c);
  even = _mm512_mul_ps(radius, c);
  odd = _mm512_mul_ps(radius, s);
}

// The low and the high 64-bit halves of each 128-bit lane pair of a and b.
RASD_INLINE __m512 lo_pd(__m512 a, __m512 b) {
  return _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(a), _mm512_castps_pd(b)));
}
RASD_INLINE __m512 hi_pd(__m512 a, __m512 b) {
  return _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(a), _mm512_castps_pd(b)));
}

// Element e of block i is n_e[i]: out[0..64) in element order, four registers.
RASD_INLINE void interleave(__m512 n0, __m512 n1, __m512 n2, __m512 n3, __m512 out[4]) {
  const __m512 a = _mm512_unpacklo_ps(n0, n1), b = _mm512_unpackhi_ps(n0, n1);
  const __m512 c = _mm512_unpacklo_ps(n2, n3), d = _mm512_unpackhi_ps(n2, n3);
  // Blocks (0, 4, 8, 12), (1, 5, 9, 13), (2, 6, ...), (3, 7, ...) by 128-bit lane.
  const __m512 e = lo_pd(a, c), f = hi_pd(a, c), g = lo_pd(b, d), h = hi_pd(b, d);
  const __m512 t0 = _mm512_shuffle_f32x4(e, f, 0x44), t1 = _mm512_shuffle_f32x4(g, h, 0x44);
  const __m512 t2 = _mm512_shuffle_f32x4(e, f, 0xEE), t3 = _mm512_shuffle_f32x4(g, h, 0xEE);
  out[0] = _mm512_shuffle_f32x4(t0, t1, 0x88);
  out[1] = _mm512_shuffle_f32x4(t0, t1, 0xDD);
  out[2] = _mm512_shuffle_f32x4(t2, t3, 0x88);
  out[3] = _mm512_shuffle_f32x4(t2, t3, 0xDD);
}

}  // namespace

void normal_blocks_avx512(PhiloxStream s, uint32_t first, int nb, float* out) {
  for (int b0 = 0; b0 < nb; b0 += 16) {
    __m512i w[4];
    philox16(s, first + uint32_t(b0), w);
    __m512 n[4], e[4];
    box_muller16(w[0], w[1], n[0], n[1]);
    box_muller16(w[2], w[3], n[2], n[3]);
    interleave(n[0], n[1], n[2], n[3], e);
    const int floats = 4 * (nb - b0 < 16 ? nb - b0 : 16);
    for (int r = 0; r < 4; ++r) {
      _mm512_mask_storeu_ps(out + 4 * b0 + 16 * r, low_lanes(floats - 16 * r), e[r]);
    }
  }
}

RASD_AVX512_END
#else  // built without AVX-512 support: the portable loop always runs

void normal_blocks_avx512(PhiloxStream, uint32_t, int, float*) {}

#endif

}  // namespace cpu
}  // namespace rasd
