// appearance: labels -> image: intensities, texture, bias, noise, blur, min-max, gamma
// (appearance.cpp, whose header lists the passes; the AVX-512 rows in appearance_avx512.cpp).
#pragma once

#include <cstdint>
#include <vector>

#include "bias_field.h"
#include "cpu.h"

namespace rasd {
namespace cpu {

void appearance(float* image, const uint8_t* labels, const float* label_stats,
                const float* bias_coef, const float* scalars, float* stats,
                const int64_t* sample_index, uint64_t seed, int64_t batch, int apps,
                int num_labels, const Extent& ext, const std::vector<int>& bias_nodes);

// Rows of appearance hand-vectorised (appearance_avx512.cpp), available when built with
// AVX-512 and avx512_enabled(). Pass 1 without texture, K <= 16 and windowed bias taps:
// x = mean[label] e^psi from the labels, label_stats [K, 2] and the row's bias line, returning
// max|x|; pass 5: the gamma curve x = ((x - lo) factor)^gamma. Its part: the mean (and
// texture std) of each voxel's label (K <= 16).
bool appearance_avx512_available();
float intensity_row_avx512(const uint8_t* labels, const float* label_stats, int K,
                           const BiasRows::Windows& bias, const float* line, int W, float* x);
void normalise_row_avx512(float* x, int W, float lo, float factor, float gamma);
void label_lookup_avx512(const uint8_t* labels, const float* label_stats, int K, int W,
                         bool texture, float* mean, float* sd);

}  // namespace cpu
}  // namespace rasd
