"""Triton philox_fill: out [B, ...] float32 filled with Philox uniforms or normals.

One program writes 4 * QUADS consecutive elements of one row: it runs one Philox block per
4 elements (no redundant rounds), one Box-Muller per pair, and interleaves the four words so
that every thread stores consecutive elements (vectorised, coalesced stores).
"""

import math

import torch
import triton
import triton.language as tl

from . import philox
from . import _launch


@triton.jit(do_not_specialize=["seed", "stream"])
def _philox_fill_kernel(out_ptr, sample_ptr, per_sample, blocks_per_row, seed, stream,
                        NORMAL: tl.constexpr, QUADS: tl.constexpr):
    pid = tl.program_id(0)
    row = pid // blocks_per_row
    start = (pid % blocks_per_row).to(tl.int64) * (4 * QUADS)
    sample = tl.load(sample_ptr + row)
    block = start // 4 + tl.arange(0, QUADS)
    r0, r1, r2, r3 = philox.block_words(seed, sample, stream, block)
    if NORMAL:
        v0, v1 = philox.box_muller(r0, r1)
        v2, v3 = philox.box_muller(r2, r3)
    else:
        v0 = philox.uniform(r0)
        v1 = philox.uniform(r1)
        v2 = philox.uniform(r2)
        v3 = philox.uniform(r3)
    # interleave(interleave(v0, v2), interleave(v1, v3)) = v0 v1 v2 v3 of block 0, block 1, ..
    values = tl.interleave(tl.interleave(v0, v2), tl.interleave(v1, v3))
    element = start + tl.arange(0, 4 * QUADS)
    tl.store(out_ptr + row.to(tl.int64) * per_sample + element, values,
             mask=element < per_sample)


def philox_fill(out: torch.Tensor, sample_index: torch.Tensor, seed: int, stream: int,
                distribution: str) -> None:
    """Fill out [B, ...] in place (see rasd_kernels.ops.philox_fill)."""
    batch = out.shape[0]
    per_sample = out[0].numel()
    if per_sample == 0:
        return
    # The interpreter pays per program: one program per row there; 1024 elements on a GPU.
    quads = min(_launch.pow2(math.ceil(per_sample / 4)), 1 << 16)
    if not _launch.interpreter_tiles():
        quads = 256
    blocks_per_row = triton.cdiv(per_sample, 4 * quads)
    _philox_fill_kernel[(batch * blocks_per_row,)](
        out, sample_index, per_sample, blocks_per_row, seed, stream,
        NORMAL=distribution == "normal", QUADS=quads, num_warps=4)
