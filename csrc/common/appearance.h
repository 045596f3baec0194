// Per-voxel math of appearance (the oracle is rasd_kernels/reference/appearance.py), apart
// from the bias (bias_field.h), the blur taps (gaussian.h) and the noise itself (philox.h).
#pragma once

#include "bias_field.h"
#include "defs.h"
#include "layout.h"
#include "mathf.h"

namespace rasd {

// First float of a label's row (mean, texture std) in label_stats [K, 2]; labels >= K take
// the last row.
RASD_HD int label_stats_offset(int label, int K) {
  return layout::LABEL_STATS * min_of(label, K - 1);
}

// Noise element of voxel v of appearance a (streams TEXTURE_NOISE and IMAGE_NOISE): a V + v.
RASD_HD uint64_t voxel_noise_element(uint64_t app, uint64_t voxels, uint64_t voxel) {
  return app * voxels + voxel;
}

// The intensity of a voxel before bias and image noise: its label's mean plus the label's
// texture std sd times the voxel's texture noise n. Where sd is 0 the value is the mean itself
// (and no noise is drawn); the bias then gives apply_bias(value, psi) (bias_field.h).
RASD_HD float texture_value(float mean, float sd, float n) { return mean + sd * n; }

// x + noise_std M n: the image noise n of a voxel, scaled by max|x| = M of its appearance.
RASD_HD float noise_scale(float noise_std, float max_abs) { return noise_std * max_abs; }
RASD_HD float add_image_noise(float x, float scale, float n) { return x + scale * n; }

// ((x - lo) / (hi - lo + eps)) ^ gamma, with the factor 1 / (hi - lo + eps) rounded once from
// double (normalise_factor, per appearance).
RASD_HD float normalise_factor(float lo, float hi) {
  return float(1.0 / (double(hi) - double(lo) + layout::NORMALISE_EPS));
}

// The exact value is below 1 (hi - lo < hi - lo + eps); in float the quotient at x = hi, and
// pow_unit near 1, can round a few ulp above it, so the result is capped at 1.
RASD_HD float normalise(float x, float lo, float factor, float gamma) {
  return min_of(pow_unit((x - lo) * factor, gamma), 1.0f);
}

}  // namespace rasd
