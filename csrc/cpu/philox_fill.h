// philox_fill: Philox4x32-10 uniforms / normals (philox_fill.cpp; the AVX-512 normals in
// philox_avx512.cpp), and the ranges of a stream that the other ops draw their noise from.
#pragma once

#include <cstdint>

#include "../common/philox.h"
#include "cpu.h"

namespace rasd {
namespace cpu {

// out [batch, per_sample]: row b from the stream (seed, sample_index[b], stream), normals or
// uniforms.
void philox_fill(float* out, int64_t batch, int64_t per_sample, const int64_t* sample_index,
                 uint64_t seed, uint32_t stream, bool normal);

// out[i] = normal / uniform element e0 + i of a stream, i < n.
void normal_range(const PhiloxStream& s, uint64_t e0, int64_t n, float* out);
void uniform_range(const PhiloxStream& s, uint64_t e0, int64_t n, float* out);

// The normals of nb consecutive blocks from block `first`, in element order, hand-vectorised
// (philox_avx512.cpp); available when built with AVX-512 and avx512_enabled().
bool normals_avx512_available();
void normal_blocks_avx512(PhiloxStream s, uint32_t first, int nb, float* out);

}  // namespace cpu
}  // namespace rasd
