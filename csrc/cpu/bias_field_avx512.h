// The bias psi of 16 columns of a row, hand-vectorised for AVX-512, from the row's bias line:
// each column's four taps are permutes of a window of 16 nodes of the line
// (BiasRows::Windows). Inlined into the bias_field op's rows (bias_field_avx512.cpp) and into
// appearance's intensity rows (appearance_avx512.cpp).
//
// Include this header after every other one (it includes avx512.h, which must come last).
#pragma once

#include <cstddef>

#include "bias_field.h"
#include "avx512.h"  // last: see its header comment

namespace rasd {
namespace cpu {

#if RASD_AVX512_KERNELS
RASD_AVX512_BEGIN

namespace {

// psi of columns i .. i + 15 from the row's bias line: the four taps of each column from the
// 16-node window of its group, in bias_taps' order, fused as the compiler contracts it.
RASD_INLINE __m512 bias_psi(const BiasRows::Windows& bias, const float* line, int W, int i,
                            __mmask16 valid) {
  const int start = bias.start[i / 16];
  const __m512 window = _mm512_maskz_loadu_ps(low_lanes(bias.nx - start), line + start);
  __m512 psi = _mm512_setzero_ps();
  for (int j = 0; j < 4; ++j) {
    const __m512 w = _mm512_maskz_loadu_ps(valid, bias.taps + size_t(j) * W + i);
    const __m512 c = _mm512_permutexvar_ps(
        _mm512_maskz_loadu_epi32(valid, bias.node + size_t(j) * W + i), window);
    psi = j == 0 ? _mm512_mul_ps(w, c) : _mm512_fmadd_ps(w, c, psi);
  }
  return psi;
}

}  // namespace

RASD_AVX512_END
#endif

}  // namespace cpu
}  // namespace rasd
