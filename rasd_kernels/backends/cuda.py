"""The CUDA backend: the kernels of csrc/cuda/*.cu, which share their per-voxel math with the
CPU backend through csrc/common/*.h.

The kernels run from the compiled module rasd_kernels._cuda when the package was built with a
CUDA toolkit; otherwise the same sources (installed as package data, or found in a source
checkout) are compiled at first use through CuPy's NVRTC and cached on disk by CuPy. Either
way this module computes every launch geometry and packs the arguments, so the two paths run
identical launches. Launches go to torch's current stream and never synchronise or allocate:
synthesize_into can be captured in a CUDA graph.
"""

from __future__ import annotations

import functools
import math
import re
import struct
from pathlib import Path

import torch

from .. import layout
from ..config import MAX_GRID_NODES, MAX_GRID_SCALES
from ..reference.spline_maximum import spline_maximum as reference_spline_maximum

# ---- kernel signatures ---------------------------------------------------------------------

# Argument codes: P pointer, i int32, I uint32, q int64, Q uint64 (mirrors the extern "C"
# signatures in csrc/cuda/*.cu; a mismatch would be caught by the GPU tests).
_I9 = "i" * 9
SIGNATURES = {
    "rasd_philox_fill": "PPqqQIi",
    "rasd_gmm_perlin_2d": "PPPiiiiiQQiii",
    "rasd_gmm_perlin_3d": "PPPiiiiiQQiii",
    "rasd_gmm_blobs_2d": "PPPiiiiiQ",
    "rasd_gmm_blobs_3d": "PPPiiiiiQ",
    "rasd_bias_field_2d": "PPPqiiiiiiii",
    "rasd_bias_field_3d": "PPPqiiiiiiii",
    "rasd_appearance_init": "Pq",
    "rasd_appearance_max_abs_2d": "PPPPPPQq" + _I9,
    "rasd_appearance_max_abs_3d": "PPPPPPQq" + _I9,
    "rasd_appearance_noise_w_2d": "PPPPPPPQq" + _I9,
    "rasd_appearance_noise_w_3d": "PPPPPPPQq" + _I9,
    "rasd_appearance_blur_axis_2d": "PPPqqiqii",
    "rasd_appearance_blur_axis_3d": "PPPqqiqii",
    "rasd_appearance_resample_axis_2d": "PPPqqiqii",
    "rasd_appearance_resample_axis_3d": "PPPqqiqii",
    "rasd_appearance_normalise": "PPPPqiqiii",
}
_STRUCT = {"P": "Q", "i": "i", "I": "I", "q": "q", "Q": "Q"}
SOURCES = ("philox_fill.cu", "gmm_shapes.cu", "bias_field.cu", "appearance.cu")


def pack_arguments(name: str, values) -> tuple[bytes, list[int]]:
    """Little-endian argument buffer of kernel `name`, each argument aligned to its size."""
    codes = SIGNATURES[name]
    if len(codes) != len(values):
        raise TypeError(f"{name} takes {len(codes)} arguments, got {len(values)}")
    blob, offsets = b"", []
    for code, value in zip(codes, values):
        fmt = "<" + _STRUCT[code]
        size = struct.calcsize(fmt)
        blob += b"\0" * (-len(blob) % size)
        offsets.append(len(blob))
        blob += struct.pack(fmt, int(value))
    return blob, offsets


# ---- launch geometry -------------------------------------------------------------------------

# Dynamic shared memory per block: every GPU grants 48 KiB (static + dynamic) without an
# opt-in; the appearance kernels keep ~2.2 KiB of static shared memory (block reductions, taps).
SHARED_BYTES = 44 * 1024
MAX_GRID_YZ = 65535
MAX_GRID_X = 2**31 - 1
# csrc/cuda/device.cuh packs the node counts of the coarse grids (limits: csrc/common/defs.h)
MAX_SCALES, MAX_NODES = MAX_GRID_SCALES, MAX_GRID_NODES
GMM_THREADS = 512                # __launch_bounds__ of the gmm kernels
RESAMPLE_TILES = 1024            # blocks per pair of a resampling pass (grid-stride loops)
THREADS = 256                    # the other kernels (a power of two <= 256: block reductions)


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def pack_nodes(name: str, nodes) -> int:
    """Node counts of the scales of a grid set in one 64-bit kernel argument."""
    nodes = list(nodes)
    if not 1 <= len(nodes) <= MAX_SCALES or not all(2 <= n <= MAX_NODES for n in nodes):
        raise ValueError(f"backend 'cuda' supports 1 to {MAX_SCALES} scales of 2 to "
                         f"{MAX_NODES} nodes in {name}, got {nodes}")
    packed = len(nodes)
    for s, n in enumerate(nodes):
        packed |= n << (4 + 10 * s)
    return packed


