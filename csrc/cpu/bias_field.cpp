// bias_field: image *= exp(psi), psi a cubic B-spline of coarse control points, row by row.
#include <stdexcept>

#include "../common/bias_field.h"
#include "../common/interp.h"
#include "bias_field.h"

namespace rasd {
namespace cpu {

BiasRows::BiasRows(const Extent& ext, const std::vector<int>& nodes, const float* coef,
                   const float* scalars)
    : ext_(ext),
      lattice_(bias_lattice(ext.d, coef, nodes[0], nodes[ext.d - 2], nodes[ext.d - 1], scalars)),
      wx_(4 * size_t(ext.W)),
      window_node_(4 * size_t(ext.W)),
      window_start_((size_t(ext.W) + 15) / 16) {
  if (lattice_.nx > MAX_BIAS_NODES) throw std::invalid_argument("bias lattice too large along W");
  int previous = -1;
  for (int x = 0; x < ext.W; ++x) {
    const SplineCell c = bias_cell(lattice_, 2, x);
    const size_t v = size_t(x) / 16;
    if (x % 16 == 0) window_start_[v] = spline_node(c, 0, lattice_.nx);  // nodes never decrease
    for (int j = 0; j < 4; ++j) {
      wx_[j * size_t(ext.W) + x] = c.w[j];
      const int at = spline_node(c, j, lattice_.nx) - window_start_[v];
      window_node_[j * size_t(ext.W) + x] = at;
      windowed_ = windowed_ && at < 16;
    }
    if (c.i != previous) {
      run_start_.push_back(x);
      for (int j = 0; j < 4; ++j) run_nodes_.push_back(spline_node(c, j, lattice_.nx));
      previous = c.i;
    }
  }
  run_start_.push_back(ext.W);
  if (ext.d == 3) contract_slices();
}

// The spline is a tensor product, so contracting the lattice along D once per slice (4 taps)
// leaves 4 taps per node for each row of the slice instead of 16.
void BiasRows::contract_slices() {
  const BiasLattice& b = lattice_;
  const size_t plane = size_t(b.ny) * b.nx;
  slices_.assign(size_t(ext_.D) * plane, 0.0f);
  for (int z = 0; z < ext_.D; ++z) {
    const SplineCell cz = bias_cell(b, 0, z);
    float* out = &slices_[size_t(z) * plane];
    for (int a = 0; a < 4; ++a) {
      const float* in = b.coef + size_t(spline_node(cz, a, b.nz)) * plane;
      for (size_t i = 0; i < plane; ++i) out[i] += cz.w[a] * in[i];
    }
  }
}

namespace {

// The bias line of a row of a 2D lattice (3D: of its slice): line[j] for j < nx.
void bias_line(const BiasLattice& lattice, const SplineCell& cy, float* RASD_RESTRICT line) {
  const SplineCell unused{};
#pragma omp simd
  for (int j = 0; j < lattice.nx; ++j) line[j] = bias_line_node<2>(lattice, unused, cy, j);
}

// psi along a row, one run of columns per lattice cell: within a run the four line values
// are constant, so no per-voxel lookup. All runs in one call: they are short (11 to 23
// voxels), so the cloned function is dispatched once per row rather than once per run.
RASD_CPU_CLONES
void expand_runs(const float* RASD_RESTRICT wx, int W, const int* RASD_RESTRICT run_start,
                 int runs, const int* RASD_RESTRICT run_nodes, const float* RASD_RESTRICT line,
                 float* RASD_RESTRICT out) {
  for (int j = 0; j < runs; ++j) {
    const int* n = run_nodes + 4 * j;
    const float c0 = line[n[0]], c1 = line[n[1]], c2 = line[n[2]], c3 = line[n[3]];
#pragma omp simd
    for (int x = run_start[j]; x < run_start[j + 1]; ++x)
      out[x] = bias_taps(wx[x], wx[W + x], wx[2 * W + x], wx[3 * W + x], c0, c1, c2, c3);
  }
}


}  // namespace

void BiasRows::line(int z, int y, float* out) const {
  BiasLattice slice = lattice_;  // 3D: the lattice contracted at slice z, a 2D lattice
  if (ext_.d == 3) {
    slice.coef = &slices_[size_t(z) * lattice_.ny * lattice_.nx];
    slice.nz = 1;
  }
  bias_line(slice, bias_cell(lattice_, 1, y), out);
}

bool BiasRows::windows(Windows& out) const {
  out = Windows{wx_.data(), window_node_.data(), window_start_.data(), lattice_.nx};
  return windowed_;
}

void BiasRows::row(int z, int y, float* out) const {
  float line[MAX_BIAS_NODES];
  this->line(z, y, line);
  Windows w;
  if (windows(w) && bias_avx512_available()) {  // whole vectors, not short runs
    bias_row_avx512(w, line, ext_.W, out);
    return;
  }
  expand_runs(wx_.data(), ext_.W, run_start_.data(), int(run_start_.size()) - 1,
              run_nodes_.data(), line, out);
}

namespace {

RASD_CPU_CLONES
void scale_by_exp(float* RASD_RESTRICT x, const float* RASD_RESTRICT psi, int n) {
#pragma omp simd
  for (int i = 0; i < n; ++i) x[i] = apply_bias(x[i], psi[i]);
}

}  // namespace

void bias_field(float* image, const float* coef, const float* scalars, int64_t batch, int apps,
                const Extent& ext, const std::vector<int>& nodes, int scalar_stride) {
  const int64_t pairs = batch * apps;
  const int64_t lattice = int64_t(nodes[0]) * nodes[1] * (ext.d == 3 ? nodes[2] : 1);
  std::vector<BiasRows> fields;
  fields.reserve(size_t(pairs));
  for (int64_t p = 0; p < pairs; ++p)
    fields.emplace_back(ext, nodes, coef + p * lattice, scalars + p * scalar_stride);
  const int64_t rows = ext.rows();
  parallel_for(pairs * rows, size_t(ext.W), [&](int64_t unit, float* psi) {
    const int64_t p = unit / rows, r = unit % rows;
    float* x = image + p * ext.voxels() + r * ext.W;
    fields[size_t(p)].row(int(r / ext.H), int(r % ext.H), psi);
    scale_by_exp(x, psi, ext.W);
  });
}

}  // namespace cpu
}  // namespace rasd
