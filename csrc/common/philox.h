// Philox4x32-10 (Salmon et al., SC'11) and the maps of its words to U(0,1) and N(0,1).
// Layout (rasd_kernels/streams.py): key (seed & 0xffffffff, seed >> 32), counter
// (element >> 2, stream, sample & 0xffffffff, sample >> 32); element e takes word e & 3
// (uniform) or the Box-Muller pair of words (2j, 2j + 1), j = (e & 3) >> 1 (normal).
#pragma once

#include "defs.h"
#include "mathf.h"

namespace rasd {

constexpr uint32_t PHILOX_M0 = 0xD2511F53u;
constexpr uint32_t PHILOX_M1 = 0xCD9E8D57u;
constexpr uint32_t PHILOX_W0 = 0x9E3779B9u;
constexpr uint32_t PHILOX_W1 = 0xBB67AE85u;

// Ten rounds in place on the counter words c0..c3.
RASD_HD void philox4x32_10(uint32_t& c0, uint32_t& c1, uint32_t& c2, uint32_t& c3,
                           uint32_t k0, uint32_t k1) {
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
  for (int round = 0; round < 10; ++round) {
    const uint64_t p0 = uint64_t(PHILOX_M0) * c0;
    const uint64_t p1 = uint64_t(PHILOX_M1) * c2;
    const uint32_t n0 = uint32_t(p1 >> 32) ^ c1 ^ k0;
    const uint32_t n2 = uint32_t(p0 >> 32) ^ c3 ^ k1;
    c1 = uint32_t(p1);
    c3 = uint32_t(p0);
    c0 = n0;
    c2 = n2;
    k0 += PHILOX_W0;
    k1 += PHILOX_W1;
  }
}

// The key and the constant counter words of one (seed, sample, stream).
struct PhiloxStream {
  uint32_t k0, k1, stream, s_lo, s_hi;
};

RASD_HD PhiloxStream philox_stream(uint64_t seed, uint64_t sample, uint32_t stream) {
  return PhiloxStream{uint32_t(seed), uint32_t(seed >> 32), stream, uint32_t(sample),
                      uint32_t(sample >> 32)};
}

// The four words of block `block` (elements 4 block .. 4 block + 3).
RASD_HD void philox_block(const PhiloxStream& s, uint32_t block, uint32_t r[4]) {
  uint32_t c0 = block, c1 = s.stream, c2 = s.s_lo, c3 = s.s_hi;
  philox4x32_10(c0, c1, c2, c3, s.k0, s.k1);
  r[0] = c0;
  r[1] = c1;
  r[2] = c2;
  r[3] = c3;
}

// ((w >> 9) * 2 + 1) * 2^-24: exact in float32, strictly inside (0, 1).
RASD_HD float word_to_uniform(uint32_t w) {
  return float(int32_t((w >> 9) * 2u + 1u)) * 5.9604644775390625e-8f;
}

// Box-Muller on one pair of words: (radius cos, radius sin) of elements (2j, 2j + 1).
RASD_HD void box_muller(uint32_t a, uint32_t b, float& even, float& odd) {
  const float radius = sqrt_f(-2.0f * log_f(word_to_uniform(a)));
  float s, c;
  sincos_2pi(word_to_uniform(b), s, c);
  even = radius * c;
  odd = radius * s;
}

// The four uniforms / normals of one block's words r.
RASD_HD void uniforms_of_words(const uint32_t r[4], float out[4]) {
  for (int i = 0; i < 4; ++i) out[i] = word_to_uniform(r[i]);
}

RASD_HD void normals_of_words(const uint32_t r[4], float out[4]) {
  box_muller(r[0], r[1], out[0], out[1]);
  box_muller(r[2], r[3], out[2], out[3]);
}

// All four normals of one block.
RASD_HD void normal_block(const PhiloxStream& s, uint32_t block, float out[4]) {
  uint32_t r[4];
  philox_block(s, block, r);
  normals_of_words(r, out);
}

// Single elements (scattered reads such as per-voxel noise where only some voxels need it).
RASD_HD float uniform_element(const PhiloxStream& s, uint64_t e) {
  uint32_t r[4];
  philox_block(s, uint32_t(e >> 2), r);
  return word_to_uniform(r[e & 3]);
}

// Only the Box-Muller pair holding e is computed (half of normal_block's work).
RASD_HD float normal_element(const PhiloxStream& s, uint64_t e) {
  uint32_t r[4];
  philox_block(s, uint32_t(e >> 2), r);
  const bool second = (e & 2u) != 0u;
  float even, odd;
  box_muller(second ? r[2] : r[0], second ? r[3] : r[1], even, odd);
  return (e & 1u) ? odd : even;
}

}  // namespace rasd
