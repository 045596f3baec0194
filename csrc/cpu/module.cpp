// rasd_kernels._C: Python bindings of the CPU kernels.
//
// No torch headers: tensors arrive as data pointers (tensor.data_ptr()) and sizes as ints,
// so the module builds in seconds with plain `pip install .` and works with any torch. The
// Python wrapper (rasd_kernels/backends/cpu.py) has validated shapes, dtypes and contiguity.
#include <atomic>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include <omp.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "../common/layout.h"
#include "../common/philox.h"
#include "../common/streams.h"
#include "appearance.h"
#include "bias_field.h"
#include "gmm_shapes.h"
#include "philox_fill.h"
#include "spline_maximum.h"

namespace py = pybind11;
using rasd::cpu::make_extent;

namespace {

template <typename T>
T* ptr(std::uintptr_t address) {
  return reinterpret_cast<T*>(address);
}

std::vector<int> ints(const std::vector<int64_t>& v) {
  return std::vector<int>(v.begin(), v.end());
}

py::dict stream_ids() {
  namespace s = rasd::streams;
  py::dict d;
  d["ANATOMY_PARAMS"] = s::ANATOMY_PARAMS;
  d["FIELD_GRIDS"] = s::FIELD_GRIDS;
  d["WARP_GRIDS"] = s::WARP_GRIDS;
  d["APPEARANCE_PARAMS"] = s::APPEARANCE_PARAMS;
  d["BIAS_GRIDS"] = s::BIAS_GRIDS;
  d["TEXTURE_NOISE"] = s::TEXTURE_NOISE;
  d["IMAGE_NOISE"] = s::IMAGE_NOISE;
  d["ACQUISITION_PARAMS"] = s::ACQUISITION_PARAMS;
  d["MAX_ELEMENTS_PER_STREAM"] = s::MAX_ELEMENTS_PER_STREAM;
  return d;
}

// csrc/common/layout.h for one dimensionality, under the names of rasd_kernels.layout.entries.
py::dict layout_entries(int d) {
  namespace l = rasd::layout;
  py::dict e;
  e["scalar_count"] = l::scalar_count(d);
  e["noise_std"] = l::noise_std(d);
  e["gamma"] = l::gamma(d);
  e["blob_param_count"] = l::blob_param_count(d);
  e["blob_precision"] = l::blob_precision(d);
  e["blob_log_weight"] = l::blob_log_weight(d);
  e["LABEL_MEAN"] = l::LABEL_MEAN;
  e["LABEL_STD"] = l::LABEL_STD;
  e["LABEL_STATS"] = l::LABEL_STATS;
  e["STAT_MAX_ABS"] = l::STAT_MAX_ABS;
  e["STAT_LO"] = l::STAT_LO;
  e["STAT_HI"] = l::STAT_HI;
  e["STAT_COUNT"] = l::STAT_COUNT;
  e["clear_background"] = l::clear_background(d);
  for (int axis = 0; axis < d; ++axis) {
    const std::string a = std::to_string(axis);
    e[("resample_step_" + a).c_str()] = l::resample_step(d, axis);
    e[("resample_offset_" + a).c_str()] = l::resample_offset(d, axis);
    e[("bias_spacing_" + a).c_str()] = l::bias_spacing(d, axis);
    e[("bias_offset_" + a).c_str()] = l::bias_offset(d, axis);
    e[("blur_sigma_" + a).c_str()] = l::blur_sigma(d, axis);
  }
  return e;
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "rasd_kernels CPU kernels (OpenMP); called by rasd_kernels.backends.cpu";

  m.def("philox_fill",
        [](std::uintptr_t out, int64_t batch, int64_t per_sample, std::uintptr_t sample_index,
           uint64_t seed, uint32_t stream, bool normal) {
          py::gil_scoped_release nogil;
          rasd::cpu::philox_fill(ptr<float>(out), batch, per_sample,
                                 ptr<const int64_t>(sample_index), seed, stream, normal);
        },
        py::arg("out"), py::arg("batch"), py::arg("per_sample"), py::arg("sample_index"),
        py::arg("seed"), py::arg("stream"), py::arg("normal"));

  m.def("gmm_shapes",
        [](std::uintptr_t labels, std::uintptr_t fields, std::uintptr_t warps, int64_t batch,
           int num_labels, const std::vector<int64_t>& shape,
           const std::vector<int64_t>& field_nodes, const std::vector<int64_t>& warp_nodes,
           bool blobs, bool zeros) {
          const auto ext = make_extent(shape);
          const auto fn = ints(field_nodes), wn = ints(warp_nodes);
          py::gil_scoped_release nogil;
          rasd::cpu::gmm_shapes(ptr<uint8_t>(labels), ptr<const float>(fields),
                                ptr<const float>(warps), batch, num_labels, ext, fn, wn, blobs,
                                zeros);
        },
        py::arg("labels"), py::arg("fields"), py::arg("warps"), py::arg("batch"),
        py::arg("num_labels"), py::arg("shape"), py::arg("field_nodes"), py::arg("warp_nodes"),
        py::arg("blobs"), py::arg("zeros"));

  m.def("bias_field",
        [](std::uintptr_t image, std::uintptr_t coef, std::uintptr_t scalars, int64_t batch,
           int apps, const std::vector<int64_t>& shape, const std::vector<int64_t>& nodes,
           int scalar_stride) {
          const auto ext = make_extent(shape);
          const auto n = ints(nodes);
          py::gil_scoped_release nogil;
          rasd::cpu::bias_field(ptr<float>(image), ptr<const float>(coef),
                                ptr<const float>(scalars), batch, apps, ext, n, scalar_stride);
        },
        py::arg("image"), py::arg("coef"), py::arg("scalars"), py::arg("batch"),
        py::arg("apps"), py::arg("shape"), py::arg("nodes"), py::arg("scalar_stride"));

  m.def("spline_maximum",
        [](std::uintptr_t coef, std::uintptr_t scalars, int64_t count, int scalar_stride,
           const std::vector<int64_t>& shape, const std::vector<int64_t>& nodes,
           int per_spacing, std::uintptr_t out) {
          const auto ext = make_extent(shape);
          const auto n = ints(nodes);
          py::gil_scoped_release nogil;
          rasd::cpu::spline_maximum(ptr<const float>(coef), ptr<const float>(scalars), count,
                                    scalar_stride, ext, n, per_spacing, ptr<float>(out));
        },
        py::arg("coef"), py::arg("scalars"), py::arg("count"), py::arg("scalar_stride"),
        py::arg("shape"), py::arg("nodes"), py::arg("per_spacing"), py::arg("out"));

  m.def("appearance",
        [](std::uintptr_t image, std::uintptr_t labels, std::uintptr_t label_stats,
           std::uintptr_t bias_coef, std::uintptr_t scalars, std::uintptr_t stats,
           std::uintptr_t sample_index, uint64_t seed, int64_t batch, int apps, int num_labels,
           const std::vector<int64_t>& shape, const std::vector<int64_t>& bias_nodes) {
          const auto ext = make_extent(shape);
          const auto n = ints(bias_nodes);
          py::gil_scoped_release nogil;
          rasd::cpu::appearance(ptr<float>(image), ptr<const uint8_t>(labels),
                                ptr<const float>(label_stats), ptr<const float>(bias_coef),
                                ptr<const float>(scalars), ptr<float>(stats),
                                ptr<const int64_t>(sample_index), seed, batch, apps,
                                num_labels, ext, n);
        },
        py::arg("image"), py::arg("labels"), py::arg("label_stats"), py::arg("bias_coef"),
        py::arg("scalars"), py::arg("stats"), py::arg("sample_index"), py::arg("seed"),
        py::arg("batch"), py::arg("apps"), py::arg("num_labels"), py::arg("shape"),
        py::arg("bias_nodes"));

  // Small probes for the tests.
  m.def("philox4x32_10",
        [](std::vector<uint32_t> counter, std::vector<uint32_t> key) {
          if (counter.size() != 4 || key.size() != 2)
            throw std::invalid_argument("counter has 4 words, key 2");
          rasd::philox4x32_10(counter[0], counter[1], counter[2], counter[3], key[0], key[1]);
          return counter;
        },
        py::arg("counter"), py::arg("key"), "One Philox4x32-10 block (Random123 layout).");
  m.def("parallel_for_probe",
        [](int64_t count, int64_t fail_at, uint64_t scratch_floats) {
          py::gil_scoped_release nogil;
          std::atomic<int64_t> sum{0};
          rasd::cpu::parallel_for(count, size_t(scratch_floats), [&](int64_t i, float* s) {
            if (i == fail_at) throw std::runtime_error("unit " + std::to_string(i) + " failed");
            if (scratch_floats > 0) s[scratch_floats - 1] += 1.0f;  // the scratch is usable
            sum += i;
          });
          return sum.load();
        },
        py::arg("count"), py::arg("fail_at"), py::arg("scratch_floats"),
        "Sum of 0 .. count - 1 over parallel_for; unit fail_at throws (a test of the loop's "
        "error and allocation handling).");
  m.def("allow_avx512", &rasd::cpu::allow_avx512, py::arg("allowed"),
        "Let the AVX-512 kernels (labels, normals) run where the CPU has them (default True).");
  m.def("allow_label_bounds", &rasd::cpu::allow_label_bounds, py::arg("allowed"),
        "Let the AVX-512 label kernel skip labels by their bounds where it would (default "
        "True); the labels are the same either way.");
  m.def("avx512_enabled", &rasd::cpu::avx512_enabled,
        "Whether the AVX-512 kernels run: the CPU has them and allow_avx512 allows them.");
  m.def("stream_ids", &stream_ids, "The stream ids of csrc/common/streams.h.");
  m.def("layout", &layout_entries, py::arg("d"),
        "The packed parameter layout of csrc/common/layout.h for d = 2 or 3.");
  m.attr("NORMALISE_EPS") = rasd::layout::NORMALISE_EPS;
  m.def("last_team_size", &rasd::cpu::last_team_size,
        "How many threads the calling thread's most recent parallel loop ran on.");
  m.def("openmp_usable", &rasd::cpu::openmp_usable,
        "False in a forked child, whose loops run on threads of their own, not OpenMP's.");
  m.def("set_num_threads", &rasd::cpu::set_num_threads, py::arg("n"),
        "Threads of every kernel call; 0 restores OpenMP's default.");
  m.def("get_num_threads", &rasd::cpu::num_threads);
  m.attr("openmp") = py::int_(_OPENMP);
  m.attr("MAX_GRID_SCALES") = rasd::MAX_GRID_SCALES;
  m.attr("MAX_GRID_NODES") = rasd::MAX_GRID_NODES;
  m.attr("MAX_BIAS_NODES") = rasd::cpu::MAX_BIAS_NODES;
}
