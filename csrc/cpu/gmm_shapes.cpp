// gmm_shapes: coarse grids -> argmax label map, one row of voxels at a time.
//
// Nothing of full resolution is ever built: per row, each warp grid is contracted over the
// row's (D, H) cell once (a line of n values along W), then expanded along the row with one
// lerp per voxel; the warped positions of the row feed the field grids (tiny, L1-resident)
// and a running argmax over labels. Memory per thread is a few rows of floats.
#include <algorithm>
#include <stdexcept>

#include "../common/gmm_shapes.h"
#include "../common/interp.h"
#include "../common/layout.h"
#include "gmm_shapes.h"

namespace rasd {
namespace cpu {

namespace {

using namespace gmm;

// u[x] += the line interpolated at column x.
RASD_CPU_CLONES
void add_line(const float* RASD_RESTRICT line, const int* RASD_RESTRICT i0,
              const float* RASD_RESTRICT f, int W, float* RASD_RESTRICT u) {
#pragma omp simd
  for (int x = 0; x < W; ++x) u[x] += line_lerp(line, i0[x], f[x]);
}

// Displacement rows u[c][x] of one warp [DIM, total] at row (z, y).
template <int DIM>
void warp_row(const Problem& pb, const float* warp, int z, int y, float* u, float* line) {
  const int W = pb.ext.W;
  for (int c = 0; c < DIM; ++c) {
    float* uc = u + size_t(c) * W;
    for (int x = 0; x < W; ++x) uc[x] = 0.0f;
    const float* grid = warp + c * pb.wg.total;
    for (int s = 0; s < pb.wg.count; ++s) {
      const AxisLerp cz = DIM == 3 ? pb.wz.at(s, z) : AxisLerp{0, 0.0f};
      contract<DIM>(grid + pb.wg.offset[s], pb.wg.nodes[s], cz, pb.wy.at(s, y), line);
      add_line(line, pb.wx.i0_row(s), pb.wx.f_row(s), W, uc);
    }
  }
}

// Warped positions, clamped into the volume: u[c][x] becomes q[c][x]; with a border
// factor row (border "zeros"), factor[x] = the product of the axes' border factors.
RASD_CPU_CLONES
void clamp_positions3(float* RASD_RESTRICT qz, float* RASD_RESTRICT qy,
                      float* RASD_RESTRICT qx, int z, int y, int D, int H, int W,
                      float* RASD_RESTRICT factor) {
  if (factor != nullptr) {
#pragma omp simd
    for (int x = 0; x < W; ++x)
      factor[x] = border_factor(float(z), qz[x], D) * border_factor(float(y), qy[x], H) *
                  border_factor(float(x), qx[x], W);
  }
#pragma omp simd
  for (int x = 0; x < W; ++x) {
    qz[x] = warped_coordinate(float(z), qz[x], D);
    qy[x] = warped_coordinate(float(y), qy[x], H);
    qx[x] = warped_coordinate(float(x), qx[x], W);
  }
}

RASD_CPU_CLONES
void clamp_positions2(float* RASD_RESTRICT qy, float* RASD_RESTRICT qx, int y, int H, int W,
                      float* RASD_RESTRICT factor) {
  if (factor != nullptr) {
#pragma omp simd
    for (int x = 0; x < W; ++x)
      factor[x] = border_factor(float(y), qy[x], H) * border_factor(float(x), qx[x], W);
  }
#pragma omp simd
  for (int x = 0; x < W; ++x) {
    qy[x] = warped_coordinate(float(y), qy[x], H);
    qx[x] = warped_coordinate(float(x), qx[x], W);
  }
}

// score[x] *= factor[x] (border "zeros").
RASD_CPU_CLONES
void apply_border(const float* RASD_RESTRICT factor, int W, float* RASD_RESTRICT score) {
#pragma omp simd
  for (int x = 0; x < W; ++x) score[x] *= factor[x];
}

// acc[x] += trilinear interpolation of one n^3 field grid at q[x].
RASD_CPU_CLONES
void field_scale3(const float* RASD_RESTRICT grid, int n, const float* RASD_RESTRICT qz,
                  const float* RASD_RESTRICT qy, const float* RASD_RESTRICT qx, float sz,
                  float sy, float sx, int W, float* RASD_RESTRICT acc) {
#pragma omp simd
  for (int x = 0; x < W; ++x) acc[x] += sample_grid3(grid, n, qz[x], qy[x], qx[x], sz, sy, sx);
}

RASD_CPU_CLONES
void field_scale2(const float* RASD_RESTRICT grid, int n, const float* RASD_RESTRICT qy,
                  const float* RASD_RESTRICT qx, float sy, float sx, int W,
                  float* RASD_RESTRICT acc) {
#pragma omp simd
  for (int x = 0; x < W; ++x) acc[x] += sample_grid2(grid, n, qy[x], qx[x], sy, sx);
}

// Running argmax: ties keep the lower label (strict comparison).
RASD_CPU_CLONES
void argmax_update(const float* RASD_RESTRICT score, int k, int W, float* RASD_RESTRICT best,
                   uint8_t* RASD_RESTRICT label) {
  if (k == 0) {
    for (int x = 0; x < W; ++x) {
      best[x] = score[x];
      label[x] = 0;
    }
    return;
  }
#pragma omp simd
  for (int x = 0; x < W; ++x) {
    const bool better = score[x] > best[x];
    best[x] = better ? score[x] : best[x];
    label[x] = better ? uint8_t(k) : label[x];
  }
}

template <int DIM>
void perlin_row(const Problem& pb, int64_t b, int z, int y, uint8_t* label, float* scratch) {
  const Extent& e = pb.ext;
  const int W = e.W;
  float* best = scratch;
  float* score = best + W;
  float* q = score + W;             // [DIM][W]
  float* factor = q + size_t(DIM) * W;  // [W], border "zeros" only
  float* line = factor + W;              // [max warp nodes]
  float* qz = q;
  float* qy = q + (DIM == 3 ? W : 0);
  float* qx = qy + W;
  float* border = pb.zeros ? factor : nullptr;
  for (int k = 0; k < pb.K; ++k) {
    const int64_t bk = b * pb.K + k;
    warp_row<DIM>(pb, pb.warps + bk * DIM * pb.wg.total, z, y, q, line);
    if (DIM == 3) {
      clamp_positions3(qz, qy, qx, z, y, e.D, e.H, W, border);
    } else {
      clamp_positions2(qy, qx, y, e.H, W, border);
    }
    const float* field = pb.fields + bk * pb.fg.total;
    for (int x = 0; x < W; ++x) score[x] = 0.0f;
    for (int s = 0; s < pb.fg.count; ++s) {
      const int n = pb.fg.nodes[s];
      if (DIM == 3) {
        field_scale3(field + pb.fg.offset[s], n, qz, qy, qx, node_scale(n, e.D),
                     node_scale(n, e.H), node_scale(n, W), W, score);
      } else {
        field_scale2(field + pb.fg.offset[s], n, qy, qx, node_scale(n, e.H),
                     node_scale(n, W), W, score);
      }
    }
    if (border != nullptr) apply_border(border, W, score);
    argmax_update(score, k, W, best, label);
  }
}

// score[x] of one label's blob at the warped positions (z, y, x) + u[c][x] (not clamped).
RASD_CPU_CLONES
void blob_row3(const float* RASD_RESTRICT p, const float* RASD_RESTRICT uz,
               const float* RASD_RESTRICT uy, const float* RASD_RESTRICT ux, int z, int y, int W,
               float* RASD_RESTRICT score) {
#pragma omp simd
  for (int x = 0; x < W; ++x)
    score[x] = blob_score3(p, float(z) + uz[x], float(y) + uy[x], float(x) + ux[x]);
}

RASD_CPU_CLONES
void blob_row2(const float* RASD_RESTRICT p, const float* RASD_RESTRICT uy,
               const float* RASD_RESTRICT ux, int y, int W, float* RASD_RESTRICT score) {
#pragma omp simd
  for (int x = 0; x < W; ++x) score[x] = blob_score2(p, float(y) + uy[x], float(x) + ux[x]);
}

template <int DIM>
void blobs_row(const Problem& pb, int64_t b, int z, int y, uint8_t* label, float* scratch) {
  const int W = pb.ext.W;
  float* best = scratch;
  float* score = best + W;
  float* u = score + W;
  float* line = u + size_t(DIM) * W;
  warp_row<DIM>(pb, pb.warps + b * DIM * pb.wg.total, z, y, u, line);
  const int np = layout::blob_param_count(DIM);
  for (int k = 0; k < pb.K; ++k) {
    const float* p = pb.fields + (b * pb.K + k) * np;
    if (DIM == 3) {
      blob_row3(p, u, u + W, u + 2 * W, z, y, W, score);
    } else {
      blob_row2(p, u, u + W, y, W, score);
    }
    argmax_update(score, k, W, best, label);
  }
}

}  // namespace

namespace gmm {

UnionIntervals::UnionIntervals(int W, const Grids& g) {
  // Interior node positions of every scale as exact fractions i / (m - 1) of the axis.
  std::vector<std::pair<int, int>> cuts;  // (i, m - 1)
  for (int s = 0; s < g.count; ++s)
    for (int i = 1; i < g.nodes[s] - 1; ++i) cuts.emplace_back(i, g.nodes[s] - 1);
  auto less = [](const std::pair<int, int>& a, const std::pair<int, int>& b) {
    return int64_t(a.first) * b.second < int64_t(b.first) * a.second;
  };
  std::sort(cuts.begin(), cuts.end(), less);
  std::vector<double> starts{0.0};  // interval starts, in voxels
  for (size_t c = 0; c < cuts.size(); ++c) {
    if (c > 0 && !less(cuts[c - 1], cuts[c])) continue;  // shared by two scales
    starts.push_back(double(cuts[c].first) * (W - 1) / cuts[c].second);
  }
  count = int(starts.size());
  const int S = g.count;
  stride = max_of(count, 32);
  segment.resize(size_t(stride) * S);
  frac0.resize(size_t(stride) * S);
  slope.resize(S);
  start.resize(stride);
  for (int s = 0; s < S; ++s) slope[s] = node_scale(g.nodes[s], W);
  for (int slot = 0; slot < stride; ++slot) {
    const int j = min_of(slot, count - 1);
    // The cell of each scale is the one holding the interval's midpoint.
    const double end = j + 1 < count ? starts[j + 1] : double(W - 1);
    const double mid = 0.5 * (starts[j] + end);
    start[slot] = float(starts[j]);
    for (int s = 0; s < S; ++s) {
      const double t = mid * (g.nodes[s] - 1) / (W - 1);
      const int cell = min_of(int(t), g.nodes[s] - 2);
      segment[size_t(s) * stride + slot] = cell;
      frac0[size_t(s) * stride + slot] = float(starts[j] * (g.nodes[s] - 1) / (W - 1) - cell);
    }
  }
  const int padded = (W + 15) / 16 * 16;
  column_j.resize(padded);
  column_dx.resize(padded);
  int j = 0;
  for (int x = 0; x < padded; ++x) {
    const int cx = min_of(x, W - 1);
    while (j + 1 < count && starts[j + 1] <= cx) ++j;
    column_j[x] = j;
    column_dx[x] = float(cx - starts[j]);
  }
}

}  // namespace gmm

void gmm_shapes(uint8_t* labels, const float* fields, const float* warps, int64_t batch,
                int num_labels, const Extent& ext, const std::vector<int>& field_nodes,
                const std::vector<int>& warp_nodes, bool blobs, bool zeros) {
  if (num_labels < 1 || num_labels > 255) throw std::invalid_argument("need 1..255 labels");
  const Grids wg(warp_nodes, ext.d);
  const Grids fg(blobs ? std::vector<int>{} : field_nodes, ext.d);
  if (wg.count == 0 || (!blobs && fg.count == 0))
    throw std::invalid_argument("every grid set needs at least one scale");
  const Problem pb{ext,
                   num_labels,
                   fields,
                   warps,
                   fg,
                   wg,
                   AxisTable(ext.D, wg),
                   AxisTable(ext.H, wg),
                   AxisTable(ext.W, wg),
                   UnionIntervals(ext.W, wg),
                   UnionIntervals(ext.H, wg),
                   zeros && !blobs};
  // The AVX-512 kernel reads the border value only (border "edge").
  if (!blobs && !pb.zeros && avx512_available() && avx512_supports(pb)) {
    perlin_avx512(pb, batch, labels);
    return;
  }
  const int64_t rows = ext.rows();
  const size_t scratch = size_t(3 + ext.d) * ext.W + size_t(wg.max_nodes);
  parallel_for(batch * rows, scratch, [&](int64_t unit, float* buf) {
    const int64_t b = unit / rows, r = unit % rows;
    const int z = int(r / ext.H), y = int(r % ext.H);
    uint8_t* label = labels + b * ext.voxels() + r * ext.W;
    if (ext.d == 3) {
      blobs ? blobs_row<3>(pb, b, z, y, label, buf) : perlin_row<3>(pb, b, z, y, label, buf);
    } else {
      blobs ? blobs_row<2>(pb, b, z, y, label, buf) : perlin_row<2>(pb, b, z, y, label, buf);
    }
  });
}

}  // namespace cpu
}  // namespace rasd
