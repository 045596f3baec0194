// The CPU backend: what every kernel file shares, and where the rest is declared.
//
// Tensors arrive as raw pointers to contiguous memory (the bindings never see torch), sizes
// as ints. 2D data is handled as 3D with a single slice (D = 1).
//
// Each op's entry point (bound in module.cpp) and the parts other files use sit with the op:
//   philox_fill.h     the op, and the Philox ranges every op draws its noise from
//   gmm_shapes.h      the op, and the internals of its portable and AVX-512 kernels
//   bias_field.h      the op, and BiasRows: the bias spline row by row (appearance uses it too)
//   spline_maximum.h  the op
//   appearance.h      the op, and its AVX-512 rows
// Parallel loops are in threads.h; what the hand-written AVX-512 files share in avx512.h.
#pragma once

#include <cstdint>
#include <vector>

#include "../common/defs.h"
#include "threads.h"

// Hot loops are compiled for AVX-512 and AVX2 as well as the baseline and picked at load time
// (ifunc), so one wheel runs at full width on every x86-64 machine. Other targets build the
// plain version.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(RASD_NO_CLONES)
#define RASD_CPU_CLONES \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define RASD_CPU_CLONES
#endif

namespace rasd {
namespace cpu {

// Spatial extent; 2D images have d == 2 and D == 1.
struct Extent {
  int d;
  int D, H, W;
  int64_t voxels() const { return int64_t(D) * H * W; }
  int64_t rows() const { return int64_t(D) * H; }
};

Extent make_extent(const std::vector<int64_t>& shape);

// ---- switches and small helpers (threads.cpp) ---------------------------------------

// Whether the hand-vectorised AVX-512 kernels may run: this CPU has the subsets they use
// (F, BW, DQ, VL) and allow_avx512(false) has not been called (the tests compare them with
// the portable loops that run everywhere else).
bool avx512_enabled();
void allow_avx512(bool allowed);

// lo = min(lo, x[i]), hi = max(hi, x[i]) over x[0 .. n), vectorised (threads.cpp).
void min_max(const float* RASD_RESTRICT x, int64_t n, float& lo, float& hi);

// Whether the AVX-512 label kernel may skip labels by their bounds where it would (default
// true; the tests compare both ways, which must give the same labels bit for bit).
bool label_bounds_enabled();
void allow_label_bounds(bool allowed);

}  // namespace cpu
}  // namespace rasd
