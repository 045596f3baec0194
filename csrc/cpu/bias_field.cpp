// bias_field: image *= exp(psi), psi a cubic B-spline of coarse control points, row by row.
#include <stdexcept>

#include "../common/interp.h"
#include "../common/mathf.h"
#include "cpu.h"

namespace rasd {
namespace cpu {

BiasRows::BiasRows(const Extent& ext, const std::vector<int>& nodes, const float* coef,
                   const float* scalars)
    : ext_(ext), coef_(coef), wx_(4 * size_t(ext.W)) {
  const int d = ext.d;
  nD_ = d == 3 ? nodes[0] : 1;
  nH_ = nodes[d - 2];
  nW_ = nodes[d - 1];
  if (nW_ > MAX_BIAS_NODES) throw std::invalid_argument("bias lattice too large along W");
  // Axis slots 0, 1, 2 are D, H, W; a 2D image has no D axis.
  for (int a = 0; a < 3; ++a) {
    inv_spacing_[a] = 1.0f;
    offset_[a] = 0.0f;
  }
  for (int a = 0; a < d; ++a) {
    const int slot = a + 3 - d;
    inv_spacing_[slot] = float(1.0 / double(scalars[a]));
    offset_[slot] = scalars[d + a];
  }
  int previous = -1;
  for (int x = 0; x < ext.W; ++x) {
    const SplineCell c = spline_cell(float(x), inv_spacing_[2], offset_[2]);
    for (int j = 0; j < 4; ++j) wx_[j * size_t(ext.W) + x] = c.w[j];
    if (c.i != previous) {
      run_start_.push_back(x);
      for (int j = 0; j < 4; ++j) run_nodes_.push_back(spline_node(c, j, nW_));
      previous = c.i;
    }
  }
  run_start_.push_back(ext.W);
}

namespace {

// psi on columns [x0, x1) of one lattice cell, whose four node values are c0..c3: the
// coefficients are constant along the run, so no per-voxel lookup.
RASD_CPU_CLONES
void expand_run(const float* RASD_RESTRICT wx, int W, int x0, int x1, float c0, float c1,
                float c2, float c3, float* RASD_RESTRICT out) {
#pragma omp simd
  for (int x = x0; x < x1; ++x)
    out[x] = wx[x] * c0 + wx[W + x] * c1 + wx[2 * W + x] * c2 + wx[3 * W + x] * c3;
}

}  // namespace

void BiasRows::row(int z, int y, float* out) const {
  // Contract the (at most) 4 x 4 lattice lines that carry weight at (z, y).
  const SplineCell cz = spline_cell(float(z), inv_spacing_[0], offset_[0]);
  const SplineCell cy = spline_cell(float(y), inv_spacing_[1], offset_[1]);
  const int jz_count = ext_.d == 3 ? 4 : 1;
  float line[MAX_BIAS_NODES];
  for (int j = 0; j < nW_; ++j) line[j] = 0.0f;
  for (int a = 0; a < jz_count; ++a) {
    const float wz = ext_.d == 3 ? cz.w[a] : 1.0f;
    const int iz = ext_.d == 3 ? spline_node(cz, a, nD_) : 0;
    for (int b = 0; b < 4; ++b) {
      const float w = wz * cy.w[b];
      const float* src = coef_ + (size_t(iz) * nH_ + spline_node(cy, b, nH_)) * nW_;
#pragma omp simd
      for (int j = 0; j < nW_; ++j) line[j] += w * src[j];
    }
  }
  for (size_t j = 0; j + 1 < run_start_.size(); ++j) {
    const int* n = &run_nodes_[4 * j];
    expand_run(wx_.data(), ext_.W, run_start_[j], run_start_[j + 1], line[n[0]], line[n[1]],
               line[n[2]], line[n[3]], out);
  }
}

namespace {

RASD_CPU_CLONES
void scale_by_exp(float* RASD_RESTRICT x, const float* RASD_RESTRICT psi, int n) {
#pragma omp simd
  for (int i = 0; i < n; ++i) x[i] *= exp_f(psi[i]);
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
  begin_call();
  parallel_for(pairs * rows, size_t(ext.W), [&](int64_t unit, float* psi) {
    const int64_t p = unit / rows, r = unit % rows;
    float* x = image + p * ext.voxels() + r * ext.W;
    fields[size_t(p)].row(int(r / ext.H), int(r % ext.H), psi);
    scale_by_exp(x, psi, ext.W);
  });
}

}  // namespace cpu
}  // namespace rasd
