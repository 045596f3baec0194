// gmm_shapes: coarse grids -> uint8 argmax labels, warps fused, nothing of full resolution.
//
// A block owns blockDim.y consecutive rows (lines of voxels along W) of one sample and a chunk
// of blockDim.x columns; each thread owns one voxel of that tile and keeps its running argmax
// in registers. Labels are visited in chunks whose
// data fit in shared memory:
//   lines  [rows][labels][d][sum n]  every warp grid contracted over the row's (z, y) cell, as
//                                    the CPU backend does: per scale a line of n values along
//                                    W, so a voxel needs one lerp per scale and axis;
//   fields [labels][sum n^d]         the field grids (perlin), sampled at the warped position;
//                                    grids too large for shared memory are read from global
//                                    memory instead (fields_in_smem = 0);
//   blobs  [K][d + d(d+1)/2 + 1]     the blob parameters (blobs mode, one shared warp).
// The per-voxel math is that of the CPU backend, from the same functions (csrc/common:
// contract_node, line_lerp, warped_coordinate, sample_grid2/3, blob_score2/3), so the two
// backends differ only where a compiler fuses a multiply-add.
#include "common/gmm_shapes.h"
#include "common/interp.h"
#include "common/layout.h"
#include "cuda/device.cuh"

namespace rasd {
namespace cuda {

// Threads of the block, flattened (blocks are 2D: columns x rows).
__device__ __forceinline__ int thread_rank() { return threadIdx.y * blockDim.x + threadIdx.x; }
__device__ __forceinline__ int block_threads() { return blockDim.x * blockDim.y; }

// lines[((r * kn + kk) * DIM + a) * ws.line + ws.start[s] + j] for rows row0 + r (r < rows),
// labels k0 + kk of the warps of one sample [Kw, DIM, ws.total]. Only the nodes that columns
// x0 .. x1 reach are computed. The whole block shares the work.
template <int DIM>
__device__ void stage_lines(const float* warps, int k0, int kn, const Scales& ws,
                            long long row0, int rows, int size_z, int size_y, int size_x,
                            int x0, int x1, float* lines) {
  const int items = rows * kn * DIM * ws.line;
  for (int i = thread_rank(); i < items; i += block_threads()) {
    const int j = i % ws.line;
    int rest = i / ws.line;
    const int a = rest % DIM;
    rest /= DIM;
    const int kk = rest % kn, r = rest / kn;
    int n = 0, node = 0, offset = 0;
#pragma unroll
    for (int s = 0; s < MAX_SCALES; ++s) {  // the scale holding line entry j
      if (s < ws.count && j >= ws.start[s]) {
        n = ws.nodes[s];
        node = j - ws.start[s];
        offset = ws.offset[s];
      }
    }
    const int lo = axis_lerp_voxel(x0, size_x, n).i0;
    const int hi = axis_lerp_voxel(x1, size_x, n).i0 + 1;
    if (node < lo || node > hi) continue;
    const Row row = row_of(row0 + r, size_y);
    const AxisLerp cz = DIM == 3 ? axis_lerp_voxel(row.z, size_z, n) : AxisLerp{0, 0.0f};
    const AxisLerp cy = axis_lerp_voxel(row.y, size_y, n);
    const float* grid = warps + ((long long)(k0 + kk) * DIM + a) * ws.total + offset;
    lines[i] = contract_node<DIM>(grid, n, cz, cy, node);
  }
}

// Displacement along one axis of one label at this thread's column, from its line.
__device__ __forceinline__ float displacement(const float* line, const Scales& ws,
                                              const AxisLerp* cx) {
  float u = 0.0f;
#pragma unroll
  for (int s = 0; s < MAX_SCALES; ++s) {
    if (s < ws.count) u += line_lerp(line, ws.start[s] + cx[s].i0, cx[s].f);
  }
  return u;
}

// One voxel per thread and tile: threadIdx.x is the column within the block's chunk of
// columns, threadIdx.y the row within the tile.
struct Tile {
  int x0, x1;  // the block's columns (inclusive)
  int x;       // this thread's column
  bool active;
};

__device__ __forceinline__ Tile column_tile(int size_x) {
  Tile t;
  t.x0 = blockIdx.x * blockDim.x;
  t.x1 = min_of(t.x0 + int(blockDim.x), size_x) - 1;
  t.x = t.x0 + threadIdx.x;
  t.active = t.x <= t.x1;
  return t;
}

// Voxel coordinates in axis slots 0 .. DIM-1 (D, H, W or H, W).
template <int DIM>
__device__ __forceinline__ void position(const Row& row, int x, float* pos) {
  if (DIM == 3) pos[0] = float(row.z);
  pos[DIM - 2] = float(row.y);
  pos[DIM - 1] = float(x);
}

template <int DIM>
__device__ void gmm_perlin(unsigned char* labels, const float* fields, const float* warps,
                           int batch, int K, int size_z, int size_y, int size_x,
                           unsigned long long field_nodes, unsigned long long warp_nodes,
                           int labels_per_chunk, int fields_in_smem, int zeros) {
  RASD_DYNAMIC_SHARED(smem);
  const Scales fs = unpack_scales(field_nodes, DIM), ws = unpack_scales(warp_nodes, DIM);
  int size[DIM];
  if (DIM == 3) size[0] = size_z;
  size[DIM - 2] = size_y;
  size[DIM - 1] = size_x;
  const long long rows_total = (long long)(DIM == 3 ? size_z : 1) * size_y;
  const int rpb = blockDim.y, kc = labels_per_chunk;
  const long long tiles = (rows_total + rpb - 1) / rpb;
  const Tile t = column_tile(size_x);
  if (t.x0 >= size_x) return;  // the whole block: no __syncthreads() is skipped by a part of it

  // Per column: the W cell of every warp scale; per field grid and axis: (n - 1) / (N - 1).
  AxisLerp cx[MAX_SCALES];
  float scale[MAX_SCALES][DIM];
#pragma unroll
  for (int s = 0; s < MAX_SCALES; ++s) {
    cx[s] = s < ws.count ? axis_lerp_voxel(min_of(t.x, t.x1), size_x, ws.nodes[s])
                         : AxisLerp{0, 0.0f};
#pragma unroll
    for (int a = 0; a < DIM; ++a)
      scale[s][a] = s < fs.count ? node_scale(fs.nodes[s], size[a]) : 0.0f;
  }
  float* lines = smem;
  float* grids = smem + rpb * kc * DIM * ws.line;

  for (long long b = blockIdx.z; b < batch; b += gridDim.z) {
    const float* warps_b = warps + b * K * DIM * ws.total;
    const float* fields_b = fields + b * K * fs.total;
    for (long long tile = blockIdx.y; tile < tiles; tile += gridDim.y) {
      const long long row0 = tile * rpb;
      const int rows = int(min_of((long long)rpb, rows_total - row0));
      const int r = threadIdx.y;
      const bool active = t.active && r < rows;
      float pos[DIM];
      position<DIM>(row_of(row0 + r, size_y), t.x, pos);
      float best = negative_infinity();
      int label = 0;
      for (int k0 = 0; k0 < K; k0 += kc) {
        const int kn = min_of(kc, K - k0);
        __syncthreads();  // the previous chunk is no longer read
        stage_lines<DIM>(warps_b, k0, kn, ws, row0, rows, size_z, size_y, size_x, t.x0, t.x1,
                         lines);
        if (fields_in_smem) {
          const float* src = fields_b + (long long)k0 * fs.total;
          for (int i = thread_rank(); i < kn * fs.total; i += block_threads()) grids[i] = src[i];
        }
        __syncthreads();
        if (!active) continue;
        for (int kk = 0; kk < kn; ++kk) {
          const float* line = lines + (r * kn + kk) * DIM * ws.line;
          float q[DIM];
          float border = 1.0f;  // border "zeros": the fields fall to 0 outside the volume
#pragma unroll
          for (int a = 0; a < DIM; ++a) {
            const float u = displacement(line + a * ws.line, ws, cx);
            if (zeros) border *= border_factor(pos[a], u, size[a]);
            q[a] = warped_coordinate(pos[a], u, size[a]);
          }
          const float* grid = fields_in_smem ? grids + kk * fs.total
                                             : fields_b + (long long)(k0 + kk) * fs.total;
          float score = 0.0f;
#pragma unroll
          for (int s = 0; s < MAX_SCALES; ++s) {
            if (s >= fs.count) break;
            const int n = fs.nodes[s];
            const float* g = grid + fs.offset[s];
            const float* sc = scale[s];
            const float v =
                DIM == 3 ? sample_grid3(g, n, q[0], q[DIM - 2], q[DIM - 1], sc[0], sc[DIM - 2],
                                        sc[DIM - 1])
                         : sample_grid2(g, n, q[DIM - 2], q[DIM - 1], sc[DIM - 2], sc[DIM - 1]);
            score = s == 0 ? v : score + v;
          }
          if (zeros) score *= border;
          const int k = k0 + kk;
          if (k == 0 || score > best) {  // ties keep the lower label
            best = score;
            label = k;
          }
        }
      }
      if (active) labels[(b * rows_total + row0 + r) * size_x + t.x] = (unsigned char)label;
    }
  }
}

// The blob score (csrc/common/gmm_shapes.h) of the label with parameters p at the warped
// position pos + u (not clamped).
template <int DIM>
__device__ __forceinline__ float blob_score(const float* p, const float* pos, const float* u) {
  return DIM == 3 ? blob_score3(p, pos[0] + u[0], pos[DIM - 2] + u[DIM - 2],
                                pos[DIM - 1] + u[DIM - 1])
                  : blob_score2(p, pos[DIM - 2] + u[DIM - 2], pos[DIM - 1] + u[DIM - 1]);
}

template <int DIM>
__device__ void gmm_blobs(unsigned char* labels, const float* blobs, const float* warps,
                          int batch, int K, int size_z, int size_y, int size_x,
                          unsigned long long warp_nodes) {
  RASD_DYNAMIC_SHARED(smem);
  const Scales ws = unpack_scales(warp_nodes, DIM);
  const long long rows_total = (long long)(DIM == 3 ? size_z : 1) * size_y;
  const int rpb = blockDim.y;
  const int np = layout::blob_param_count(DIM);
  const long long tiles = (rows_total + rpb - 1) / rpb;
  const Tile t = column_tile(size_x);
  if (t.x0 >= size_x) return;  // the whole block
  AxisLerp cx[MAX_SCALES];
#pragma unroll
  for (int s = 0; s < MAX_SCALES; ++s)
    cx[s] = s < ws.count ? axis_lerp_voxel(min_of(t.x, t.x1), size_x, ws.nodes[s])
                         : AxisLerp{0, 0.0f};
  float* lines = smem;                         // [rows][1][DIM][ws.line]
  float* params = smem + rpb * DIM * ws.line;  // [K][np]

  for (long long b = blockIdx.z; b < batch; b += gridDim.z) {
    for (long long tile = blockIdx.y; tile < tiles; tile += gridDim.y) {
      const long long row0 = tile * rpb;
      const int rows = int(min_of((long long)rpb, rows_total - row0));
      const int r = threadIdx.y;
      __syncthreads();  // the previous tile is no longer read
      stage_lines<DIM>(warps + b * DIM * ws.total, 0, 1, ws, row0, rows, size_z, size_y,
                       size_x, t.x0, t.x1, lines);
      for (int i = thread_rank(); i < K * np; i += block_threads())
        params[i] = blobs[b * K * np + i];
      __syncthreads();
      if (!t.active || r >= rows) continue;
      float pos[DIM], u[DIM];
      position<DIM>(row_of(row0 + r, size_y), t.x, pos);
#pragma unroll
      for (int a = 0; a < DIM; ++a) u[a] = displacement(lines + (r * DIM + a) * ws.line, ws, cx);
      float best = negative_infinity();
      int label = 0;
      for (int k = 0; k < K; ++k) {
        const float score = blob_score<DIM>(params + k * np, pos, u);
        if (k == 0 || score > best) {
          best = score;
          label = k;
        }
      }
      labels[(b * rows_total + row0 + r) * size_x + t.x] = (unsigned char)label;
    }
  }
}

}  // namespace cuda
}  // namespace rasd

