// The CPU backend: declarations shared by the kernel files and the Python bindings.
//
// Tensors arrive as raw pointers to contiguous memory (the bindings never see torch), sizes
// as ints. 2D data is handled as 3D with a single slice (D = 1).
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "../common/bias_field.h"
#include "../common/defs.h"
#include "../common/philox.h"
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

// ---- Philox ranges (philox_fill.cpp) -----------------------------------------------------

// out[i] = normal / uniform element e0 + i of a stream, i < n.
void normal_range(const PhiloxStream& s, uint64_t e0, int64_t n, float* out);
void uniform_range(const PhiloxStream& s, uint64_t e0, int64_t n, float* out);

// The normals of nb consecutive blocks from block `first`, in element order, hand-vectorised
// (philox_avx512.cpp); available when built with AVX-512 and avx512_enabled().
bool normals_avx512_available();
void normal_blocks_avx512(PhiloxStream s, uint32_t first, int nb, float* out);


// ---- the four ops ---------------------------------------------------------------------

void philox_fill(float* out, int64_t batch, int64_t per_sample, const int64_t* sample_index,
                 uint64_t seed, uint32_t stream, bool normal);

void gmm_shapes(uint8_t* labels, const float* fields, const float* warps, int64_t batch,
                int num_labels, const Extent& ext, const std::vector<int>& field_nodes,
                const std::vector<int>& warp_nodes, bool blobs);

void bias_field(float* image, const float* coef, const float* scalars, int64_t batch,
                int apps, const Extent& ext, const std::vector<int>& nodes, int scalar_stride);

// out[i] = the largest value of lattice i's bias spline over per_spacing (n - 3) + 1 points
// per axis spanning the image (or a quarter of its largest magnitude if that is larger), for
// `count` lattices [*nodes] with scalars (spacing, offset per axis) every scalar_stride floats.
void spline_maximum(const float* coef, const float* scalars, int64_t count, int scalar_stride,
                    const Extent& ext, const std::vector<int>& nodes, int per_spacing,
                    float* out);

void appearance(float* image, const uint8_t* labels, const float* label_stats,
                const float* bias_coef, const float* scalars, float* stats,
                const int64_t* sample_index, uint64_t seed, int64_t batch, int apps,
                int num_labels, const Extent& ext, const std::vector<int>& bias_nodes);

// ---- the bias spline, shared by bias_field and appearance (bias_field.cpp) ---------------

// The log-bias psi of one (sample, appearance), evaluated one row at a time from the row's
// bias line (csrc/common/bias_field.h). Along W the spline weights of every column and the
// runs of columns sharing a lattice cell are precomputed, so a voxel costs 4 multiply-adds.
class BiasRows {
 public:
  // coef [*nodes] of one (sample, appearance); scalars start with spacing (d), offset (d).
  BiasRows(const Extent& ext, const std::vector<int>& nodes, const float* coef,
           const float* scalars);
  // psi of row (z, y) into out[0 .. W).
  void row(int z, int y, float* out) const;
  // The bias line [nx] of row (z, y), whose four taps per column make its psi.
  void line(int z, int y, float* out) const;
  // The taps of the columns as windows of 16 nodes, for a kernel that takes psi from the line
  // itself: per column the 4 weights [4][W] and nodes [4][W] within the window of its group
  // of 16 columns, which starts at node start[x / 16]. None (false) where some 16 columns
  // span more than 16 nodes.
  struct Windows {
    const float* taps;
    const int* node;
    const int* start;
    int nx;
  };
  bool windows(Windows& out) const;

 private:
  void contract_slices();

  Extent ext_;
  BiasLattice lattice_;
  std::vector<float> slices_;  // 3D: the lattice contracted along D at every slice, [D][ny][nx]
  // Per column: the four W taps, [4][W].
  std::vector<float> wx_;
  // For the AVX-512 rows: per 16 columns, the first node of a window of 16 that holds all
  // their nodes (windowed_: every group has one), and per column its nodes in that window.
  std::vector<int> window_node_, window_start_;
  bool windowed_ = true;
  // Runs of columns in the same lattice cell: [run_start_[j], run_start_[j + 1]) uses
  // the (clamped) nodes run_nodes_[4 j .. 4 j + 3].
  std::vector<int> run_start_, run_nodes_;
};

// Largest bias lattice along W that a row buffer holds.
constexpr int MAX_BIAS_NODES = 4096;

// psi of a row from its bias line and windowed taps, hand-vectorised (bias_field_avx512.cpp),
// available when built with AVX-512 and avx512_enabled().
bool bias_avx512_available();
void bias_row_avx512(const BiasRows::Windows& bias, const float* line, int W, float* out);

// Rows of appearance hand-vectorised (appearance_avx512.cpp), available when built with
// AVX-512 and avx512_enabled(). Pass 1 without texture, K <= 16 and windowed bias taps:
// x = mean[label] e^psi from the labels, label_stats [K, 2] and the row's bias line, returning
// max|x|; pass 5: the gamma curve x = ((x - lo) factor)^gamma. Its part: the mean (and
// texture std) of each voxel's label (K <= 16).
bool appearance_avx512_available();
float intensity_row_avx512(const uint8_t* labels, const float* label_stats, int K,
                           const BiasRows::Windows& bias, const float* line, int W, float* x);
void normalise_row_avx512(float* x, int W, float lo, float factor, float gamma);
void label_lookup_avx512(const uint8_t* labels, const float* label_stats, int K, int W,
                         bool texture, float* mean, float* sd);

}  // namespace cpu
}  // namespace rasd
