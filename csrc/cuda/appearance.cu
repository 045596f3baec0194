// appearance: labels -> image, per (sample b, appearance a) = pair p = b * A + a, in passes
// launched one after the other on one stream (rasd_kernels/backends/cuda.py):
//   init       stats[p] = (0, +inf, -inf, 0)
//   max_abs    x = mean[y] (+ std[y] n1), x *= exp(psi); stats[p][0] = max|x| (atomics)
//   noise_w    x again (not stored by max_abs: recomputing it from the labels costs less
//              than a write and a read of the image), x += noise_std max|x| n2, blur along W
//              through a tile of whole rows in shared memory, store
//   resample_axis  the acquisition resampling of an axis (thick slices, low resolution), in
//              place, after that axis's blur: W after noise_w, H after its blur, D after its
//   blur_axis  blur along H, then D (3D), in place: a block loads whole lines, syncs, writes
//   normalise  x = ((x - lo) / (hi - lo + 1e-6)) ^ gamma; 0 where the label is 0 if the
//              appearance clears its background
// min / max are taken (atomics on stats[p][1:3]) by the last pass that changes the image
// (a blur of radius > 0 or a resampling), or by noise_w when no other does, as in
// csrc/cpu/appearance.cpp; a pass that changes nothing is skipped. The per-voxel math is the CPU backend's, from the same functions
// (csrc/common/appearance.h, bias_field.h, gaussian.h, philox.h).
#include "common/appearance.h"
#include "common/bias_field.h"
#include "common/gaussian.h"
#include "common/layout.h"
#include "common/mathf.h"
#include "common/philox.h"
#include "common/resample.h"
#include "common/streams.h"
#include "cuda/device.cuh"