// 2D images pass size_z = 1. Launch: block (columns, rows, 1), at most GMM_THREADS threads
// (rasd_kernels/backends/cuda.py mirrors the value);
// grid (ceil(W / columns), row tiles, batch) or fewer tiles and samples (grid-stride loops);
// dynamic shared memory of rows * labels_per_chunk * d * sum(warp nodes)
// + [labels_per_chunk * field floats] floats (perlin), rows * d * sum(warp nodes)
// + K * blob params floats (blobs).
#define GMM_THREADS 512
#define RASD_GMM_PERLIN(DIM)                                                                  \
  extern "C" __global__ void __launch_bounds__(GMM_THREADS) rasd_gmm_perlin_##DIM##d(      \
      unsigned char* __restrict__ labels, const float* __restrict__ fields,                   \
      const float* __restrict__ warps, int batch, int num_labels, int size_z, int size_y,     \
      int size_x, unsigned long long field_nodes, unsigned long long warp_nodes,              \
      int labels_per_chunk, int fields_in_smem, int zeros) {                                  \
    rasd::cuda::gmm_perlin<DIM>(labels, fields, warps, batch, num_labels, size_z, size_y,     \
                                size_x, field_nodes, warp_nodes, labels_per_chunk,            \
                                fields_in_smem, zeros);                                       \
  }