def _columns(width: int) -> int:
    """Columns of a gmm block: a power of two, 32 to 128 (one warp at least)."""
    return max(32, min(128, 1 << (width - 1).bit_length()))


def gmm_plan(shape, num_labels: int, field_nodes, warp_nodes, mode: str):
    """(grid, block, shared bytes, labels per chunk, fields in shared memory) of gmm_shapes."""
    d, rows_total, width = len(shape), math.prod(shape[:-1]), shape[-1]
    cols = _columns(width)
    line = sum(warp_nodes)
    field_floats = sum(n ** d for n in field_nodes)
    for rows in range(min(GMM_THREADS // cols, rows_total), 0, -1):
        lines = rows * d * line
        if mode == "blobs":
            chunk, in_smem = num_labels, 1
            floats = lines + num_labels * (d + d * (d + 1) // 2 + 1)
        else:
            in_smem = int(4 * (lines + field_floats) <= SHARED_BYTES)
            per_label = lines + in_smem * field_floats
            chunk = min(num_labels, SHARED_BYTES // (4 * per_label))
            floats = chunk * per_label
        if chunk >= 1 and 4 * floats <= SHARED_BYTES:
            return ((_cdiv(width, cols), _cdiv(rows_total, rows)), (cols, rows, 1), 4 * floats,
                    chunk, in_smem)
    raise ValueError(f"backend 'cuda': warp grids {list(warp_nodes)} are too large for the "
                     f"shapes kernel's shared memory at width {width}")


def row_plan(shape, lattice_w: int, voxels_per_block: int, extra_per_row: int = 0):
    """Rows per block of a row pass: about voxels_per_block voxels, shared memory of
    rows * (lattice_w + extra_per_row) floats."""
    rows_total, width = math.prod(shape[:-1]), shape[-1]
    per_row = lattice_w + extra_per_row
    if 4 * per_row > SHARED_BYTES:
        raise ValueError(f"backend 'cuda': rows of {width} voxels (bias lattice of {lattice_w} "
                         "nodes) do not fit in shared memory")
    rows = max(1, min(rows_total, voxels_per_block // width, SHARED_BYTES // (4 * per_row)))
    return rows, _cdiv(rows_total, rows), 4 * rows * per_row


def blur_plan(shape, axis: int):
    """(outer, length, inner, tile_inner, tiles, shared bytes) of the blur along `axis`."""
    outer, length, inner = math.prod(shape[:axis]), shape[axis], math.prod(shape[axis + 1:])
    if 4 * length > SHARED_BYTES:
        raise ValueError(f"backend 'cuda' blurs lines of at most {SHARED_BYTES // 4} voxels, "
                         f"got {length}")
    tile = min(inner, 32)
    while tile > 1 and 4 * length * tile > SHARED_BYTES:
        tile //= 2
    return outer, length, inner, tile, outer * _cdiv(inner, tile), 4 * length * tile


def _grid(x: int, y: int = 1, z: int = 1) -> tuple[int, int, int]:
    return (max(1, min(x, MAX_GRID_X)), max(1, min(y, MAX_GRID_YZ)), max(1, min(z, MAX_GRID_YZ)))


# ---- the four ops with kernels (spline_maximum runs the reference, below) -----------------

class Kernels:
    """The four backend functions on top of a launcher: an object with
    launch(name, grid, block, shared_bytes, stream, device, args, offsets)
    (rasd_kernels._cuda, the CuPy launcher below, or the CPU emulation of the tests)."""

    def __init__(self, launcher):
        self.launcher = launcher

    def _launch(self, name, grid, block, shared, where: torch.Tensor, *values) -> None:
        if where.device.type == "cuda":
            device = where.device.index if where.device.index is not None else \
                torch.cuda.current_device()
            stream = torch.cuda.current_stream(device).cuda_stream
        else:  # the CPU emulation
            device, stream = -1, 0
        args, offsets = pack_arguments(name, values)
        self.launcher.launch(name, tuple(grid), tuple(block), int(shared), int(stream),
                             int(device), args, offsets)

    def philox_fill(self, out, sample_index, seed: int, stream: int, distribution: str) -> None:
        batch, per = out.shape[0], out[0].numel()
        if out.numel() == 0:
            return
        blocks = _cdiv(per, 4)
        self._launch("rasd_philox_fill", _grid(min(_cdiv(blocks, THREADS), 4096), batch),
                     (THREADS, 1, 1), 0, out, out.data_ptr(), sample_index.data_ptr(), batch,
                     per, seed, stream, int(distribution == "normal"))

    def gmm_shapes(self, labels, fields, warps, field_nodes, warp_nodes, mode: str,
                   border: str = "edge") -> None:
        shape = tuple(labels.shape[1:])
        d, batch, K = len(shape), labels.shape[0], fields.shape[1]
        xy, block, shared, chunk, in_smem = gmm_plan(shape, K, field_nodes, warp_nodes, mode)
        grid = _grid(xy[0], xy[1], batch)
        sizes = (shape[0] if d == 3 else 1, shape[-2], shape[-1])
        wn = pack_nodes("warp_nodes", warp_nodes)
        if mode == "blobs":
            self._launch(f"rasd_gmm_blobs_{d}d", grid, block, shared, labels, labels.data_ptr(),
                         fields.data_ptr(), warps.data_ptr(), batch, K, *sizes, wn)
        else:
            self._launch(f"rasd_gmm_perlin_{d}d", grid, block, shared, labels,
                         labels.data_ptr(), fields.data_ptr(), warps.data_ptr(), batch, K,
                         *sizes, pack_nodes("field_nodes", field_nodes), wn, chunk, in_smem,
                         int(border == "zeros"))

    @staticmethod
    def _lattice(shape, coef):
        d, nodes = len(shape), tuple(coef.shape[2:])
        return (shape[0] if d == 3 else 1, shape[-2], shape[-1]), \
            (nodes[0] if d == 3 else 1, nodes[-2], nodes[-1])

    def bias_field(self, image, coef, scalars) -> None:
        shape = tuple(image.shape[2:])
        pairs = image.shape[0] * image.shape[1]
        sizes, nodes = self._lattice(shape, coef)
        rows, tiles, shared = row_plan(shape, nodes[-1], 1024)
        self._launch(f"rasd_bias_field_{len(shape)}d", _grid(tiles, pairs), (THREADS, 1, 1),
                     shared, image, image.data_ptr(), coef.data_ptr(), scalars.data_ptr(),
                     pairs, *sizes, *nodes, scalars.shape[2], rows)

    def appearance(self, image, labels, label_stats, bias_coef, scalars, stats, sample_index,
                   seed: int) -> None:
        shape = tuple(image.shape[2:])
        d, batch, apps, K = len(shape), image.shape[0], image.shape[1], label_stats.shape[2]
        pairs, voxels = batch * apps, math.prod(shape)
        sizes, nodes = self._lattice(shape, bias_coef)
        block = (THREADS, 1, 1)
        self._launch("rasd_appearance_init", _grid(_cdiv(pairs, THREADS)), block, 0, image,
                     stats.data_ptr(), pairs)
        common = (label_stats.data_ptr(), bias_coef.data_ptr(), scalars.data_ptr(),
                  stats.data_ptr(), sample_index.data_ptr(), seed, batch, apps, K, *sizes,
                  *nodes)
        rows, tiles, shared = row_plan(shape, nodes[-1], 1024)
        self._launch(f"rasd_appearance_max_abs_{d}d", _grid(tiles, pairs), block, shared, image,
                     labels.data_ptr(), *common, rows)
        rows, tiles, shared = row_plan(shape, nodes[-1], 2048, extra_per_row=shape[-1])
        self._launch(f"rasd_appearance_noise_w_{d}d", _grid(tiles, pairs), block, shared, image,
                     image.data_ptr(), labels.data_ptr(), *common, rows)
        for axis in reversed(range(d)):  # W (blurred by noise_w), H, then D
            if axis < d - 1:
                self._axis_pass("blur", image, scalars, stats, pairs, shape, axis, tiles=None)
            # Every pair's scalars say whether it resamples the axis (no host sync to ask):
            # a capped grid keeps the launch cheap where none does.
            self._axis_pass("resample", image, scalars, stats, pairs, shape, axis,
                            tiles=RESAMPLE_TILES)
        self._launch("rasd_appearance_normalise", _grid(min(_cdiv(voxels, 4 * THREADS), 4096),
                                                        pairs),
                     block, 0, image, image.data_ptr(), scalars.data_ptr(), stats.data_ptr(),
                     labels.data_ptr(), pairs, apps, voxels, layout.scalar_count(d),
                     layout.gamma(d), layout.clear_background(d))

    def _axis_pass(self, kind, image, scalars, stats, pairs, shape, axis, tiles):
        """The blur or the resampling of one axis of every pair (whole lines per block)."""
        outer, length, inner, tile, count, shared = blur_plan(shape, axis)
        grid = _grid(count if tiles is None else min(count, tiles), pairs)
        self._launch(f"rasd_appearance_{kind}_axis_{len(shape)}d", grid, (THREADS, 1, 1),
                     shared, image, image.data_ptr(), scalars.data_ptr(), stats.data_ptr(),
                     pairs, outer, length, inner, tile, axis)


# ---- kernel sources (CuPy / NVRTC) -------------------------------------------------------------

# NVRTC has no C++ standard library; the headers need only these types from it (device math
# such as floor, exp and sqrt is built into NVRTC).
_NVRTC_PRELUDE = """\
typedef signed char int8_t;
typedef unsigned char uint8_t;
typedef short int16_t;
typedef unsigned short uint16_t;
typedef int int32_t;
typedef unsigned int uint32_t;
typedef long long int64_t;
typedef unsigned long long uint64_t;
"""
_STD_HEADERS = {"cstdint", "cstring", "cmath", "cstddef"}
_INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]')


def sources_root() -> Path:
    """The folder holding common/ and cuda/: package data of an installed wheel
    (rasd_kernels/csrc) or csrc/ of a source checkout."""
    here = Path(__file__).resolve().parent.parent
    for root in (here / "csrc", here.parent / "csrc"):
        if (root / "cuda" / SOURCES[0]).is_file() and (root / "common").is_dir():
            return root
    raise FileNotFoundError(
        f"the CUDA kernel sources are neither in {here / 'csrc'} (installed package) nor in "
        f"{here.parent / 'csrc'} (source checkout); reinstall rasd_kernels")


def kernel_source(root: Path | None = None) -> str:
    """All kernels as one self-contained translation unit for NVRTC: includes of the project's
    headers are inlined once each (they all use #pragma once), standard headers dropped.
    Self-contained, so CuPy's cache (keyed by the source text) sees every header change."""
    root = root or sources_root()
    seen: set[Path] = set()
    out = [_NVRTC_PRELUDE]

    def inline(path: Path) -> None:
        path = path.resolve()
        if path in seen:
            return
        seen.add(path)
        name = path.relative_to(root.resolve()).as_posix()
        out.append(f'#line 1 "{name}"')
        for number, text in enumerate(path.read_text().splitlines(), start=1):
            match = _INCLUDE.match(text)
            if text.strip() == "#pragma once":
                out.append("")
            elif match and match.group(1) == '"':
                target = next((p for p in (path.parent / match.group(2), root / match.group(2))
                               if p.is_file()), None)
                if target is None:
                    raise FileNotFoundError(f"{name}:{number}: cannot find {match.group(2)}")
                inline(target)
                out.append(f'#line {number + 1} "{name}"')
            elif match and match.group(2) in _STD_HEADERS:
                out.append("")
            else:  # code, or a host-only include inside #ifndef __CUDACC_RTC__
                out.append(text)

    for source in SOURCES:
        inline(root / "cuda" / source)
    return "\n".join(out) + "\n"


NVRTC_OPTIONS = ("-std=c++17",)


def compile_ptx(arch: str = "compute_90", source: str | None = None) -> str:
    """Compile every kernel to PTX with NVRTC (a compile check; needs no GPU)."""
    from cupy.cuda import nvrtc

    source = source or kernel_source()
    program = nvrtc.createProgram(source, "rasd_kernels.cu", [], [])
    try:
        try:
            nvrtc.compileProgram(program, [*NVRTC_OPTIONS, f"-arch={arch}"])
        except nvrtc.NVRTCError as exc:
            raise RuntimeError(f"NVRTC failed: {exc}\n{nvrtc.getProgramLog(program)}") from None
        ptx = nvrtc.getPTX(program)
        return ptx.decode() if isinstance(ptx, bytes) else ptx
    finally:
        nvrtc.destroyProgram(program)


class CupyLauncher:
    """Compiles kernel_source() with CuPy at first use (cached per device by CuPy, on disk
    across processes) and launches on torch's stream through cupy.cuda.ExternalStream."""

    _NUMPY = {"P": "uint64", "i": "int32", "I": "uint32", "q": "int64", "Q": "uint64"}

    def __init__(self):
        import cupy
        import numpy

        self._cupy, self._numpy = cupy, numpy
        self._module = None
        self._functions: dict = {}
        self._streams: dict = {}

    def device_count(self) -> tuple[int, str]:
        try:
            from cupy.cuda import nvrtc
            nvrtc.getVersion()
        except Exception as exc:  # noqa: BLE001 (any loader error means the same thing)
            return 0, (f"CuPy cannot load NVRTC ({exc}); `pip install nvidia-cuda-nvrtc` "
                       "matching CuPy's CUDA version")
        try:
            count = self._cupy.cuda.runtime.getDeviceCount()
        except Exception as exc:  # noqa: BLE001 (CUDARuntimeError without a driver)
            return 0, str(exc)
        return count, "" if count else "CuPy found no device"

    def _function(self, name: str, device: int):
        key = (name, device)
        if key not in self._functions:
            with self._cupy.cuda.Device(device):
                if self._module is None:
                    self._module = self._cupy.RawModule(code=kernel_source(),
                                                        options=NVRTC_OPTIONS)
                self._functions[key] = self._module.get_function(name)
        return self._functions[key]

    def launch(self, name, grid, block, shared_bytes, stream, device, args, offsets) -> None:
        values = []
        for code, off in zip(SIGNATURES[name], offsets):
            fmt = "<" + _STRUCT[code]
            raw = struct.unpack_from(fmt, args, off)[0]
            values.append(getattr(self._numpy, self._NUMPY[code])(raw))
        key = (stream, device)
        if key not in self._streams:
            self._streams[key] = self._cupy.cuda.ExternalStream(stream, device)
        function = self._function(name, device)
        with self._cupy.cuda.Device(device):
            function(grid, block, tuple(values), shared_mem=shared_bytes,
                     stream=self._streams[key])


# ---- which launcher runs here ------------------------------------------------------------------

_INSTALL_HINT = ("install CuPy for the run-time compiled kernels (`pip install cupy-cuda13x "
                 "nvidia-cuda-nvrtc`) or build the package with a CUDA toolkit (nvcc on PATH; "
                 "`pip install .` builds rasd_kernels._cuda when it finds one)")


@functools.lru_cache(maxsize=None)
def _launcher():
    """(launcher or None, why not): rasd_kernels._cuda first, else CuPy."""
    errors = []
    try:
        from .. import _cuda
        return _cuda, ""
    except ImportError as exc:
        errors.append(f"rasd_kernels._cuda: {exc}")
    try:
        return CupyLauncher(), ""
    except ImportError as exc:
        errors.append(f"cupy: {exc}")
    return None, ("backend 'cuda' has no kernels here (" + "; ".join(errors) + "): "
                  + _INSTALL_HINT)


@functools.lru_cache(maxsize=None)
def unavailable_reason() -> str | None:
    """None when the CUDA kernels can run here, else why not (cached: called per op)."""
    launcher, why = _launcher()
    if launcher is None:
        return why
    count, error = launcher.device_count()
    if count == 0:
        return f"backend 'cuda': no CUDA device ({error})"
    if not torch.cuda.is_available():
        return ("backend 'cuda': torch cannot use the CUDA device (a CPU-only torch build?); "
                "install a CUDA build of torch")
    return None


def _kernels() -> Kernels:
    reason = unavailable_reason()
    if reason is not None:
        raise RuntimeError(reason)
    return _default_kernels()


@functools.lru_cache(maxsize=None)
def _default_kernels() -> Kernels:
    return Kernels(_launcher()[0])


def philox_fill(out, sample_index, seed: int, stream: int, distribution: str) -> None:
    _kernels().philox_fill(out, sample_index, seed, stream, distribution)


def gmm_shapes(labels, fields, warps, field_nodes, warp_nodes, mode: str,
               border: str = "edge") -> None:
    _kernels().gmm_shapes(labels, fields, warps, field_nodes, warp_nodes, mode, border)


def bias_field(image, coef, scalars) -> None:
    _kernels().bias_field(image, coef, scalars)


def spline_maximum(coef, scalars, size) -> torch.Tensor:
    """A few small matrix products per batch: torch's own (the reference), no kernel."""
    _kernels()
    return reference_spline_maximum(coef, scalars, size)


def appearance(image, labels, label_stats, bias_coef, scalars, stats, sample_index,
               seed: int) -> None:
    _kernels().appearance(image, labels, label_stats, bias_coef, scalars, stats, sample_index,
                          seed)
