// Threads of the CPU backend: every parallel loop of every op is a parallel_for.
//
// Three rules hold for each loop:
//  - no C++ exception leaves a parallel region (it would terminate the process): the first
//    one a body throws is kept and rethrown on the calling thread once the loop is over, and
//    every thread's scratch is allocated before the region starts (a failed allocation raises
//    MemoryError in Python instead of aborting);
//  - results never depend on the partition (every unit writes its own outputs);
//  - a process forked after GNU OpenMP started its threads cannot run a parallel region (its
//    threads are not copied by fork, and the next region waits for them for ever): in a
//    forked child the loops run on std::threads of their own.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <exception>
#include <memory>
#include <system_error>
#include <thread>
#include <vector>

#include <omp.h>

namespace rasd {
namespace cpu {

// Threads of every parallel loop: set_num_threads(n) if n > 0 was called, else OpenMP's
// default. Kept here rather than in OpenMP's per-thread state so that it holds for calls
// from any Python thread.
void set_num_threads(int n);
int num_threads();

// The number of threads that the calling thread's most recent parallel loop ran on (the
// tests check that the kernels run in parallel: without OpenMP a loop silently runs on one).
int last_team_size();
void record_team_size(int n);

// False in a process forked from one that may have started OpenMP threads (see above).
bool openmp_usable();

// Whether the calling thread is inside a parallel loop already (a nested parallel_for then
// runs serially on it).
bool in_parallel_loop();

// Keeps the first exception thrown by any body; rethrow() raises it on the calling thread.
class FirstError {
 public:
  template <class F>
  void run(F&& f) noexcept {
    if (failed_.load(std::memory_order_relaxed)) return;  // skip the rest of the work
    try {
      f();
    } catch (...) {
      bool expected = false;
      if (failed_.compare_exchange_strong(expected, true)) error_ = std::current_exception();
    }
  }
  void rethrow() const {
    if (failed_.load()) std::rethrow_exception(error_);
  }

 private:
  std::atomic<bool> failed_{false};
  std::exception_ptr error_;
};

// Zeroed scratch of `floats` per thread, allocated before any thread starts and touched
// first by the thread that uses it.
class ThreadScratch {
 public:
  ThreadScratch(int threads, size_t floats)
      : stride_((floats + 15) / 16 * 16),
        data_(stride_ > 0 ? new float[size_t(threads) * stride_] : nullptr),
        floats_(floats) {}
  float* claim(int thread) const {
    float* mine = data_.get() + size_t(thread) * stride_;
    std::fill(mine, mine + floats_, 0.0f);
    return mine;
  }

 private:
  size_t stride_;
  std::unique_ptr<float[]> data_;
  size_t floats_;
};

// Marks the calling std::thread as inside a loop while it exists.
class LoopScope {
 public:
  LoopScope();
  ~LoopScope();
  LoopScope(const LoopScope&) = delete;
  LoopScope& operator=(const LoopScope&) = delete;

 private:
  bool outer_;
};

// work(t) on `threads` threads (t = 0 on the calling thread); fewer if the system refuses to
// start more. Returns how many ran.
template <class Work>
int run_on_std_threads(int threads, Work&& work) {
  std::vector<std::thread> pool;
  pool.reserve(size_t(threads - 1));
  for (int t = 1; t < threads; ++t) {
    try {
      pool.emplace_back([&work, t] {
        LoopScope scope;
        work(t);
      });
    } catch (const std::system_error&) {
      break;  // the others take its share: units are handed out dynamically
    }
  }
  {
    LoopScope scope;
    work(0);
  }
  for (std::thread& th : pool) th.join();
  return int(pool.size()) + 1;
}

// body(i, scratch) for i < count over the threads. Units are handed out as the threads ask,
// in chunks of 1/CHUNKS_PER_THREAD of a thread's share (dynamic): a static split leaves one
// thread idle at the end whenever the samples of its half cost more (the label kernel's cost
// varies with the anatomy), and so does a guided one, whose first chunk is half of all units;
// chunks keep the handing out cheap and a thread's units adjacent in memory.
constexpr int CHUNKS_PER_THREAD = 64;

template <class Body>
void parallel_for(int64_t count, size_t scratch_floats, Body&& body) {
  FirstError error;
  if (in_parallel_loop()) {  // a kernel that hands whole samples to the threads
    ThreadScratch scratch(1, scratch_floats);
    float* mine = scratch.claim(0);
    for (int64_t i = 0; i < count; ++i) error.run([&] { body(i, mine); });
    error.rethrow();
    return;
  }
  const int threads = num_threads();
  const int64_t chunk = std::max<int64_t>(1, count / (int64_t(CHUNKS_PER_THREAD) * threads));
  const ThreadScratch scratch(threads, scratch_floats);
  if (openmp_usable()) {
#pragma omp parallel num_threads(threads)
    {
      float* mine = scratch.claim(omp_get_thread_num());
      if (omp_get_thread_num() == 0) record_team_size(omp_get_num_threads());
#pragma omp for schedule(dynamic, chunk)
      for (int64_t i = 0; i < count; ++i) error.run([&] { body(i, mine); });
    }
  } else {
    std::atomic<int64_t> next{0};
    const int ran = run_on_std_threads(threads, [&](int t) {
      float* mine = scratch.claim(t);
      for (int64_t first; (first = next.fetch_add(chunk)) < count;) {
        const int64_t last = std::min(count, first + chunk);
        for (int64_t i = first; i < last; ++i) error.run([&] { body(i, mine); });
      }
    });
    record_team_size(ran);
  }
  error.rethrow();
}

}  // namespace cpu
}  // namespace rasd
