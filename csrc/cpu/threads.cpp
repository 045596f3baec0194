// Thread accounting and small shared helpers of the CPU backend.
#include <pthread.h>

#include <atomic>
#include <stdexcept>

#include <omp.h>

#include "cpu.h"

namespace rasd {
namespace cpu {

namespace {
std::atomic<int> requested_threads{0};
std::atomic<bool> avx512_allowed{true};
std::atomic<bool> label_bounds_allowed{true};
thread_local int team_size = 0;
thread_local bool inside_loop = false;

// Set in the child of every fork: whether the parent had started OpenMP threads (ours or
// torch's, which share the runtime) cannot be known, so a forked child never runs an OpenMP
// region (threads.h).
std::atomic<bool> forked{false};
void mark_forked() { forked.store(true); }
[[maybe_unused]] const int fork_handler_registered = pthread_atfork(nullptr, nullptr, mark_forked);
}  // namespace

void set_num_threads(int n) { requested_threads.store(n > 0 ? n : 0); }

int num_threads() {
  const int n = requested_threads.load(std::memory_order_relaxed);
  return n > 0 ? n : omp_get_max_threads();
}

int last_team_size() { return team_size; }
void record_team_size(int n) { team_size = n; }

bool openmp_usable() { return !forked.load(std::memory_order_relaxed); }

bool in_parallel_loop() { return inside_loop || omp_in_parallel(); }

LoopScope::LoopScope() : outer_(inside_loop) { inside_loop = true; }
LoopScope::~LoopScope() { inside_loop = outer_; }

bool avx512_enabled() {
#if defined(__x86_64__) && defined(__GNUC__)
  static const bool supported =
      __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
  return supported && avx512_allowed.load(std::memory_order_relaxed);
#else
  return false;
#endif
}

void allow_avx512(bool allowed) { avx512_allowed.store(allowed); }

RASD_CPU_CLONES
void min_max(const float* RASD_RESTRICT x, int64_t n, float& lo, float& hi) {
  float a = lo, b = hi;
#pragma omp simd reduction(min : a) reduction(max : b)
  for (int64_t i = 0; i < n; ++i) {
    a = min_of(a, x[i]);
    b = max_of(b, x[i]);
  }
  lo = a;
  hi = b;
}

bool label_bounds_enabled() { return label_bounds_allowed.load(std::memory_order_relaxed); }
void allow_label_bounds(bool allowed) { label_bounds_allowed.store(allowed); }

Extent make_extent(const std::vector<int64_t>& shape) {
  if (shape.size() != 2 && shape.size() != 3)
    throw std::invalid_argument("spatial shape must be 2D or 3D");
  for (int64_t n : shape)
    if (n < 1 || n > (int64_t(1) << 24)) throw std::invalid_argument("bad spatial size");
  if (shape.size() == 2) return Extent{2, 1, int(shape[0]), int(shape[1])};
  return Extent{3, int(shape[0]), int(shape[1]), int(shape[2])};
}

}  // namespace cpu
}  // namespace rasd