namespace rasd {
namespace cuda {

// Intensity of one voxel before noise: label statistics ls [K][2] (mean, texture std). The
// texture noise is drawn only where the std is not 0.
__device__ __forceinline__ float intensity(const float* ls, int K, int label,
                                           const PhiloxStream& texture,
                                           unsigned long long element, float psi) {
  const int k = label_stats_offset(label, K);
  const float mean = ls[k + layout::LABEL_MEAN];
  const float sd = ls[k + layout::LABEL_STD];
  const float v = sd != 0.0f ? texture_value(mean, sd, normal_element(texture, element)) : mean;
  return apply_bias(v, psi);
}

// The blur of one axis of one pair, set up by thread 0 in shared memory. Radii above
// MAX_BLUR_RADIUS (sigma > 4, which the config never draws) take their taps on the fly.
struct Blur {
  int radius;
  float sigma;
  double sum;  // sum of the unnormalised taps (large radii only)
  float taps[MAX_BLUR_TAPS];
};

__device__ __forceinline__ void blur_setup(Blur& b, float sigma) {
  b.sigma = sigma;
  b.radius = gaussian_radius(sigma);
  if (b.radius <= MAX_BLUR_RADIUS) {
    gaussian_taps(sigma, b.taps);
    return;
  }
  b.sum = 0.0;
  for (int i = -b.radius; i <= b.radius; ++i) b.sum += gaussian_weight(i, sigma);
}

__device__ __forceinline__ float blur_tap(const Blur& b, int j) {
  if (b.radius <= MAX_BLUR_RADIUS) return b.taps[j];
  return float(gaussian_weight(j - b.radius, b.sigma) / b.sum);
}

// out = sum_j taps[j] line[clamp(i + j - r)]: one output of an edge-replicated convolution
// of a line held in shared memory with element stride `stride`.
__device__ __forceinline__ float convolve_at(const Blur& b, const float* line, int length,
                                             int stride, int i) {
  float acc = 0.0f;
  for (int j = 0; j <= 2 * b.radius; ++j)
    acc += blur_tap(b, j) * line[clamp_to(i + j - b.radius, 0, length - 1) * stride];
  return acc;
}

__device__ __forceinline__ bool axis_resampled(const float* scalars, int d, int axis) {
  return resampled(scalars[layout::resample_step(d, axis)],
                   scalars[layout::resample_offset(d, axis)]);
}

// Does the pass of some axis after `axis` (those before it in scalar order D, H, W) change
// the image (a blur of radius > 0 or a resampling)?
__device__ __forceinline__ bool later_axes_active(const float* scalars, int d, int axis) {
  for (int a = 0; a < axis; ++a)
    if (gaussian_radius(scalars[layout::blur_sigma(d, a)]) > 0 || axis_resampled(scalars, d, a))
      return true;
  return false;
}

// Does the blur of `axis` see the final values (no resampling of its own after it, nothing
// done by a later axis)?
__device__ __forceinline__ bool blurred_last(const float* scalars, int d, int axis) {
  return !axis_resampled(scalars, d, axis) && !later_axes_active(scalars, d, axis);
}

// One output of the resampling of a line held in shared memory with element stride `stride`.
__device__ __forceinline__ float resample_at(const float* scalars, int d, int axis,
                                             const float* line, int length, int stride, int i) {
  const ResampleTaps t = resample_taps(length, scalars[layout::resample_step(d, axis)],
                                       scalars[layout::resample_offset(d, axis)], i);
  return t.weight[0] * line[t.index[0] * stride] + t.weight[1] * line[t.index[1] * stride] +
         t.weight[2] * line[t.index[2] * stride] + t.weight[3] * line[t.index[3] * stride];
}

__device__ __forceinline__ void publish_min_max(float* stats, float lo, float hi) {
  block_min_max(lo, hi);
  if (threadIdx.x == 0) {
    atomic_min_float(stats + layout::STAT_LO, lo);
    atomic_max_float(stats + layout::STAT_HI, hi);
  }
}

// The arguments every row pass shares.
struct Pairs {
  const unsigned char* labels;  // [B, *S]
  const float* label_stats;     // [B, A, K, 2]
  const float* coef;            // [B, A, *nodes]
  const float* scalars;         // [B, A, layout::scalar_count(d)]
  float* stats;                 // [B, A, 4]
  const long long* sample_index;
  unsigned long long seed;
  long long batch;
  int apps, K, size_z, size_y, size_x, nz, ny, nx;
};

template <int DIM>
struct PairView {
  long long b;
  int a;
  long long rows, voxels;
  const unsigned char* labels;
  const float* ls;
  const float* scalars;
  float* stats;
  BiasLattice bias;
};

template <int DIM>
__device__ __forceinline__ PairView<DIM> pair_view(const Pairs& P, long long p) {
  PairView<DIM> v;
  v.b = p / P.apps;
  v.a = int(p - v.b * P.apps);
  v.rows = (long long)(DIM == 3 ? P.size_z : 1) * P.size_y;
  v.voxels = v.rows * P.size_x;
  v.labels = P.labels + v.b * v.voxels;
  v.ls = P.label_stats + p * P.K * layout::LABEL_STATS;
  v.scalars = P.scalars + p * layout::scalar_count(DIM);
  v.stats = P.stats + p * layout::STAT_COUNT;
  const long long lattice = (long long)(DIM == 3 ? P.nz : 1) * P.ny * P.nx;
  v.bias = bias_lattice(DIM, P.coef + p * lattice, P.nz, P.ny, P.nx, v.scalars);
  return v;
}

template <int DIM>
__device__ void max_abs(const Pairs& P, int rows_per_block) {
  RASD_DYNAMIC_SHARED(lines);  // [rows_per_block][nx]
  const long long rows_total = (long long)(DIM == 3 ? P.size_z : 1) * P.size_y;
  const long long tiles = (rows_total + rows_per_block - 1) / rows_per_block;
  for (long long p = blockIdx.y; p < P.batch * P.apps; p += gridDim.y) {
    const PairView<DIM> v = pair_view<DIM>(P, p);
    const PhiloxStream texture =
        philox_stream(P.seed, (unsigned long long)P.sample_index[v.b], streams::TEXTURE_NOISE);
    float top = 0.0f;
    for (long long tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
      const long long row0 = tile * rows_per_block;
      const int rows = int(min_of((long long)rows_per_block, rows_total - row0));
      __syncthreads();
      bias_lines<DIM>(v.bias, row0, rows, P.size_y, lines);
      __syncthreads();
      const long long first = row0 * P.size_x;
      for (int i = threadIdx.x; i < rows * P.size_x; i += blockDim.x) {
        const int r = i / P.size_x, col = i - r * P.size_x;
        const float x = intensity(v.ls, P.K, v.labels[first + i], texture,
                                  voxel_noise_element(v.a, v.voxels, first + i),
                                  bias_at(v.bias, lines + r * P.nx, col));
        top = max_of(top, abs_f(x));
      }
    }
    float unused = 0.0f;
    block_min_max(unused, top);
    if (threadIdx.x == 0) atomic_max_nonnegative(v.stats + layout::STAT_MAX_ABS, top);
  }
}

template <int DIM>
__device__ void noise_blur_w(const Pairs& P, float* image, int rows_per_block) {
  RASD_DYNAMIC_SHARED(smem);  // x [rows_per_block][W], then lines [rows_per_block][nx]
  __shared__ Blur blur;
  __shared__ int last;
  float* tile_x = smem;
  float* lines = smem + rows_per_block * P.size_x;
  const long long rows_total = (long long)(DIM == 3 ? P.size_z : 1) * P.size_y;
  const long long tiles = (rows_total + rows_per_block - 1) / rows_per_block;
  for (long long p = blockIdx.y; p < P.batch * P.apps; p += gridDim.y) {
    const PairView<DIM> v = pair_view<DIM>(P, p);
    const unsigned long long sample = (unsigned long long)P.sample_index[v.b];
    const PhiloxStream texture = philox_stream(P.seed, sample, streams::TEXTURE_NOISE);
    const PhiloxStream noise = philox_stream(P.seed, sample, streams::IMAGE_NOISE);
    const float scale = noise_scale(v.scalars[layout::noise_std(DIM)],
                                    v.stats[layout::STAT_MAX_ABS]);
    float* image_p = image + p * v.voxels;
    __syncthreads();  // the previous pair's blur is no longer read
    if (threadIdx.x == 0) {
      blur_setup(blur, v.scalars[layout::blur_sigma(DIM, DIM - 1)]);
      last = blurred_last(v.scalars, DIM, DIM - 1);
    }
    __syncthreads();
    float lo = positive_infinity(), hi = negative_infinity();
    for (long long tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
      const long long row0 = tile * rows_per_block;
      const int rows = int(min_of((long long)rows_per_block, rows_total - row0));
      const int count = rows * P.size_x;
      const long long first = row0 * P.size_x;
      __syncthreads();  // the previous tile is no longer read
      bias_lines<DIM>(v.bias, row0, rows, P.size_y, lines);
      __syncthreads();
      for (int i = threadIdx.x; i < count; i += blockDim.x) {
        const int r = i / P.size_x, col = i - r * P.size_x;
        tile_x[i] = intensity(v.ls, P.K, v.labels[first + i], texture,
                              voxel_noise_element(v.a, v.voxels, first + i),
                              bias_at(v.bias, lines + r * P.nx, col));
      }
      __syncthreads();
      // The tile is one contiguous range of noise elements: one Philox call per block of 4.
      const unsigned long long e0 = voxel_noise_element(v.a, v.voxels, first), e1 = e0 + count;
      for (unsigned long long j = (e0 >> 2) + threadIdx.x; j <= (e1 - 1) >> 2; j += blockDim.x) {
        float n[4];
        normal_block(noise, uint32_t(j), n);
        for (int q = 0; q < 4; ++q) {
          const unsigned long long e = 4 * j + q;
          if (e >= e0 && e < e1) tile_x[e - e0] = add_image_noise(tile_x[e - e0], scale, n[q]);
        }
      }
      __syncthreads();
      for (int i = threadIdx.x; i < count; i += blockDim.x) {
        const int r = i / P.size_x, col = i - r * P.size_x;
        const float x = convolve_at(blur, tile_x + r * P.size_x, P.size_x, 1, col);
        image_p[first + i] = x;
        lo = min_of(lo, x);
        hi = max_of(hi, x);
      }
    }
    if (last) publish_min_max(v.stats, lo, hi);
  }
}

// Tile `tile` of whole lines of one pair's image [outer, length, inner]: length x width
// neighbouring columns (width <= tile_inner) copied into shared memory tile_x
// [length][tile_inner]; returns where the tile's first column sits in the image. Every thread
// of the block calls it (it synchronises before and after the copy).
__device__ __forceinline__ float* load_line_tile(float* image, long long tile,
                                                 long long column_tiles, int length,
                                                 long long inner, int tile_inner,
                                                 float* tile_x, int& width) {
  const long long o = tile / column_tiles;
  const long long c0 = (tile - o * column_tiles) * tile_inner;
  width = int(min_of((long long)tile_inner, inner - c0));
  float* base = image + o * length * inner + c0;
  __syncthreads();  // the previous tile is no longer read
  for (int i = threadIdx.x; i < length * width; i += blockDim.x) {
    const int l = i / width, c = i - l * width;
    tile_x[l * tile_inner + c] = base[l * inner + c];
  }
  __syncthreads();
  return base;
}

// Blur along `axis` (scalar order) in place. The image of one pair is [outer, length, inner];
// a block tile holds whole lines: length x tile_inner neighbouring columns (coalesced loads
// along the innermost axis).
template <int DIM>
__device__ void blur_axis(float* image, const float* scalars, float* stats, long long pairs,
                          long long outer, int length, long long inner, int tile_inner,
                          int axis) {
  RASD_DYNAMIC_SHARED(tile_x);  // [length][tile_inner]
  __shared__ Blur blur;
  __shared__ int last;
  const long long column_tiles = (inner + tile_inner - 1) / tile_inner;
  const long long tiles = outer * column_tiles;
  const long long voxels = outer * length * inner;
  for (long long p = blockIdx.y; p < pairs; p += gridDim.y) {
    const float* s = scalars + p * layout::scalar_count(DIM);
    __syncthreads();  // the previous pair's blur is no longer read
    if (threadIdx.x == 0) {
      blur_setup(blur, s[layout::blur_sigma(DIM, axis)]);
      last = blurred_last(s, DIM, axis);
    }
    __syncthreads();
    if (blur.radius == 0) continue;  // identity (block-uniform)
    float lo = positive_infinity(), hi = negative_infinity();
    for (long long tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
      int width;
      float* base = load_line_tile(image + p * voxels, tile, column_tiles, length, inner,
                                   tile_inner, tile_x, width);
      for (int i = threadIdx.x; i < length * width; i += blockDim.x) {
        const int l = i / width, c = i - l * width;
        const float x = convolve_at(blur, tile_x + c, length, tile_inner, l);
        base[l * inner + c] = x;
        lo = min_of(lo, x);
        hi = max_of(hi, x);
      }
    }
    if (last) publish_min_max(stats + p * layout::STAT_COUNT, lo, hi);
  }
}

// The acquisition resampling along `axis` (scalar order) in place, tiled as blur_axis (the W
// axis as outer = rows, length = W, inner = 1). Pairs whose axis is not resampled are skipped.
template <int DIM>
__device__ void resample_axis(float* image, const float* scalars, float* stats, long long pairs,
                              long long outer, int length, long long inner, int tile_inner,
                              int axis) {
  RASD_DYNAMIC_SHARED(tile_x);  // [length][tile_inner]
  const long long column_tiles = (inner + tile_inner - 1) / tile_inner;
  const long long tiles = outer * column_tiles;
  const long long voxels = outer * length * inner;
  for (long long p = blockIdx.y; p < pairs; p += gridDim.y) {
    const float* s = scalars + p * layout::scalar_count(DIM);
    if (!axis_resampled(s, DIM, axis)) continue;  // block-uniform
    float lo = positive_infinity(), hi = negative_infinity();
    for (long long tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
      int width;
      float* base = load_line_tile(image + p * voxels, tile, column_tiles, length, inner,
                                   tile_inner, tile_x, width);
      for (int i = threadIdx.x; i < length * width; i += blockDim.x) {
        const int l = i / width, c = i - l * width;
        const float x = resample_at(s, DIM, axis, tile_x + c, length, tile_inner, l);
        base[l * inner + c] = x;
        lo = min_of(lo, x);
        hi = max_of(hi, x);
      }
    }
    if (!later_axes_active(s, DIM, axis)) publish_min_max(stats + p * layout::STAT_COUNT, lo, hi);
  }
}

}  // namespace cuda
}  // namespace rasd

