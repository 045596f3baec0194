"""The published RaSD generator, written out literally in plain PyTorch.

This is the construction of the paper (SPEC sections 2 and 3) computed the way its authors'
code computes it, one sample at a time, materialising every full-resolution intermediate:

  anatomy    K fields phi_k = sum_s a_s up(F_{k,s}) and K displacement fields
             u_k = sum_s c_s up(W_{k,s}) at full resolution (up = trilinear / bilinear
             upsampling, align_corners=True); each phi_k resampled through its own u_k with
             grid_sample (zero padding); label = argmax_k.
  appearance x = m[y] (+ s[y] n1); bias: full-resolution white noise of std ~ U(0.01, 0.1),
             Gaussian blur of per-axis FWHM ~ U(16, 32) voxels, rescaled so that the blurred
             maximum equals the noise maximum, x *= exp(bias); x += sigma_n max|x| n2;
             Gaussian blur of per-axis sigma ~ U(0, 1); min-max; x ** gamma.

It is the yardstick of rasd_kernels: tests/test_fidelity.py compares the distributions of its
outputs with ours and the benchmarks time it. It is deliberately not optimised.

Randomness: one torch.Generator per (seed, sample index, part). It agrees with the Philox
streams of rasd_kernels in distribution only, never sample for sample. The bias has a
generator of its own, so `log_bias` returns exactly the field that `generate` applies.

Where the published description is silent we choose, and say so: the bias blur kernel is
truncated at 4 sigma with zero borders (what F.conv3d(padding=r) and MONAI's GaussianFilter
do); the image blur replicates the edge voxel. Reflecting borders (scipy.ndimage's default)
would fold the white noise onto itself, doubling its blurred variance on the faces and
multiplying it by 8 at the corners: the maximum then sits at a corner and the field's
standard deviation relative to its maximum drops by 22 % at 128^3, whereas zero and periodic
borders agree with each other.
"""

from __future__ import annotations

import hashlib
import math

import torch
import torch.nn.functional as F

from rasd_kernels.config import SynthesisConfig

FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
BIAS_TRUNCATE = 4.0        # bias blur kernel radius, in standard deviations
BIAS_PADDING = "constant"  # bias blur border: zeros, as F.conv3d(padding=r) and MONAI do
NORMALISE_EPS = 1e-6


# ---- randomness --------------------------------------------------------------------------

def sample_generator(seed: int, index: int, part: str, device) -> torch.Generator:
    """A torch.Generator of its own for one part ("anatomy", "appearance<c>", "bias<c>") of
    one sample, so that parts can be replayed separately."""
    digest = hashlib.blake2b(f"{seed}/{index}/{part}".encode(), digest_size=8).digest()
    gen = torch.Generator(device=device)
    gen.manual_seed(int.from_bytes(digest, "little") >> 1)
    return gen


def _uniform(gen: torch.Generator, lo: float, hi: float, size: int, device) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(size, generator=gen, device=device)


# ---- anatomy -----------------------------------------------------------------------------

def upsample(coarse: torch.Tensor, shape) -> torch.Tensor:
    """[N, C, n, .., n] -> [N, C, *shape], nodes on the volume's corners (align_corners)."""
    mode = "trilinear" if len(shape) == 3 else "bilinear"
    return F.interpolate(coarse, size=tuple(shape), mode=mode, align_corners=True)


def multiscale_field(gen, lead: tuple[int, int], nodes, amplitudes, shape, device):
    """sum_s amplitudes[s] * up(N(0, 1) grid of nodes[s] per axis): [*lead, *shape].

    One full-resolution tensor per scale, vectorised over the K labels and the channels.
    """
    d = len(shape)
    out = torch.zeros(*lead, *shape, device=device)
    for amplitude, n in zip(amplitudes, nodes):
        coarse = torch.randn(*lead, *([n] * d), generator=gen, device=device)
        out += amplitude * upsample(coarse, shape)
    return out


def voxel_grid(shape, device) -> torch.Tensor:
    """[d, *shape] voxel coordinates in (D, H, W) order."""
    axes = [torch.arange(n, dtype=torch.float32, device=device) for n in shape]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"))


