"""How much memory one synthesis call needs, and how much the device has free.

`synthesize` refuses a call whose outputs, parameter workspace and kernel scratch would not
fit, before allocating anything: a process that runs out of memory halfway may be killed
instead of raising. The counts follow what each backend allocates (an upper bound, not an
exact figure); tests/test_memory.py checks the bound against the peak memory of real calls.
"""

from __future__ import annotations

import math
import os

import torch

from . import params
from .config import BIAS_SPACING_PER_FWHM, SynthesisConfig
from .reference.spline_maximum import POINTS_PER_SPACING

F32, F64 = 4, 8
MAX_BLUR_RADIUS = 12          # round(3 sigma) at the largest blur sigma (4 voxels)
COLUMN_BLOCK = 64             # columns per unit of the CPU blur passes (csrc/cpu/appearance.cpp)


def workspace_bytes(batch: int, shape, num_labels: int, apps: int,
                    config: SynthesisConfig) -> int:
    """The per-call parameter workspace (rasd_kernels.params.Workspace)."""
    ws = params.make_workspace(batch, shape, num_labels, apps, config, "meta")
    return sum(t.numel() * t.element_size() for t in vars(ws).values())


def _spline_points(nodes) -> list[int]:
    return [POINTS_PER_SPACING * (n - 3) + 1 for n in nodes]


def cpu_scratch_bytes(batch: int, shape, num_labels: int, apps: int, config: SynthesisConfig,
                      threads: int) -> int:
    """What the C++ kernels allocate beyond their outputs (csrc/cpu/)."""
    d, shape = len(shape), tuple(shape)
    D, H, W = (1, *shape) if d == 2 else shape
    rows, pairs = D * H, batch * apps
    nodes = config.bias_nodes_for(shape)
    ny, nx = nodes[-2], nodes[-1]
    py = _spline_points(nodes)[-2]
    # Per pair: the bias lattice contracted along D at every slice (3D) and the column taps;
    # per-row maxima and per-unit minima / maxima of the appearance passes.
    per_pair = (D * ny * nx if d == 3 else 0) + 10 * W + 16
    per_pair += rows + 2 * (D + H) * math.ceil(W / COLUMN_BLOCK) + 2 * rows
    per_pair += 8 * (D + H + W)    # acquisition resampling: 4 taps per voxel of each axis
    # Per thread: the largest scratch of any loop (appearance rows and column blocks, the
    # spline maximum's planes, the label rows).
    per_thread = max(4 * W, 2 * W + 2 * MAX_BLUR_RADIUS,
                     (max(D, H) + 2 * MAX_BLUR_RADIUS) * COLUMN_BLOCK,
                     ny * nx + 2 * py * nx + py,
                     (3 + d) * W + max(config.warp_nodes))
    # The AVX-512 label kernel's field tables: 2^d coefficients per cell of the union of the
    # field lattices, per (sample, label).
    union = sum(config.field_nodes) if config.shapes == "perlin" else 1
    tables = batch * num_labels * (2 ** d + 1) * union ** d
    return F32 * (pairs * per_pair + (threads + 1) * per_thread + tables)


def reference_scratch_bytes(batch: int, shape, num_labels: int, apps: int,
                            config: SynthesisConfig) -> int:
    """The float64 reference's full-resolution intermediates (scores of every label, warped
    positions, the appearance chain of one image) and its dense spline contraction."""
    voxels, d = math.prod(shape), len(shape)
    scores = batch * num_labels * voxels
    per_label = 4 * d * voxels
    per_image = 12 * voxels
    return F64 * (scores + per_label + per_image) + spline_reference_bytes(batch, shape, apps,
                                                                           config)


def spline_reference_bytes(batch: int, shape, apps: int, config: SynthesisConfig) -> int:
    """The reference spline_maximum (also what the GPU backends run): its largest step holds
    the points of the contracted axes times the nodes of the others, twice, in float64."""
    nodes = list(config.bias_nodes_for(tuple(shape)))
    points = _spline_points(nodes)
    largest = max(math.prod(points[:a] + nodes[a:]) for a in range(len(nodes) + 1))
    return 2 * F64 * batch * apps * largest


def call_bytes(batch: int, shape, num_labels: int, apps: int, config: SynthesisConfig,
               backend: str, threads: int = 1) -> int:
    """Outputs, workspace and scratch of one synthesize call with a concrete backend."""
    shape = tuple(shape)
    voxels = math.prod(shape)
    outputs = batch * voxels * (F32 * apps + 1)
    total = outputs + workspace_bytes(batch, shape, num_labels, apps, config)
    if backend == "cpu":
        return total + cpu_scratch_bytes(batch, shape, num_labels, apps, config, threads)
    if backend == "reference":
        return total + reference_scratch_bytes(batch, shape, num_labels, apps, config)
    # triton and cuda: the kernels allocate nothing large; spline_maximum runs the reference.
    return total + spline_reference_bytes(batch, shape, apps, config)


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _cgroup_available() -> int | None:
    """Room left under a cgroup v2 memory limit (containers), if there is one."""
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            limit = f.read().strip()
        with open("/sys/fs/cgroup/memory.current") as f:
            used = int(f.read().strip())
    except (OSError, ValueError):
        return None
    return None if limit == "max" else max(0, int(limit) - used)


def _address_space_available() -> int | None:
    """Room left under `ulimit -v` (RLIMIT_AS), if it is set."""
    try:
        import resource
        limit = resource.getrlimit(resource.RLIMIT_AS)[0]
        if limit == resource.RLIM_INFINITY:
            return None
        with open("/proc/self/statm") as f:
            used = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (ImportError, OSError, ValueError):
        return None
    return max(0, limit - used)


def available_bytes(device: torch.device) -> int:
    """Free memory on `device`: for the CPU the least of what the system, a cgroup limit and
    an address-space limit leave."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    found = [v for v in (_meminfo_available(), _cgroup_available(), _address_space_available())
             if v is not None]
    return min(found) if found else 1 << 62


def bias_nodes_error(shape, config: SynthesisConfig) -> str | None:
    """Why the bias lattice along W does not fit a CPU row buffer (csrc/cpu/bias_field.h), if
    so."""
    nx = config.bias_nodes_for(tuple(shape))[-1]
    if nx > MAX_BIAS_NODES:
        return (f"config.bias_fwhm_min ({config.bias_fwhm_min}) is too small for a width of "
                f"{shape[-1]} voxels: the bias lattice would have {nx} control points along "
                f"W, at most {MAX_BIAS_NODES} are supported (raise bias_fwhm_min to at least "
                f"{math.ceil((shape[-1] - 1) / ((MAX_BIAS_NODES - 5) * BIAS_SPACING_PER_FWHM))})")
    return None


MAX_BIAS_NODES = 4096   # csrc/cpu/bias_field.h (the module exports it; a test compares)