// Launch (all 1D blocks of a power of two <= 256 threads; grid-stride loops over tiles (x)
// and pairs (y), so any grid is correct):
//   rasd_appearance_init       grid over pairs
//   rasd_appearance_max_abs    grid (row tiles, pairs), rows_per_block * nx floats
//   rasd_appearance_noise_w    grid (row tiles, pairs), rows_per_block * (W + nx) floats
//   rasd_appearance_blur_axis  grid (outer * column tiles, pairs), length * tile_inner floats
//   rasd_appearance_resample_axis  as blur_axis
//   rasd_appearance_normalise  grid (voxel chunks, pairs)
extern "C" __global__ void rasd_appearance_init(float* __restrict__ stats, long long pairs) {
  using namespace rasd;
  for (long long p = (long long)blockIdx.x * blockDim.x + threadIdx.x; p < pairs;
       p += (long long)gridDim.x * blockDim.x) {
    float* s = stats + p * layout::STAT_COUNT;
    s[layout::STAT_MAX_ABS] = 0.0f;
    s[layout::STAT_LO] = cuda::positive_infinity();
    s[layout::STAT_HI] = cuda::negative_infinity();
    s[3] = 0.0f;
  }
}

#define RASD_APPEARANCE_ROW_PASSES(DIM)                                                        \
  extern "C" __global__ void rasd_appearance_max_abs_##DIM##d(                                \
      const unsigned char* __restrict__ labels, const float* __restrict__ label_stats,        \
      const float* __restrict__ coef, const float* __restrict__ scalars, float* stats,        \
      const long long* __restrict__ sample_index, unsigned long long seed, long long batch,   \
      int apps, int num_labels, int size_z, int size_y, int size_x, int nz, int ny, int nx,   \
      int rows_per_block) {                                                                   \
    const rasd::cuda::Pairs P{labels, label_stats, coef,   scalars, stats,  sample_index,     \
                              seed,   batch,       apps,   num_labels, size_z, size_y,        \
                              size_x, nz,          ny,     nx};                               \
    rasd::cuda::max_abs<DIM>(P, rows_per_block);                                              \
  }                                                                                           \
  extern "C" __global__ void rasd_appearance_noise_w_##DIM##d(                                \
      float* __restrict__ image, const unsigned char* __restrict__ labels,                    \
      const float* __restrict__ label_stats, const float* __restrict__ coef,                  \
      const float* __restrict__ scalars, float* stats,                                        \
      const long long* __restrict__ sample_index, unsigned long long seed, long long batch,   \
      int apps, int num_labels, int size_z, int size_y, int size_x, int nz, int ny, int nx,   \
      int rows_per_block) {                                                                   \
    const rasd::cuda::Pairs P{labels, label_stats, coef,   scalars, stats,  sample_index,     \
                              seed,   batch,       apps,   num_labels, size_z, size_y,        \
                              size_x, nz,          ny,     nx};                               \
    rasd::cuda::noise_blur_w<DIM>(P, image, rows_per_block);                                  \
  }                                                                                           \
  extern "C" __global__ void rasd_appearance_blur_axis_##DIM##d(                              \
      float* __restrict__ image, const float* __restrict__ scalars, float* stats,             \
      long long pairs, long long outer, int length, long long inner, int tile_inner,          \
      int axis) {                                                                             \
    rasd::cuda::blur_axis<DIM>(image, scalars, stats, pairs, outer, length, inner,            \
                               tile_inner, axis);                                             \
  }                                                                                           \
  extern "C" __global__ void rasd_appearance_resample_axis_##DIM##d(                          \
      float* __restrict__ image, const float* __restrict__ scalars, float* stats,             \
      long long pairs, long long outer, int length, long long inner, int tile_inner,          \
      int axis) {                                                                             \
    rasd::cuda::resample_axis<DIM>(image, scalars, stats, pairs, outer, length, inner,        \
                                   tile_inner, axis);                                         \
  }

