// The rows of the bias_field op hand-vectorised for AVX-512: a row's psi from its bias line,
// 16 columns per step (bias_psi, bias_field_avx512.h, which appearance's intensity rows share).
// The rows are compiled for AVX-512 (avx512.h) and only called when the CPU has it.
#include "bias_field.h"
#include "bias_field_avx512.h"  // last: it includes avx512.h

namespace rasd {
namespace cpu {

bool bias_avx512_available() { return RASD_AVX512_KERNELS && avx512_enabled(); }

#if RASD_AVX512_KERNELS
RASD_AVX512_BEGIN

void bias_row_avx512(const BiasRows::Windows& bias, const float* line, int W, float* out) {
  for (int i = 0; i < W; i += 16) {
    const __mmask16 valid = low_lanes(W - i);
    _mm512_mask_storeu_ps(out + i, valid, bias_psi(bias, line, W, i, valid));
  }
}

RASD_AVX512_END
#else  // built without AVX-512 support: the portable rows always run

void bias_row_avx512(const BiasRows::Windows&, const float*, int, float*) {}

#endif

}  // namespace cpu
}  // namespace rasd
