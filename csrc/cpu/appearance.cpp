// appearance: labels -> image, in five passes over each (sample, appearance):
//   1. rows:    x = mean[y] (+ std[y] n1), x *= exp(psi); max|x| per row
//   2. rows:    x += noise_std M n2, blur along W through a line buffer, then the W
//               acquisition resampling (thick slices, low resolution) where it is on
//   3. columns: blur along H in place, a block of columns at a time (2D and 3D), then the H
//               resampling
//   4. columns: blur along D in place (3D), then the D resampling
//   5. rows:    x = ((x - lo) / (hi - lo + 1e-6)) ^ gamma; 0 where the label is 0 if the
//               appearance clears its background
// The min/max of the blurred image is taken in whichever of passes 2-4 runs last. Every unit
// of work writes disjoint voxels and reductions are max/min, so the result does not depend
// on the number of threads.
#include <algorithm>
#include <stdexcept>

#include "../common/appearance.h"
#include "../common/gaussian.h"
#include "../common/layout.h"
#include "../common/mathf.h"
#include "../common/resample.h"
#include "../common/streams.h"
#include "appearance.h"
#include "philox_fill.h"

namespace rasd {
namespace cpu {

namespace {

constexpr int COLUMN_BLOCK = 64;  // columns per unit of the H and D blurs
// Bytes of image that one group of pairs may span: a few MB below this machine class's
// last-level cache (a 128^3 float image is 8 MB: one pair per group in 3D).
constexpr int64_t CACHED_IMAGE_BYTES = int64_t(8) << 20;

// The acquisition resampling of one axis: per output voxel the four taps of resample_taps
// (csrc/common/resample.h), tabulated once per (pair, axis); empty when the axis is not
// resampled.
struct Resampling {
  std::vector<int> index;    // [n][4]
  std::vector<float> weight;  // [n][4]
  bool on() const { return !index.empty(); }
  void plan(int n, float step, float offset) {
    if (!resampled(step, offset)) return;
    index.resize(4 * size_t(n));
    weight.resize(4 * size_t(n));
    for (int i = 0; i < n; ++i) {
      const ResampleTaps t = resample_taps(n, step, offset, i);
      for (int e = 0; e < 4; ++e) {
        index[4 * size_t(i) + e] = t.index[e];
        weight[4 * size_t(i) + e] = t.weight[e];
      }
    }
  }
};

struct Pair {  // one (sample, appearance)
  const float* stats;   // label_stats [K, 2]
  bool texture;         // some label has a texture std != 0
  bool clear;           // label 0 becomes 0 at the end
  float noise_std;
  float gamma;
  int radius[3];        // blur radius along D, H, W (D unused in 2D)
  float taps[3][MAX_BLUR_TAPS];
  Resampling resample[3];  // along D, H, W
  PhiloxStream texture_noise, image_noise;
  uint64_t app;         // a: which noise elements are this appearance's
  // Whether the pass along D, H or W changes the image (blur or resampling).
  bool active(int slot) const { return radius[slot] > 0 || resample[slot].on(); }
};

// out[i] = sum of the four taps of output i over in[] (one line of n voxels).
void resample_line(const float* RASD_RESTRICT in, const Resampling& r, int n,
                   float* RASD_RESTRICT out) {
  for (int i = 0; i < n; ++i) {
    const int* at = &r.index[4 * size_t(i)];
    const float* w = &r.weight[4 * size_t(i)];
    out[i] = w[0] * in[at[0]] + w[1] * in[at[1]] + w[2] * in[at[2]] + w[3] * in[at[3]];
  }
}

// mean[y] and std[y] of one row. Elsewhere a scalar loop on purpose: per-lane table lookups
// vectorise into emulated gathers, which are slower than two scalar loads per voxel.
void label_lookup(const uint8_t* RASD_RESTRICT y, const float* RASD_RESTRICT ls, int K, int W,
                  bool texture, float* RASD_RESTRICT mean, float* RASD_RESTRICT sd) {
  if (K * layout::LABEL_STATS <= 32 && appearance_avx512_available()) {
    label_lookup_avx512(y, ls, K, W, texture, mean, sd);
    return;
  }
  for (int i = 0; i < W; ++i) {
    const int k = label_stats_offset(int(y[i]), K);
    mean[i] = ls[k + layout::LABEL_MEAN];
    if (texture) sd[i] = ls[k + layout::LABEL_STD];
  }
}

// x = (mean + sd n) exp(psi) (sd, n null without texture); returns max|x|.
RASD_CPU_CLONES
float intensity_row(const float* RASD_RESTRICT mean, const float* RASD_RESTRICT sd,
                    const float* RASD_RESTRICT n, const float* RASD_RESTRICT psi, int W,
                    float* RASD_RESTRICT x) {
  float top = 0.0f;
  if (n != nullptr) {
#pragma omp simd reduction(max : top)
    for (int i = 0; i < W; ++i) {
      const float v = apply_bias(texture_value(mean[i], sd[i], n[i]), psi[i]);
      x[i] = v;
      top = max_of(top, abs_f(v));
    }
  } else {
#pragma omp simd reduction(max : top)
    for (int i = 0; i < W; ++i) {
      const float v = apply_bias(mean[i], psi[i]);
      x[i] = v;
      top = max_of(top, abs_f(v));
    }
  }
  return top;
}

// line[r + i] = x[i] + scale n[i], replicated r times at both ends.
RASD_CPU_CLONES
void add_noise_padded(const float* RASD_RESTRICT x, const float* RASD_RESTRICT n, float scale,
                      int W, int r, float* RASD_RESTRICT line) {
#pragma omp simd
  for (int i = 0; i < W; ++i) line[r + i] = add_image_noise(x[i], scale, n[i]);
  for (int i = 0; i < r; ++i) {
    line[i] = line[r];
    line[r + W + i] = line[r + W - 1];
  }
}

// out[i] = sum_j taps[j] line[i + j], j <= 2r (tap loop outside: contiguous vector loads).
RASD_CPU_CLONES
void convolve_line(const float* RASD_RESTRICT line, const float* RASD_RESTRICT taps, int r,
                   int W, float* RASD_RESTRICT out) {
  const float t0 = taps[0];
#pragma omp simd
  for (int i = 0; i < W; ++i) out[i] = t0 * line[i];
  for (int j = 1; j <= 2 * r; ++j) {
    const float t = taps[j];
    const float* src = line + j;
#pragma omp simd
    for (int i = 0; i < W; ++i) out[i] += t * src[i];
  }
}

// Blur `cols` contiguous columns along a strided axis of length L, in place: the block is
// copied into buf with r replicated rows at both ends, then convolved back.
// The row copies stay loops: turned into memcpy calls (GCC does at -O3) each 256-byte row
// paid a library call, more than the copy.
RASD_CPU_CLONES __attribute__((optimize("no-tree-loop-distribute-patterns")))
void blur_columns(float* RASD_RESTRICT base, int L, int64_t stride, int cols,
                  const float* RASD_RESTRICT taps, int r, float* RASD_RESTRICT buf) {
  for (int l = 0; l < L + 2 * r; ++l) {
    const int src = clamp_to(l - r, 0, L - 1);
    const float* from = base + src * stride;
    float* to = buf + size_t(l) * COLUMN_BLOCK;
#pragma omp simd
    for (int c = 0; c < cols; ++c) to[c] = from[c];
  }
  for (int l = 0; l < L; ++l) {
    float* out = base + l * stride;
    const float* in = buf + size_t(l) * COLUMN_BLOCK;
    float acc[COLUMN_BLOCK];
#pragma omp simd
    for (int c = 0; c < cols; ++c) acc[c] = taps[0] * in[c];
    for (int j = 1; j <= 2 * r; ++j) {
      const float t = taps[j];
      const float* row = in + size_t(j) * COLUMN_BLOCK;
#pragma omp simd
      for (int c = 0; c < cols; ++c) acc[c] += t * row[c];
    }
#pragma omp simd
    for (int c = 0; c < cols; ++c) out[c] = acc[c];
  }
}

// Resample `cols` contiguous columns along a strided axis of length L, in place, through buf
// ([L][COLUMN_BLOCK]).
void resample_columns(float* RASD_RESTRICT base, int L, int64_t stride, int cols,
                      const Resampling& r, float* RASD_RESTRICT buf) {
  for (int l = 0; l < L; ++l) std::copy(base + l * stride, base + l * stride + cols,
                                        buf + size_t(l) * COLUMN_BLOCK);
  for (int l = 0; l < L; ++l) {
    const int* at = &r.index[4 * size_t(l)];
    const float* w = &r.weight[4 * size_t(l)];
    const float* r0 = buf + size_t(at[0]) * COLUMN_BLOCK;
    const float* r1 = buf + size_t(at[1]) * COLUMN_BLOCK;
    const float* r2 = buf + size_t(at[2]) * COLUMN_BLOCK;
    const float* r3 = buf + size_t(at[3]) * COLUMN_BLOCK;
    float* out = base + l * stride;
    for (int c = 0; c < cols; ++c)
      out[c] = w[0] * r0[c] + w[1] * r1[c] + w[2] * r2[c] + w[3] * r3[c];
  }
}

// x[i] = 0 where labels[i] == 0 (background clearing).
void clear_background_row(const uint8_t* RASD_RESTRICT labels, int W, float* RASD_RESTRICT x) {
  for (int i = 0; i < W; ++i)
    if (labels[i] == 0) x[i] = 0.0f;
}

RASD_CPU_CLONES
void normalise_row_portable(float* RASD_RESTRICT x, int W, float lo, float factor,
                            float gamma) {
#pragma omp simd
  for (int i = 0; i < W; ++i) x[i] = normalise(x[i], lo, factor, gamma);
}

void normalise_row(float* x, int W, float lo, float factor, float gamma) {
  if (appearance_avx512_available()) {
    normalise_row_avx512(x, W, lo, factor, gamma);
  } else {
    normalise_row_portable(x, W, lo, factor, gamma);
  }
}


// Pairs [first, first + count) of one call, and what their passes read.
struct PassGroup {
  const std::vector<Pair>& pair;
  const std::vector<BiasRows>& bias;
  const uint8_t* labels;
  float* image;
  const Extent& ext;
  int K, apps, max_r;
  int64_t first, count;
};

// Which pass sees the final values (and so takes the min / max) differs per pair.
int last_pass(const Pair& q) { return q.active(0) ? 4 : q.active(1) ? 3 : 2; }

// The five passes over one group of pairs; top, lo, hi (per pair of the call) receive
// max|x| after pass 1 and the min / max of the blurred image.
void run_passes(const PassGroup& g, std::vector<float>& top, std::vector<float>& lo,
                std::vector<float>& hi) {
  const Extent& ext = g.ext;
  const int W = ext.W, d = ext.d;
  const int64_t V = ext.voxels(), rows = ext.rows(), n = g.count;
  // The pair of a unit, for units numbered pair by pair within the group.
  auto pair_of = [&](int64_t unit, int64_t units_per_pair) {
    return g.first + unit / units_per_pair;
  };

  // 1. Intensity, texture and bias; max|x| per row.
  std::vector<float> row_top(size_t(n * rows));
  parallel_for(n * rows, 4 * size_t(W), [&](int64_t unit, float* buf) {
    const int64_t p = pair_of(unit, rows), r = unit % rows;
    const Pair& q = g.pair[size_t(p)];
    const BiasRows& bias = g.bias[size_t(p)];
    const int z = int(r / ext.H), y = int(r % ext.H);
    const uint8_t* labels = g.labels + (p / g.apps) * V + r * W;
    float* x = g.image + p * V + r * W;
    BiasRows::Windows windows;
    if (!q.texture && g.K * layout::LABEL_STATS <= 32 && appearance_avx512_available() &&
        bias.windows(windows)) {  // lookup, bias and intensity in one pass over the row
      float line[MAX_BIAS_NODES];
      bias.line(z, y, line);
      row_top[size_t(unit)] = intensity_row_avx512(labels, q.stats, g.K, windows, line, W, x);
      return;
    }
    float* psi = buf;
    float* mean = buf + W;
    float* sd = buf + 2 * W;
    float* noise = buf + 3 * W;
    bias.row(z, y, psi);
    label_lookup(labels, q.stats, g.K, W, q.texture, mean, sd);
    if (q.texture) normal_range(q.texture_noise, voxel_noise_element(q.app, V, r * W), W, noise);
    row_top[size_t(unit)] = intensity_row(mean, q.texture ? sd : nullptr,
                                          q.texture ? noise : nullptr, psi, W, x);
  });
  for (int64_t u = 0; u < n * rows; ++u) {
    const size_t p = size_t(pair_of(u, rows));
    top[p] = max_of(top[p], row_top[size_t(u)]);
  }

  // Per-unit lo / hi of the last pass, reduced per pair afterwards.
  std::vector<float> unit_lo, unit_hi;
  auto reset_minmax = [&](int64_t units) {
    unit_lo.assign(size_t(units), 3.0e38f);
    unit_hi.assign(size_t(units), -3.0e38f);
  };
  auto reduce_minmax = [&](int64_t units_per_pair, int pass) {
    for (int64_t u = 0; u < n * units_per_pair; ++u) {
      const size_t p = size_t(pair_of(u, units_per_pair));
      if (last_pass(g.pair[p]) != pass) continue;
      lo[p] = min_of(lo[p], unit_lo[size_t(u)]);
      hi[p] = max_of(hi[p], unit_hi[size_t(u)]);
    }
  };

  // 2. Image noise and the W blur.
  reset_minmax(n * rows);
  parallel_for(n * rows, 2 * size_t(W) + 2 * g.max_r, [&](int64_t unit, float* buf) {
    const int64_t p = pair_of(unit, rows), r = unit % rows;
    const Pair& q = g.pair[size_t(p)];
    float* x = g.image + p * V + r * W;
    float* noise = buf;
    float* line = buf + W;
    normal_range(q.image_noise, voxel_noise_element(q.app, V, r * W), W, noise);
    const int rw = q.radius[2];
    add_noise_padded(x, noise, noise_scale(q.noise_std, top[size_t(p)]), W, rw, line);
    if (q.resample[2].on()) {   // blur into the noise buffer (free now), resample into x
      convolve_line(line, q.taps[2], rw, W, noise);
      resample_line(noise, q.resample[2], W, x);
    } else {
      convolve_line(line, q.taps[2], rw, W, x);
    }
    if (last_pass(q) == 2) min_max(x, W, unit_lo[size_t(unit)], unit_hi[size_t(unit)]);
  });
  reduce_minmax(rows, 2);

  // 3. and 4. Blur along H (per slice) and along D, a block of columns at a time.
  const int64_t blocks = (W + COLUMN_BLOCK - 1) / COLUMN_BLOCK;
  for (int pass = 3; pass <= 4 && pass - 2 <= d - 1; ++pass) {
    const int slot = pass == 3 ? 1 : 0;                 // H or D
    const int L = pass == 3 ? ext.H : ext.D;
    const int64_t stride = pass == 3 ? W : int64_t(ext.H) * W;
    const int64_t lines = pass == 3 ? ext.D : ext.H;    // independent lines per pair
    const int64_t units_per_pair = lines * blocks;
    reset_minmax(n * units_per_pair);
    parallel_for(n * units_per_pair, size_t(L + 2 * g.max_r) * COLUMN_BLOCK,
                 [&](int64_t unit, float* buf) {
      const int64_t p = pair_of(unit, units_per_pair), rest = unit % units_per_pair;
      const Pair& q = g.pair[size_t(p)];
      if (!q.active(slot)) return;
      const int64_t line = rest / blocks, w0 = (rest % blocks) * COLUMN_BLOCK;
      const int cols = int(std::min<int64_t>(COLUMN_BLOCK, W - w0));
      const int64_t line_offset = pass == 3 ? line * int64_t(ext.H) * W : line * W;
      float* base = g.image + p * V + line_offset + w0;
      if (q.radius[slot] > 0)
        blur_columns(base, L, stride, cols, q.taps[slot], q.radius[slot], buf);
      if (q.resample[slot].on()) resample_columns(base, L, stride, cols, q.resample[slot], buf);
      if (last_pass(q) == pass) {
        for (int l = 0; l < L; ++l)
          min_max(base + l * stride, cols, unit_lo[size_t(unit)], unit_hi[size_t(unit)]);
      }
    });
    reduce_minmax(units_per_pair, pass);
  }

  // 5. Normalise and gamma.
  parallel_for(n * rows, 0, [&](int64_t unit, float*) {
    const int64_t p = pair_of(unit, rows), r = unit % rows;
    const Pair& q = g.pair[size_t(p)];
    float* x = g.image + p * V + r * W;
    normalise_row(x, W, lo[size_t(p)], normalise_factor(lo[size_t(p)], hi[size_t(p)]), q.gamma);
    if (q.clear) clear_background_row(g.labels + (p / g.apps) * V + r * W, W, x);
  });
}

}  // namespace

void appearance(float* image, const uint8_t* labels, const float* label_stats,
                const float* bias_coef, const float* scalars, float* stats,
                const int64_t* sample_index, uint64_t seed, int64_t batch, int apps,
                int num_labels, const Extent& ext, const std::vector<int>& bias_nodes) {
  const int d = ext.d, K = num_labels;
  const int64_t V = ext.voxels(), pairs = batch * apps;
  const int64_t lattice = int64_t(bias_nodes[0]) * bias_nodes[1] * (d == 3 ? bias_nodes[2] : 1);
  const int nscalars = layout::scalar_count(d);

  // Per-pair constants and bias fields (tiny; read by every row).
  std::vector<Pair> pair(static_cast<size_t>(pairs));
  std::vector<BiasRows> bias;
  bias.reserve(size_t(pairs));
  int max_r = 0;
  for (int64_t p = 0; p < pairs; ++p) {
    const int64_t b = p / apps, a = p % apps;
    const float* s = scalars + p * nscalars;
    Pair& q = pair[size_t(p)];
    q.stats = label_stats + p * K * layout::LABEL_STATS;
    q.texture = false;
    for (int k = 0; k < K; ++k)
      q.texture |= q.stats[label_stats_offset(k, K) + layout::LABEL_STD] != 0.0f;
    q.noise_std = s[layout::noise_std(d)];
    q.gamma = s[layout::gamma(d)];
    q.clear = s[layout::clear_background(d)] != 0.0f;
    q.radius[0] = 0;
    q.taps[0][0] = 1.0f;
    for (int axis = 0; axis < d; ++axis) {
      const int slot = axis + 3 - d;
      const float sigma = s[layout::blur_sigma(d, axis)];
      if (gaussian_radius(sigma) > MAX_BLUR_RADIUS)
        throw std::invalid_argument("blur sigma above 4 voxels is not supported");
      q.radius[slot] = gaussian_taps(sigma, q.taps[slot]);
      max_r = max_of(max_r, q.radius[slot]);
      const int sizes[3] = {ext.D, ext.H, ext.W};
      q.resample[slot].plan(sizes[slot], s[layout::resample_step(d, axis)],
                            s[layout::resample_offset(d, axis)]);
    }
    const uint64_t sample = uint64_t(sample_index[b]);
    q.texture_noise = philox_stream(seed, sample, streams::TEXTURE_NOISE);
    q.image_noise = philox_stream(seed, sample, streams::IMAGE_NOISE);
    q.app = uint64_t(a);
    bias.emplace_back(ext, bias_nodes, bias_coef + p * lattice, s);
  }
  std::vector<float> top(size_t(pairs), 0.0f);
  std::vector<float> lo(size_t(pairs), 3.0e38f), hi(size_t(pairs), -3.0e38f);
  // The five passes run on groups of pairs whose images fit in the last-level cache, so that
  // passes 2 to 5 read what the previous pass left there instead of main memory. When the
  // pairs share out evenly (or are many), each thread takes whole pairs and runs their passes
  // alone: no barrier between passes, and a pass reads what the same core wrote.
  const int64_t bytes = V * int64_t(sizeof(float));
  const int threads = num_threads();
  const bool per_thread = threads > 1 && bytes <= CACHED_IMAGE_BYTES && pairs >= threads &&
                          (pairs % threads == 0 || pairs >= 4 * threads);
  if (per_thread) {
    parallel_for(pairs, 0, [&](int64_t p, float*) {
      run_passes(PassGroup{pair, bias, labels, image, ext, K, apps, max_r, p, 1}, top, lo, hi);
    });
  } else {
    const int64_t group = std::max<int64_t>(1, CACHED_IMAGE_BYTES / bytes);
    for (int64_t first = 0; first < pairs; first += group) {
      const int64_t n = std::min(group, pairs - first);
      run_passes(PassGroup{pair, bias, labels, image, ext, K, apps, max_r, first, n}, top, lo,
                 hi);
    }
  }

  for (int64_t p = 0; p < pairs; ++p) {
    float* st = stats + p * layout::STAT_COUNT;
    st[layout::STAT_MAX_ABS] = top[size_t(p)];
    st[layout::STAT_LO] = lo[size_t(p)];
    st[layout::STAT_HI] = hi[size_t(p)];
    st[3] = 0.0f;
  }
}

}  // namespace cpu
}  // namespace rasd