#define RASD_GMM_BLOBS(DIM)                                                                   \
  extern "C" __global__ void __launch_bounds__(GMM_THREADS) rasd_gmm_blobs_##DIM##d(       \
      unsigned char* __restrict__ labels, const float* __restrict__ blobs,                    \
      const float* __restrict__ warps, int batch, int num_labels, int size_z, int size_y,     \
      int size_x, unsigned long long warp_nodes) {                                            \
    rasd::cuda::gmm_blobs<DIM>(labels, blobs, warps, batch, num_labels, size_z, size_y,       \
                               size_x, warp_nodes);                                           \
  }

RASD_GMM_PERLIN(2)
RASD_GMM_PERLIN(3)
RASD_GMM_BLOBS(2)
RASD_GMM_BLOBS(3)

#ifndef __CUDACC_RTC__
#include "cuda/launch.h"

namespace rasd {
namespace cuda {

KernelList gmm_shapes_kernels() {
  static const KernelEntry entries[] = {
      kernel_entry("rasd_gmm_perlin_2d", &rasd_gmm_perlin_2d),
      kernel_entry("rasd_gmm_perlin_3d", &rasd_gmm_perlin_3d),
      kernel_entry("rasd_gmm_blobs_2d", &rasd_gmm_blobs_2d),
      kernel_entry("rasd_gmm_blobs_3d", &rasd_gmm_blobs_3d),
  };
  return KernelList{entries, 4};
}

}  // namespace cuda
}  // namespace rasd
#endif
