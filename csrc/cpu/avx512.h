// Small helpers shared by the hand-vectorised AVX-512 code of the CPU backend.
#pragma once

#include <immintrin.h>

// Per-vector helpers must inline into their loops: called, their vector arguments and results
// go through memory.
#define RASD_INLINE inline __attribute__((always_inline))

namespace rasd {
namespace cpu {

// Mask of the first `count` of 16 lanes (none for count <= 0, all for count >= 16).
inline __mmask16 low_lanes(int count) {
  return count >= 16 ? __mmask16(0xFFFF) : count <= 0 ? __mmask16(0) : __mmask16((1u << count) - 1);
}

}  // namespace cpu
}  // namespace rasd
