"""Launch helpers shared by the Triton ops: interpreter detection and tile sizes."""

import os

import triton

# Tests set this to run the GPU tile sizes under the interpreter (many programs per sample,
# partial tiles at every border) on small inputs.
FORCE_GPU_TILES = False


def interpreting() -> bool:
    """True when Triton kernels run under the CPU interpreter (TRITON_INTERPRET=1)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def interpreter_tiles() -> bool:
    """Whole-sample tiles: the interpreter's cost is per program, a GPU wants many programs."""
    return interpreting() and not FORCE_GPU_TILES


def pow2(n: int) -> int:
    return max(1, triton.next_power_of_2(int(n)))


def flat_block(voxels: int, gpu_block: int, cap: int = 1 << 16) -> int:
    """Voxels per program of a flat tile: the whole sample (up to `cap`) under the
    interpreter, `gpu_block` on a GPU."""
    return min(pow2(voxels), cap) if interpreter_tiles() else gpu_block
