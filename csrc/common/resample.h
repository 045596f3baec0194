// Acquisition resampling along one axis (thick slices, low resolution): the oracle is
// resample_axis in rasd_kernels/reference/appearance.py. The axis of n voxels is sampled
// every `step` voxels from `offset` (a sample between two voxels reads them linearly), and
// every voxel is interpolated back linearly between the two samples around it (beyond the
// first and the last sample: that sample's value). So each output voxel is a weighted sum
// of four input voxels of its line, computed here in double (the sample count and the
// brackets are then the reference's, whatever the backend).
#pragma once

#include "defs.h"

namespace rasd {

// An axis is resampled unless its step is 1 and its offset 0 (layout::resample_step).
RASD_HD bool resampled(float step, float offset) { return step != 1.0f || offset != 0.0f; }

struct ResampleTaps {
  int index[4];
  float weight[4];
};

RASD_HD ResampleTaps resample_taps(int n, float step_f, float offset_f, int i) {
  const double step = double(step_f);
  const double offset = min_of(double(offset_f), double(n - 1));
  const int count = int((double(n - 1) - offset) / step) + 1;  // samples on the axis
  const double u = clamp_to((double(i) - offset) / step, 0.0, double(count - 1));
  const int j = min_of(int(u), max_of(count - 2, 0));
  const double f = count > 1 ? u - double(j) : 0.0;
  ResampleTaps t;
  for (int e = 0; e < 2; ++e) {
    const double at = offset + double(min_of(j + e, count - 1)) * step;
    const int m = min_of(int(at), n - 1);
    const double g = at - double(m);
    const double share = e == 0 ? 1.0 - f : f;
    t.index[2 * e] = m;
    t.weight[2 * e] = float(share * (1.0 - g));
    t.index[2 * e + 1] = min_of(m + 1, n - 1);
    t.weight[2 * e + 1] = float(share * g);
  }
  return t;
}

}  // namespace rasd
