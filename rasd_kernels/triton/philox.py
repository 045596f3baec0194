"""Philox4x32-10 and the uniform / normal maps, as Triton device functions.

Same stream as rasd_kernels.reference.philox, word for word: key (seed & 0xffffffff,
seed >> 32); counter (element >> 2, stream, sample & 0xffffffff, sample >> 32). Element e takes
word e & 3 (uniform) or the Box-Muller pair (r0, r1) if (e & 3) < 2 else (r2, r3) (normal,
cosine for even e, sine for odd e). All words are uint32; products wrap modulo 2^32.
"""

import triton
import triton.language as tl

# Round multipliers and Weyl key increments of Philox4x32 (Salmon et al., SC 2011).
M0 = tl.constexpr(0xD2511F53)
M1 = tl.constexpr(0xCD9E8D57)
W0 = tl.constexpr(0x9E3779B9)
W1 = tl.constexpr(0xBB67AE85)

TWO_POW_MINUS_24 = tl.constexpr(5.9604644775390625e-08)
TWO_PI = tl.constexpr(6.283185307179586)
HALF_PI = tl.constexpr(1.5707963267948966)


@triton.jit
def philox4x32_10(c0, c1, c2, c3, k0, k1):
    """Ten rounds on uint32 counter words (tensors or scalars) and key words."""
    for _ in tl.static_range(10):
        hi0 = tl.umulhi(c0, M0)
        lo0 = c0 * M0
        hi1 = tl.umulhi(c2, M1)
        lo1 = c2 * M1
        c0 = hi1 ^ c1 ^ k0
        c1 = lo1
        c2 = hi0 ^ c3 ^ k1
        c3 = lo0
        k0 = k0 + W0
        k1 = k1 + W1
    return c0, c1, c2, c3


@triton.jit
def key_words(seed):
    """(k0, k1) uint32 of a non-negative 64-bit seed (an int argument of any width)."""
    s = tl.to_tensor(seed).to(tl.uint64)
    return s.to(tl.uint32), (s >> 32).to(tl.uint32)


@triton.jit
def block_words(seed, sample, stream, block):
    """The four words of Philox block `block` (int64 tensor: element >> 2) of one sample.

    sample: int64 scalar (global sample index); stream: int stream id.
    """
    k0, k1 = key_words(seed)
    c0 = block.to(tl.uint32)
    c1 = tl.zeros_like(c0) + tl.to_tensor(stream).to(tl.uint32)
    sample = sample.to(tl.int64)
    c2 = tl.zeros_like(c0) + sample.to(tl.uint32)
    c3 = tl.zeros_like(c0) + (sample >> 32).to(tl.uint32)
    return philox4x32_10(c0, c1, c2, c3, k0, k1)


@triton.jit
def uniform(word):
    """((word >> 9) * 2 + 1) * 2^-24: exact in float32, in (0, 1)."""
    return ((word >> 9).to(tl.float32) * 2.0 + 1.0) * TWO_POW_MINUS_24


@triton.jit
def box_muller(a, b):
    """(cos, sin) normals of one pair of words."""
    radius = tl.sqrt(-2.0 * tl.log(uniform(a)))
    angle = TWO_PI * uniform(b)
    return radius * tl.cos(angle), radius * tl.sin(angle)


@triton.jit
def uniform_at(seed, sample, stream, element):
    """U(0, 1) of each element (int64 tensor)."""
    r0, r1, r2, r3 = block_words(seed, sample, stream, element >> 2)
    j = element & 3
    word = tl.where(j == 0, r0, tl.where(j == 1, r1, tl.where(j == 2, r2, r3)))
    return uniform(word)


@triton.jit
def normal_at(seed, sample, stream, element):
    """N(0, 1) of each element (int64 tensor), one transcendental of each kind per element.

    Odd elements take sin(angle) as cos(angle - pi / 2): one cosine instead of both.
    """
    r0, r1, r2, r3 = block_words(seed, sample, stream, element >> 2)
    first_pair = (element & 2) == 0
    radius = tl.sqrt(-2.0 * tl.log(uniform(tl.where(first_pair, r0, r2))))
    angle = TWO_PI * uniform(tl.where(first_pair, r1, r3))
    angle = tl.where((element & 1) == 0, angle, angle - HALF_PI)
    return radius * tl.cos(angle)
