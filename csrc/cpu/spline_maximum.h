// spline_maximum: the largest value of each bias spline over the image (spline_maximum.cpp).
#pragma once

#include <cstdint>
#include <vector>

#include "cpu.h"

namespace rasd {
namespace cpu {

// out[i] = the largest value of lattice i's bias spline over per_spacing (n - 3) + 1 points
// per axis spanning the image (or a quarter of its largest magnitude if that is larger), for
// `count` lattices [*nodes] with scalars (spacing, offset per axis) every scalar_stride floats.
void spline_maximum(const float* coef, const float* scalars, int64_t count, int scalar_stride,
                    const Extent& ext, const std::vector<int>& nodes, int per_spacing,
                    float* out);

}  // namespace cpu
}  // namespace rasd
