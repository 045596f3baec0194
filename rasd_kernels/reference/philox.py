"""Philox4x32-10 in plain PyTorch integer arithmetic: the oracle for every backend's stream.

32-bit words live in int64 tensors; the 32x32 -> 64 bit products are split in 16-bit halves so
that nothing overflows int64.
"""

from __future__ import annotations

import math

import torch

M0, M1 = 0xD2511F53, 0xCD9E8D57
W0, W1 = 0x9E3779B9, 0xBB67AE85
MASK32 = 0xFFFFFFFF


def _mulhilo(a: torch.Tensor, m: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(high, low) 32-bit words of a * m for a in [0, 2^32) (int64), m a 32-bit constant."""
    m_hi, m_lo = m >> 16, m & 0xFFFF
    p_lo = a * m_lo                       # < 2^48
    p_hi = a * m_hi                       # < 2^48
    mid = p_hi + (p_lo >> 16)             # product >> 16, < 2^49
    hi = (mid >> 16) & MASK32
    lo = ((mid & 0xFFFF) << 16 | (p_lo & 0xFFFF)) & MASK32
    return hi, lo


def philox4x32_10(counter: tuple, key: tuple) -> tuple[torch.Tensor, ...]:
    """Ten Philox rounds. counter: four int64 tensors (or ints) of 32-bit words, key: two."""
    c0, c1, c2, c3 = (torch.as_tensor(c, dtype=torch.int64) for c in counter)
    k0, k1 = (torch.as_tensor(k, dtype=torch.int64) for k in key)
    for round_ in range(10):
        if round_ > 0:
            k0 = (k0 + W0) & MASK32
            k1 = (k1 + W1) & MASK32
        hi0, lo0 = _mulhilo(c0, M0)
        hi1, lo1 = _mulhilo(c2, M1)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
    return c0, c1, c2, c3


def random_words(seed: int, sample: torch.Tensor, stream: int, element: torch.Tensor):
    """The four output words of the Philox block that holds each element (broadcast)."""
    sample = torch.as_tensor(sample, dtype=torch.int64)
    element = torch.as_tensor(element, dtype=torch.int64)
    counter = (element >> 2, torch.full_like(element, stream), sample & MASK32, sample >> 32)
    key = (seed & MASK32, (seed >> 32) & MASK32)
    return philox4x32_10(counter, key)


def words_to_uniform(word: torch.Tensor) -> torch.Tensor:
    """Exact map of a 32-bit word to ((word >> 9) * 2 + 1) * 2^-24, a float32 in (0, 1)."""
    return ((word >> 9) * 2 + 1).to(torch.float64) * 2.0 ** -24


def uniform(seed: int, sample, stream: int, element) -> torch.Tensor:
    """U(0, 1) of each (sample, element), float64 (exactly representable in float32)."""
    words = torch.stack(random_words(seed, sample, stream, element), dim=-1)
    pick = (torch.as_tensor(element, dtype=torch.int64) & 3).expand(words.shape[:-1])
    return words_to_uniform(torch.gather(words, -1, pick.unsqueeze(-1)).squeeze(-1))


def normal(seed: int, sample, stream: int, element) -> torch.Tensor:
    """N(0, 1) of each (sample, element) by Box-Muller on a pair of words, in float64."""
    r = random_words(seed, sample, stream, element)
    element = torch.as_tensor(element, dtype=torch.int64)
    first_pair = ((element & 3) >> 1) == 0
    u_radius = words_to_uniform(torch.where(first_pair, r[0], r[2]))
    u_angle = words_to_uniform(torch.where(first_pair, r[1], r[3]))
    radius = torch.sqrt(-2.0 * torch.log(u_radius))
    angle = 2.0 * math.pi * u_angle
    return radius * torch.where((element & 1) == 0, torch.cos(angle), torch.sin(angle))


def fill(shape: tuple[int, ...], sample_index: torch.Tensor, seed: int, stream: int,
         distribution: str) -> torch.Tensor:
    """A float64 tensor [B, ...]: row b has global index sample_index[b], elements flat."""
    per_sample = math.prod(shape[1:])
    sample = torch.as_tensor(sample_index, dtype=torch.int64).cpu().reshape(-1, 1)
    element = torch.arange(per_sample, dtype=torch.int64).unsqueeze(0)
    draw = normal if distribution == "normal" else uniform
    return draw(seed, sample, stream, element).reshape(shape)