RASD_APPEARANCE_ROW_PASSES(2)
RASD_APPEARANCE_ROW_PASSES(3)

// x = ((x - lo) / (hi - lo + 1e-6)) ^ gamma (csrc/common/appearance.h); 0 where the label
// is 0 if the appearance clears its background.
extern "C" __global__ void rasd_appearance_normalise(float* __restrict__ image,
                                                     const float* __restrict__ scalars,
                                                     const float* __restrict__ stats,
                                                     const unsigned char* __restrict__ labels,
                                                     long long pairs, int apps,
                                                     long long voxels, int scalar_count,
                                                     int gamma_index, int clear_index) {
  using namespace rasd;
  for (long long p = blockIdx.y; p < pairs; p += gridDim.y) {
    const float lo = stats[p * layout::STAT_COUNT + layout::STAT_LO];
    const float hi = stats[p * layout::STAT_COUNT + layout::STAT_HI];
    const float factor = normalise_factor(lo, hi);
    const float gamma = scalars[p * scalar_count + gamma_index];
    const bool clear = scalars[p * scalar_count + clear_index] != 0.0f;
    const unsigned char* y = labels + (p / apps) * voxels;
    float* x = image + p * voxels;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < voxels;
         i += (long long)gridDim.x * blockDim.x)
      x[i] = clear && y[i] == 0 ? 0.0f : normalise(x[i], lo, factor, gamma);
  }
}

