"""Philox stream ids: every random number is philox(seed, global sample index, stream, element).

Mirrored in csrc/common/streams.h; a test checks that the two agree.

Counter layout of one Philox4x32-10 call: (element >> 2, stream, sample & 0xffffffff,
sample >> 32); key (seed & 0xffffffff, seed >> 32). Element e takes output word e & 3
(uniform) or the Box-Muller pair (2j, 2j + 1), j = (e & 3) >> 1 (normal; cosine for even e,
sine for odd e).
"""

ANATOMY_PARAMS = 1    # uniform, per sample: amplitudes (perlin) or blob parameters
FIELD_GRIDS = 2       # normal, [K, sum(n^d)] coarse field grids
WARP_GRIDS = 3        # normal, [Kw, d, sum(n^d)] coarse warp grids
APPEARANCE_PARAMS = 4  # uniform, [A, n_params] per appearance a = view * C + channel
BIAS_GRIDS = 5        # normal, [A, prod(bias nodes)] bias spline coefficients
TEXTURE_NOISE = 6     # normal, [A, voxels] per-label texture noise n1
IMAGE_NOISE = 7       # normal, [A, voxels] additive noise n2
ACQUISITION_PARAMS = 8  # uniform, [A, n_acquisition] thick slices, low resolution, background

ALL = {name: value for name, value in globals().items() if name.isupper()}

# Elements per sample and stream are addressed by a 32-bit block counter of 4 elements.
MAX_ELEMENTS_PER_STREAM = 1 << 34
