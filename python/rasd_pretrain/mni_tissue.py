"""A real 2D segmentation task that needs no download: brain tissue on MNI152 axial slices.

nilearn ships the MNI152 2009a (nonlinear, symmetric) T1 template, skull-stripped, with its
grey- and white-matter probability maps inside the installed package; the loaders below read
those files and never touch the network. Four classes per pixel:

    0 background   outside the brain mask (nilearn's: T1 > 0.2)
    1 CSF          brain mask minus GM and WM (probability 1 - p_GM - p_WM, clipped at 0)
    2 GM           grey matter
    3 WM           white matter

Inside the mask a pixel takes the most probable of CSF, GM and WM. Every axial slice is cropped
to one square box around the whole brain (the same box for every slice), area-resampled to
``size x size``, and its probabilities are resampled before the argmax, so labels and image
stay aligned at any size. Intensities stay in [0, 1] as the template stores them.

Slices of one volume are strongly correlated: neighbours 1 mm apart are nearly identical. So
the split is by position: the training slices come from one band of the brain, the test slices
lie at least ``gap`` mm away from that band on either side (`split`).

    pip install 'rasd_kernels[finetune]'     # nilearn
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

CLASSES = ("background", "csf", "gm", "wm")
TISSUES = CLASSES[1:]
INSTALL_HINT = "pip install 'rasd_kernels[finetune]'"

# Training band at the level of the lateral ventricles (1 mm voxel index along z; the brain
# spans about 10 .. 155), and the distance in mm kept between that band and any test slice.
DEFAULT_BAND = (80, 100)
DEFAULT_GAP = 20


@dataclass(frozen=True)
class TissueSlices:
    """Axial slices of the template: image [Z, S, S] float32 in [0, 1], label [Z, S, S] int64
    in [0, 4), z [Z] the 1 mm voxel index of each slice, brain [Z] its brain area as a fraction
    of the largest one."""

    image: torch.Tensor
    label: torch.Tensor
    z: torch.Tensor
    brain: torch.Tensor

    def __len__(self) -> int:
        return int(self.z.numel())

    def at(self, zs) -> tuple[torch.Tensor, torch.Tensor]:
        """(image [N, 1, S, S], label [N, S, S]) of the slices at 1 mm indices `zs`."""
        where = {int(z): i for i, z in enumerate(self.z.tolist())}
        missing = [int(z) for z in zs if int(z) not in where]
        if missing:
            raise ValueError(f"no kept slice at z = {missing} (kept: {self.z.min().item()} .. "
                             f"{self.z.max().item()})")
        rows = torch.tensor([where[int(z)] for z in zs], dtype=torch.long)
        return self.image[rows, None], self.label[rows]


def _nilearn_datasets():
    try:
        return importlib.import_module("nilearn.datasets")
    except ImportError as exc:
        raise ImportError(f"the MNI tissue task needs nilearn ({exc}); install it with: "
                          f"{INSTALL_HINT}") from None


def load_template(resolution: int = 1) -> dict[str, np.ndarray]:
    """The packaged volumes as float32 arrays [X, Y, Z] (RAS): t1, gm, wm, mask."""
    ds = _nilearn_datasets()
    loaders = {"t1": ds.load_mni152_template, "gm": ds.load_mni152_gm_template,
               "wm": ds.load_mni152_wm_template, "mask": ds.load_mni152_brain_mask}
    return {name: np.asarray(f(resolution=resolution).dataobj, dtype=np.float32)
            for name, f in loaders.items()}


def _square_box(mask: np.ndarray, margin: int) -> tuple[slice, slice, int]:
    """One square (x, y) box holding the brain of every slice, plus `margin` voxels."""
    xs = np.flatnonzero(mask.any(axis=(1, 2)))
    ys = np.flatnonzero(mask.any(axis=(0, 2)))
    side = max(xs[-1] - xs[0], ys[-1] - ys[0]) + 1 + 2 * margin
    x0 = (xs[0] + xs[-1] + 1 - side) // 2
    y0 = (ys[0] + ys[-1] + 1 - side) // 2
    return slice(x0, x0 + side), slice(y0, y0 + side), side


def _crop_pad(volume: np.ndarray, box_x: slice, box_y: slice, side: int) -> np.ndarray:
    """volume[box_x, box_y, :] with zeros wherever the box leaves the volume."""
    out = np.zeros((side, side, volume.shape[2]), dtype=np.float32)
    sx = slice(max(box_x.start, 0), min(box_x.stop, volume.shape[0]))
    sy = slice(max(box_y.start, 0), min(box_y.stop, volume.shape[1]))
    out[sx.start - box_x.start:sx.stop - box_x.start,
        sy.start - box_y.start:sy.stop - box_y.start] = volume[sx, sy]
    return out


def labels_from_probabilities(gm: torch.Tensor, wm: torch.Tensor,
                              mask: torch.Tensor) -> torch.Tensor:
    """Class map (int64): 0 outside `mask`, else 1 + argmax(CSF, GM, WM) with
    p_CSF = max(0, 1 - p_GM - p_WM); ties go to the earlier class."""
    csf = (1.0 - gm - wm).clamp_min(0.0)
    tissue = torch.stack([csf, gm, wm]).argmax(dim=0) + 1
    return torch.where(mask, tissue, torch.zeros_like(tissue))


def build(size: int = 96, *, min_brain: float = 0.15, margin: int = 4,
          volumes: dict[str, np.ndarray] | None = None) -> TissueSlices:
    """Every axial slice whose brain area is at least `min_brain` of the largest one, at
    `size` x `size`. `volumes` (t1, gm, wm, mask as from `load_template`) replaces the packaged
    template, e.g. for tests."""
    if not isinstance(size, int) or size < 8:
        raise ValueError(f"size must be an int >= 8, got {size!r}")
    if not 0.0 <= min_brain < 1.0:
        raise ValueError(f"min_brain must be in [0, 1), got {min_brain}")
    v = volumes if volumes is not None else load_template(1)
    mask = v["mask"] > 0.5
    box_x, box_y, side = _square_box(mask, margin)
    stack = np.stack([_crop_pad(a, box_x, box_y, side)
                      for a in (v["t1"], v["gm"], v["wm"], mask.astype(np.float32))])
    # [4, X, Y, Z] -> [Z, 4, H, W] with H = anterior at the top (flipped Y), W = X.
    slices = torch.from_numpy(stack).permute(3, 0, 2, 1).flip(2).contiguous()
    slices = F.interpolate(slices, size=(size, size), mode="area")
    t1, gm, wm, inside = slices.unbind(1)
    inside = inside > 0.5
    area = inside.flatten(1).sum(1).double()
    brain = area / area.max()
    keep = brain >= min_brain
    label = labels_from_probabilities(gm, wm, inside)
    image = (t1 * inside).clamp(0.0, 1.0)
    return TissueSlices(image=image[keep].contiguous(), label=label[keep].contiguous(),
                        z=torch.arange(slices.shape[0])[keep], brain=brain[keep].float())


def train_slices(band: tuple[int, int], k: int) -> list[int]:
    """`k` slice indices spread evenly over the band [lo, hi] (k = 1: its middle)."""
    lo, hi = band
    if k < 1 or k > hi - lo + 1:
        raise ValueError(f"k must be in [1, {hi - lo + 1}] for band {band}, got {k}")
    if k == 1:
        return [(lo + hi) // 2]
    return [int(round(lo + i * (hi - lo) / (k - 1))) for i in range(k)]


def split(data: TissueSlices, k: int, *, band: tuple[int, int] = DEFAULT_BAND,
          gap: int = DEFAULT_GAP, test_stride: int = 2) -> tuple[list[int], list[int]]:
    """(train z, test z): `k` slices from `band`; test slices every `test_stride` mm among
    the kept slices more than `gap` mm below or above the band."""
    lo, hi = band
    if lo > hi or gap < 1 or test_stride < 1:
        raise ValueError(f"need band lo <= hi, gap >= 1, test_stride >= 1; got band {band}, "
                         f"gap {gap}, test_stride {test_stride}")
    train = train_slices(band, k)
    kept = data.z.tolist()
    missing = sorted(set(train) - set(kept))
    if missing:
        raise ValueError(f"training slices {missing} are not among the kept slices")
    far = [z for z in kept if z < lo - gap or z > hi + gap]
    test = far[::test_stride]
    if not test:
        raise ValueError(f"no kept slice lies more than {gap} mm from the band {band}")
    return train, test


def class_fractions(label: torch.Tensor) -> torch.Tensor:
    """Fraction of pixels in each of the 4 classes."""
    return torch.bincount(label.flatten(), minlength=len(CLASSES)).double() / label.numel()