#ifndef __CUDACC_RTC__
#include "cuda/launch.h"

namespace rasd {
namespace cuda {

KernelList appearance_kernels() {
  static const KernelEntry entries[] = {
      kernel_entry("rasd_appearance_init", &rasd_appearance_init),
      kernel_entry("rasd_appearance_max_abs_2d", &rasd_appearance_max_abs_2d),
      kernel_entry("rasd_appearance_max_abs_3d", &rasd_appearance_max_abs_3d),
      kernel_entry("rasd_appearance_noise_w_2d", &rasd_appearance_noise_w_2d),
      kernel_entry("rasd_appearance_noise_w_3d", &rasd_appearance_noise_w_3d),
      kernel_entry("rasd_appearance_blur_axis_2d", &rasd_appearance_blur_axis_2d),
      kernel_entry("rasd_appearance_blur_axis_3d", &rasd_appearance_blur_axis_3d),
      kernel_entry("rasd_appearance_resample_axis_2d", &rasd_appearance_resample_axis_2d),
      kernel_entry("rasd_appearance_resample_axis_3d", &rasd_appearance_resample_axis_3d),
      kernel_entry("rasd_appearance_normalise", &rasd_appearance_normalise),
  };
  return KernelList{entries, 10};
}

}  // namespace cuda
}  // namespace rasd
#endif