def label_map(gen, shape, num_labels: int, config: SynthesisConfig, device,
              padding_mode: str = "zeros") -> torch.Tensor:
    """y = argmax_k phi_k(p + u_k(p)) as uint8 [*shape] (SPEC 2, published construction).

    padding_mode "zeros" is the published code: a field sampled outside the volume reads 0.
    "border" reads the border value instead, the intended function that rasd_kernels
    evaluates (SPEC 2), on the same random draws.
    """
    d, K = len(shape), num_labels
    field_amp = _uniform(gen, 0.0, config.field_std_max, len(config.field_nodes), device)
    warp_amp = _uniform(gen, 0.0, config.warp_std_for(tuple(shape)), len(config.warp_nodes),
                        device)
    phi = multiscale_field(gen, (K, 1), config.field_nodes, field_amp, shape, device)
    u = multiscale_field(gen, (K, d), config.warp_nodes, warp_amp, shape, device)  # voxels
    q = voxel_grid(shape, device) + u                                 # [K, d, *S]
    # grid_sample: coordinates in [-1, 1] with -1 and 1 on the first and last voxel centres
    # (align_corners=True), last dimension ordered (x, y, z) = (W, H, D).
    size = torch.tensor(shape, dtype=torch.float32, device=device).reshape(d, *([1] * d))
    grid = (2.0 * q / (size - 1.0) - 1.0).flip(1).movedim(1, -1)     # [K, *S, d]
    warped = F.grid_sample(phi, grid, mode="bilinear", padding_mode=padding_mode,
                           align_corners=True)                        # [K, 1, *S]
    return warped[:, 0].argmax(0).to(torch.uint8)                     # ties: lowest k


# ---- appearance --------------------------------------------------------------------------

def gaussian_blur(x: torch.Tensor, sigmas, radii, padding: str) -> torch.Tensor:
    """Separable Gaussian blur of x [N, C, *S] (C = 1), one 1-D convolution per axis.

    F.pad orders its pairs from the last axis; radius 0 leaves the axis untouched.
    """
    d = x.dim() - 2
    conv = (F.conv1d, F.conv2d, F.conv3d)[d - 1]
    for axis, (sigma, radius) in enumerate(zip(sigmas, radii)):
        if radius == 0:
            continue
        i = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
        taps = torch.exp(-0.5 * (i / float(sigma)) ** 2)
        kernel_shape = [1] * d
        kernel_shape[axis] = 2 * radius + 1
        pad = [0] * (2 * d)
        pad[2 * (d - 1 - axis)] = pad[2 * (d - 1 - axis) + 1] = radius
        x = conv(F.pad(x, pad, mode=padding), (taps / taps.sum()).reshape(1, 1, *kernel_shape))
    return x


def bias_log_field(gen, shape, config: SynthesisConfig, device, std=None, fwhm=None):
    """(log-bias [*shape], std, fwhm [d]) of one sample, the published construction.

    Full-resolution white noise of std ~ U(bias_std range), blurred with per-axis
    FWHM ~ U(bias_fwhm range) voxels, rescaled so that its maximum equals the noise maximum.
    `std` / `fwhm` override the drawn values (the draws still happen, so the noise is the
    same either way).
    """
    d = len(shape)
    drawn_std = _uniform(gen, config.bias_std_min, config.bias_std_max, 1, device)[0]
    drawn_fwhm = _uniform(gen, config.bias_fwhm_min, config.bias_fwhm_max, d, device)
    std = drawn_std if std is None else torch.as_tensor(std, device=device).float()
    fwhm = drawn_fwhm if fwhm is None else torch.as_tensor(fwhm, device=device).float()
    noise = std * torch.randn(1, 1, *shape, generator=gen, device=device)
    sigmas = (fwhm / FWHM_PER_SIGMA).tolist()
    # Taps farther than n - 1 voxels only ever read the zero border: truncating there is exact.
    radii = [min(math.ceil(BIAS_TRUNCATE * s), n - 1) for s, n in zip(sigmas, shape)]
    blurred = gaussian_blur(noise, sigmas, radii, BIAS_PADDING)
    field = blurred * (noise.max() / blurred.max())
    return field[0, 0], std, fwhm


