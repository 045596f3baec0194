// The launcher of the CPU emulation (see emulate.h): runs a kernel over its grid with one
// std::thread per thread of a block. C interface for ctypes.
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "../launch.h"

namespace rasd_emu {

thread_local dim3 thread_index;
thread_local dim3 block_index;
dim3 block_dim, grid_dim;

namespace {

// A reusable barrier of the block's threads.
class Barrier {
 public:
  void reset(unsigned count) {
    count_ = count;
    waiting_ = 0;
  }
  void wait() {
    std::unique_lock<std::mutex> lock(mutex_);
    const unsigned long long generation = generation_;
    if (++waiting_ == count_) {
      waiting_ = 0;
      ++generation_;
      cv_.notify_all();
      return;
    }
    if (!cv_.wait_for(lock, std::chrono::seconds(60),
                      [&] { return generation_ != generation; })) {
      std::fprintf(stderr, "rasd_emu: __syncthreads() not reached by every thread of block "
                           "(%u, %u, %u) within 60 s\n", block_index.x, block_index.y,
                   block_index.z);
      std::abort();
    }
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  unsigned count_ = 1, waiting_ = 0;
  unsigned long long generation_ = 0;
};

Barrier barrier;
std::vector<float> shared_memory;
size_t shared_floats = 0;
constexpr size_t GUARD_FLOATS = 64;
constexpr uint32_t GUARD_BITS = 0x7f8abcdeu;  // a NaN no kernel writes

void poison_shared() {
  const uint32_t nan = 0x7fc00000u;
  for (size_t i = 0; i < shared_floats; ++i) std::memcpy(&shared_memory[i], &nan, 4);
  for (size_t i = 0; i < GUARD_FLOATS; ++i)
    std::memcpy(&shared_memory[shared_floats + i], &GUARD_BITS, 4);
}

bool guard_intact() {
  for (size_t i = 0; i < GUARD_FLOATS; ++i) {
    uint32_t bits;
    std::memcpy(&bits, &shared_memory[shared_floats + i], 4);
    if (bits != GUARD_BITS) return false;
  }
  return true;
}

const rasd::cuda::KernelEntry* find(const char* name) {
  for (const rasd::cuda::KernelList& list :
       {rasd::cuda::philox_fill_kernels(), rasd::cuda::gmm_shapes_kernels(),
        rasd::cuda::bias_field_kernels(), rasd::cuda::appearance_kernels()})
    for (int i = 0; i < list.count; ++i)
      if (std::string(list.entries[i].name) == name) return &list.entries[i];
  return nullptr;
}

std::string last_error;

}  // namespace

void sync_threads() { barrier.wait(); }
float* dynamic_shared() { return shared_memory.data(); }

}  // namespace rasd_emu

// Runs kernel `name` to completion. Returns null, or a message (valid until the next call).
extern "C" const char* rasd_emu_launch(const char* name, const unsigned* grid,
                                       const unsigned* block, size_t shared_bytes,
                                       const void* args, const size_t* offsets, int count) {
  using namespace rasd_emu;
  const rasd::cuda::KernelEntry* k = find(name);
  if (k == nullptr) return (last_error = std::string("no kernel named ") + name).c_str();
  const unsigned threads = block[0] * block[1] * block[2];
  if (threads == 0 || threads > 1024) return (last_error = "bad block size").c_str();
  grid_dim = dim3{grid[0], grid[1], grid[2]};
  block_dim = dim3{block[0], block[1], block[2]};
  shared_floats = (shared_bytes + 3) / 4;
  shared_memory.assign(shared_floats + GUARD_FLOATS, 0.0f);
  std::vector<void*> pointers;
  for (int i = 0; i < count; ++i)
    pointers.push_back(const_cast<char*>(static_cast<const char*>(args)) + offsets[i]);
  barrier.reset(threads);
  bool overflow = false;
  auto body = [&](unsigned t) {
    thread_index = dim3{t % block[0], (t / block[0]) % block[1], t / (block[0] * block[1])};
    for (unsigned bz = 0; bz < grid[2]; ++bz)
      for (unsigned by = 0; by < grid[1]; ++by)
        for (unsigned bx = 0; bx < grid[0]; ++bx) {
          block_index = dim3{bx, by, bz};
          if (t == 0) poison_shared();
          barrier.wait();  // the block starts with poisoned shared memory
          k->call(k->kernel, pointers.data());
          barrier.wait();  // every thread is done with the block
          if (t == 0 && !guard_intact()) overflow = true;
        }
  };
  std::vector<std::thread> pool;
  for (unsigned t = 0; t < threads; ++t) pool.emplace_back(body, t);
  for (std::thread& th : pool) th.join();
  if (overflow)
    return (last_error = std::string(name) + ": dynamic shared memory overflow").c_str();
  return nullptr;
}
