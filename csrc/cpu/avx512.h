// Small helpers shared by the hand-vectorised AVX-512 code of the CPU backend, and the switch
// that compiles that code for AVX-512.
//
// Include this header after every other one. A file's AVX-512 code sits between
// RASD_AVX512_BEGIN and RASD_AVX512_END (GCC's target pragma), so that the code compiled for
// AVX-512 is exactly the code written there. Compiling a whole file with -mavx512f instead
// also compiles the inline functions and template instances it uses (std::vector, the header
// helpers) for AVX-512; the linker keeps one copy of each for the whole module, and a CPU
// without AVX-512 then fails with an illegal instruction in code that never asked for it.
// What is outside the region (the dispatch predicates, the headers) stays baseline x86-64.
#pragma once

#include <immintrin.h>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define RASD_AVX512_KERNELS 1
#define RASD_AVX512_BEGIN \
  _Pragma("GCC push_options") _Pragma("GCC target(\"avx512f,avx512bw,avx512dq,avx512vl,fma,bmi2\")")
#define RASD_AVX512_END _Pragma("GCC pop_options")
#else  // other compilers and targets build the portable kernels only
#define RASD_AVX512_KERNELS 0
#endif

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