def render(labels: torch.Tensor, num_labels: int, config: SynthesisConfig, gen, bias_gen,
           device) -> torch.Tensor:
    """One image [*S] float32 in [0, 1] from a label map (SPEC 3, in its order)."""
    shape = tuple(labels.shape)
    d = len(shape)
    mean = _uniform(gen, config.mean_min, config.mean_max, num_labels, device)
    texture = _uniform(gen, config.texture_std_min, config.texture_std_max, num_labels, device)
    y = labels.long()
    x = mean[y]
    if config.texture_enabled:
        x = x + texture[y] * torch.randn(shape, generator=gen, device=device)
    x = x * torch.exp(bias_log_field(bias_gen, shape, config, device)[0])
    noise_std = _uniform(gen, config.noise_std_min, config.noise_std_max, 1, device)[0]
    x = x + noise_std * x.abs().max() * torch.randn(shape, generator=gen, device=device)
    sigmas = _uniform(gen, config.blur_sigma_min, config.blur_sigma_max, d, device).tolist()
    radii = [int(math.floor(3.0 * s + 0.5)) for s in sigmas]
    x = gaussian_blur(x[None, None], sigmas, radii, "replicate")[0, 0]
    gamma = _uniform(gen, config.gamma_min, config.gamma_max, 1, device)[0]
    lo, hi = x.min(), x.max()
    return ((x - lo) / (hi - lo + NORMALISE_EPS)) ** gamma


# ---- public API --------------------------------------------------------------------------

def _check(shape, num_labels: int, config: SynthesisConfig) -> tuple[int, ...]:
    shape = tuple(int(n) for n in shape)
    if len(shape) not in (2, 3) or min(shape) < 2:
        raise ValueError(f"shape must be 2D or 3D with every size >= 2, got {shape}")
    if not 1 <= num_labels <= 255:
        raise ValueError(f"num_labels must be in [1, 255], got {num_labels}")
    if config.shapes != "perlin":
        raise ValueError("the published generator has only shapes='perlin', got "
                         f"{config.shapes!r}")
    return shape


def generate(batch: int, shape, num_labels: int, *, seed: int,
             config: SynthesisConfig = SynthesisConfig(), device="cpu",
             start_index: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(image [B, C, *S] float32 in [0, 1], label [B, *S] uint8), C = config.channels (1 by
    default), sample b drawn from the generators of (seed, start_index + b)."""
    shape = _check(shape, num_labels, config)
    device = torch.device(device)
    image = torch.empty(batch, config.channels, *shape, device=device)
    label = torch.empty(batch, *shape, dtype=torch.uint8, device=device)
    for b in range(batch):   # the published loop makes one sample at a time
        index = start_index + b
        label[b] = label_map(sample_generator(seed, index, "anatomy", device), shape,
                             num_labels, config, device)
        for c in range(config.channels):
            image[b, c] = render(label[b], num_labels, config,
                                 sample_generator(seed, index, f"appearance{c}", device),
                                 sample_generator(seed, index, f"bias{c}", device), device)
    return image, label


def labels(batch: int, shape, num_labels: int, *, seed: int,
           config: SynthesisConfig = SynthesisConfig(), device="cpu", start_index: int = 0,
           padding_mode: str = "zeros") -> torch.Tensor:
    """The label maps [B, *S] uint8 of `generate` (same seed, same maps) without the images;
    padding_mode "border" gives the intended-function variant of the same draws."""
    shape = _check(shape, num_labels, config)
    device = torch.device(device)
    return torch.stack([label_map(sample_generator(seed, start_index + b, "anatomy", device),
                                  shape, num_labels, config, device, padding_mode)
                        for b in range(batch)])


def log_bias(batch: int, shape, *, seed: int, config: SynthesisConfig = SynthesisConfig(),
             device="cpu", start_index: int = 0, std=None, fwhm=None):
    """The log-bias fields that `generate` applies (channel 0), alone, to measure them.

    Returns (psi [B, *S] float32, std [B], fwhm [B, d]). `std` [B] and `fwhm` [B, d], when
    given, replace the drawn parameters (to compare constructions at equal parameters).
    """
    shape = tuple(int(n) for n in shape)
    device = torch.device(device)
    fields, stds, fwhms = [], [], []
    for b in range(batch):
        gen = sample_generator(seed, start_index + b, "bias0", device)
        psi, s, w = bias_log_field(gen, shape, config, device,
                                   None if std is None else std[b],
                                   None if fwhm is None else fwhm[b])
        fields.append(psi)
        stds.append(s)
        fwhms.append(w)
    return torch.stack(fields), torch.stack(stds), torch.stack(fwhms)
