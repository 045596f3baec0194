// Branch-free float32 log, exp, pow and sin/cos of 2 pi u.
//
// Why not <cmath>: the host compiler vectorises these polynomials inside `omp simd` loops
// (libm calls would stay scalar), and the CUDA backend runs the very same arithmetic, so the
// noise and the gamma curve agree across backends to a few ulp. Accuracy is about 1-2 ulp on
// the ranges used here (Cephes-style minimax polynomials; the coefficients are the classic
// single-precision ones).
#pragma once

#include "defs.h"

namespace rasd {

RASD_HD uint32_t float_bits(float x) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(x);
#else
  return __builtin_bit_cast(uint32_t, x);  // no memory round trip: keeps loops vectorisable
#endif
}

RASD_HD float bits_float(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  return __builtin_bit_cast(float, u);
#endif
}

RASD_HD float round_even(float x) {
#if defined(__CUDA_ARCH__)
  return rintf(x);
#else
  return __builtin_rintf(x);
#endif
}

RASD_HD float floor_f(float x) {
#if defined(__CUDA_ARCH__)
  return floorf(x);
#else
  return __builtin_floorf(x);
#endif
}

RASD_HD float sqrt_f(float x) {
#if defined(__CUDA_ARCH__)
  return sqrtf(x);
#else
  return __builtin_sqrtf(x);
#endif
}

// |x| as the backends' max|x| reductions take it (-0 stays -0).
RASD_HD float abs_f(float x) { return x < 0.0f ? -x : x; }

// Natural log of a positive normal float. The mantissa is reduced to [sqrt(1/2), sqrt(2))
// so that the polynomial argument x = m - 1 is exact and small (good relative accuracy next
// to 1, which Box-Muller needs for uniforms close to 1).
RASD_HD float log_f(float v) {
  const uint32_t bits = float_bits(v);
  int e = int(bits >> 23) - 126;
  float m = bits_float((bits & 0x007fffffu) | 0x3f000000u);  // [0.5, 1)
  const bool small = m < 0.70710678f;
  e -= small ? 1 : 0;
  const float x = small ? (m + m) - 1.0f : m - 1.0f;
  const float z = x * x;
  float p = 7.0376836292e-2f;
  p = p * x - 1.1514610310e-1f;
  p = p * x + 1.1676998740e-1f;
  p = p * x - 1.2420140846e-1f;
  p = p * x + 1.4249322787e-1f;
  p = p * x - 1.6668057665e-1f;
  p = p * x + 2.0000714765e-1f;
  p = p * x - 2.4999993993e-1f;
  p = p * x + 3.3333331174e-1f;
  const float fe = float(e);
  float y = p * x * z;
  y += -2.12194440e-4f * fe;  // ln 2 split in a short high part and a correction
  y += -0.5f * z;
  return (x + y) + 0.693359375f * fe;
}

// e^v for v in float range; results below ~1e-38 flush to 2^-126 scale (never denormal).
RASD_HD float exp_f(float v) {
  const float x0 = clamp_to(v, -87.0f, 88.0f);
  const float n = round_even(x0 * 1.44269504088896341f);
  float x = x0 - n * 0.693359375f;
  x = x - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * x + 1.3981999507e-3f;
  p = p * x + 8.3334519073e-3f;
  p = p * x + 4.1665795894e-2f;
  p = p * x + 1.6666665459e-1f;
  p = p * x + 5.0000001201e-1f;
  const float y = p * (x * x) + x + 1.0f;
  return y * bits_float(uint32_t(int(n) + 127) << 23);
}

// v^g for v in [0, 1] and g > 0 (0^g = 0).
RASD_HD float pow_unit(float v, float g) {
  const float safe = v > 0.0f ? v : 1.0f;
  const float r = exp_f(g * log_f(safe));
  return v > 0.0f ? r : 0.0f;
}

// sin and cos of 2 pi u for any float u. Reducing in units of turns is exact (u - round(u)
// and quarter turns are exact in float), so only the final multiply by 2 pi rounds.
RASD_HD void sincos_2pi(float u, float& s, float& c) {
  const float t = u - round_even(u);          // [-1/2, 1/2]
  const float j = round_even(4.0f * t);       // quarter turns, -2..2
  const float x = (t - 0.25f * j) * 6.28318530717958648f;  // [-pi/4, pi/4]
  const float z = x * x;
  float ps = -1.9515295891e-4f;
  ps = ps * z + 8.3321608736e-3f;
  ps = ps * z - 1.6666654611e-1f;
  const float sx = ps * z * x + x;
  float pc = 2.443315711809948e-5f;
  pc = pc * z - 1.388731625493765e-3f;
  pc = pc * z + 4.166664568298827e-2f;
  const float cx = pc * z * z - 0.5f * z + 1.0f;
  const int q = int(j) & 3;                   // rotate by q quarter turns
  const float s_swap = (q & 1) ? cx : sx;
  const float c_swap = (q & 1) ? sx : cx;
  s = (q & 2) ? -s_swap : s_swap;
  c = ((q + 1) & 2) ? -c_swap : c_swap;
}

}  // namespace rasd
