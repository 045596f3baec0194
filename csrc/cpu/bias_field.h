// bias_field: image *= exp(psi), psi a cubic B-spline of coarse control points (bias_field.cpp;
// the AVX-512 rows in bias_field_avx512.cpp), and the bias spline row by row (BiasRows), which
// appearance also applies.
#pragma once

#include <cstdint>
#include <vector>

#include "../common/bias_field.h"
#include "cpu.h"

namespace rasd {
namespace cpu {

void bias_field(float* image, const float* coef, const float* scalars, int64_t batch,
                int apps, const Extent& ext, const std::vector<int>& nodes, int scalar_stride);

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

}  // namespace cpu
}  // namespace rasd
