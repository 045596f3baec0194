// Gaussian blur taps: radius floor(3 sigma + 0.5), taps exp(-i^2 / (2 sigma^2)) normalised;
// radius 0 is the identity. Computed in double like the reference, so that the radius (a
// discontinuous function of sigma) is the same on every backend.
#pragma once

#include <cmath>

#include "defs.h"

namespace rasd {

constexpr int MAX_BLUR_RADIUS = 12;  // config.blur_sigma_max <= 4
constexpr int MAX_BLUR_TAPS = 2 * MAX_BLUR_RADIUS + 1;

// The radius, uncapped (callers reject radii above MAX_BLUR_RADIUS before taking taps).
RASD_HD int gaussian_radius(float sigma) {
  const double r = floor(3.0 * double(sigma) + 0.5);
  return r < 0.0 ? 0 : (r > 1e6 ? 1000000 : int(r));
}

// The unnormalised tap at offset i: exp(-i^2 / (2 sigma^2)).
RASD_HD double gaussian_weight(int i, float sigma) {
  const double z = double(i) / double(sigma);
  return exp(-0.5 * z * z);
}

// taps[0 .. 2r] for offsets -r .. r; returns r (the caller made sure r <= MAX_BLUR_RADIUS).
RASD_HD int gaussian_taps(float sigma, float taps[MAX_BLUR_TAPS]) {
  const int r = gaussian_radius(sigma);
  if (r == 0) {
    taps[0] = 1.0f;
    return 0;
  }
  double w[MAX_BLUR_TAPS];
  double sum = 0.0;
  for (int i = -r; i <= r; ++i) {
    w[i + r] = gaussian_weight(i, sigma);
    sum += w[i + r];
  }
  for (int i = 0; i <= 2 * r; ++i) taps[i] = float(w[i] / sum);
  return r;
}

}  // namespace rasd
