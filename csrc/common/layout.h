// Packed per-sample parameter layouts: the C++ mirror of rasd_kernels.params.
#pragma once

#include "defs.h"

namespace rasd {
namespace layout {

// Appearance scalars [B, A, 3d + 2] (params.scalar_slices): spacing and offset of the bias
// spline come first so that the bias_field op can read the same rows.
RASD_HD int bias_spacing(int d, int axis) { (void)d; return axis; }
RASD_HD int bias_offset(int d, int axis) { return d + axis; }
RASD_HD int noise_std(int d) { return 2 * d; }
RASD_HD int blur_sigma(int d, int axis) { return 2 * d + 1 + axis; }
RASD_HD int gamma(int d) { return 3 * d + 1; }
// Acquisition (rasd_kernels.layout): per axis the resampling step and phase in voxels
// (step 1 and phase 0: the axis is not resampled), then 1 where label 0 is cleared.
RASD_HD int resample_step(int d, int axis) { return 3 * d + 2 + axis; }
RASD_HD int resample_offset(int d, int axis) { return 4 * d + 2 + axis; }
RASD_HD int clear_background(int d) { return 5 * d + 2; }
RASD_HD int scalar_count(int d) { return 5 * d + 3; }

// Blob parameters [B, K, d + d(d+1)/2 + 1] (params.blob_param_count): centre (d), the upper
// triangle of the precision matrix row by row, then the log weight.
RASD_HD int blob_param_count(int d) { return d + d * (d + 1) / 2 + 1; }
RASD_HD int blob_precision(int d) { return d; }
RASD_HD int blob_log_weight(int d) { return d + d * (d + 1) / 2; }

// Label statistics [B, A, K, 2]: mean intensity, texture standard deviation.
constexpr int LABEL_MEAN = 0;
constexpr int LABEL_STD = 1;
constexpr int LABEL_STATS = 2;

// Appearance stats [B, A, 4]: max|x| before noise, min and max after blur, unused.
constexpr int STAT_MAX_ABS = 0;
constexpr int STAT_LO = 1;
constexpr int STAT_HI = 2;
constexpr int STAT_COUNT = 4;

constexpr double NORMALISE_EPS = 1e-6;

}  // namespace layout
}  // namespace rasd
