// Philox stream ids: the C++ mirror of rasd_kernels/streams.py (a test checks that they agree).
// Every random number is philox(seed, global sample index, stream, element).
#pragma once

#include <cstdint>

namespace rasd {
namespace streams {

constexpr uint32_t ANATOMY_PARAMS = 1;     // uniform, per sample
constexpr uint32_t FIELD_GRIDS = 2;        // normal, [K, sum(n^d)]
constexpr uint32_t WARP_GRIDS = 3;         // normal, [Kw, d, sum(n^d)]
constexpr uint32_t APPEARANCE_PARAMS = 4;  // uniform, [A, n_params]
constexpr uint32_t BIAS_GRIDS = 5;         // normal, [A, prod(bias nodes)]
constexpr uint32_t TEXTURE_NOISE = 6;      // normal, [A, voxels] texture noise n1
constexpr uint32_t IMAGE_NOISE = 7;        // normal, [A, voxels] additive noise n2
constexpr uint32_t ACQUISITION_PARAMS = 8;  // uniform, [A, n_acquisition]

// A 32-bit block counter of 4 elements addresses the elements of one (sample, stream).
constexpr uint64_t MAX_ELEMENTS_PER_STREAM = uint64_t(1) << 34;

}  // namespace streams
}  // namespace rasd
