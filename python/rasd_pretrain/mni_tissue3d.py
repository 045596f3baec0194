"""A real 3D segmentation task that needs no download: brain tissue in MNI152 patches.

The volumes and the four classes (background, CSF, GM, WM) are those of
`rasd_pretrain.mni_tissue` (nilearn's packaged MNI152 2009a T1 and tissue maps). The brain's
bounding box (plus a margin) is area-downsampled by `factor` (default 2: 2 mm voxels, about
80 x 96 x 80), probabilities before the argmax, so that image and labels stay aligned.
Arrays are [Z, Y, X]: axial index first, anterior at low Y (as the 2D slices), then X.

Split by position, as in 2D, because neighbouring voxels are nearly identical:

* Train: `k` cubic patches of `patch` voxels from one axial slab, the slab of `patch` voxels
  centred on z = 90 mm (the level of the lateral ventricles, the 2D task's training band). The
  patches sit on the midline, their centres spread evenly from front to back (k = 1: the
  middle one, through the ventricles).
* Test: the volume below the slab, more than `gap` mm away from it (cerebellum, brainstem,
  temporal lobes), cropped to the bounding box of its brain (plus 2 voxels), as nnU-Net crops
  to the non-zero region: one sub-volume, evaluated with MONAI's sliding-window inference
  (`rasd_pretrain.finetune` does this for 3D data) rather than in one pass, because
  instance-normalised networks behave differently on a whole volume than on the patches
  they were trained on.

    pip install 'rasd_kernels[finetune]'     # nilearn
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from . import mni_tissue as mt

CLASSES = mt.CLASSES
CENTRE_MM = 90        # centre of the training slab (1 mm voxel index along z)
DEFAULT_GAP = 20      # mm between the training slab and the test region
DEFAULT_PATCH = 32    # voxels
DEFAULT_FACTOR = 2    # mm per voxel


@dataclass(frozen=True)
class TissueVolume:
    """image [Z, Y, X] float32 in [0, 1], label [Z, Y, X] int64 in [0, 4); z_mm [Z]: the
    1 mm index of the lowest template slice each voxel row averages."""

    image: torch.Tensor
    label: torch.Tensor
    z_mm: torch.Tensor
    factor: int


def _brain_box(mask: np.ndarray, margin: int, factor: int) -> list[slice]:
    """Per axis, the brain's extent plus `margin`, grown to a multiple of `factor`."""
    box = []
    for ax in range(3):
        idx = np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != ax)))
        lo, hi = idx[0] - margin, idx[-1] + 1 + margin
        hi += (-(hi - lo)) % factor
        box.append(slice(lo, hi))
    return box


def _crop(volume: np.ndarray, box: list[slice]) -> np.ndarray:
    """volume[box] with zeros wherever the box leaves the volume."""
    out = np.zeros([s.stop - s.start for s in box], dtype=np.float32)
    src = tuple(slice(max(s.start, 0), min(s.stop, n)) for s, n in zip(box, volume.shape))
    dst = tuple(slice(a.start - s.start, a.stop - s.start) for a, s in zip(src, box))
    out[dst] = volume[src]
    return out


def build(factor: int = DEFAULT_FACTOR, *, margin: int = 4,
          volumes: dict[str, np.ndarray] | None = None) -> TissueVolume:
    """The brain volume at `factor` mm per voxel. `volumes` (t1, gm, wm, mask as from
    `mni_tissue.load_template`) replaces the packaged template, e.g. for tests."""
    if not isinstance(factor, int) or factor < 1:
        raise ValueError(f"factor must be an int >= 1, got {factor!r}")
    v = volumes if volumes is not None else mt.load_template(1)
    mask = v["mask"] > 0.5
    box = _brain_box(mask, margin, factor)
    stack = np.stack([_crop(a, box) for a in (v["t1"], v["gm"], v["wm"],
                                              mask.astype(np.float32))])
    # [4, X, Y, Z] -> [4, Z, Y, X] with anterior at low Y, as the 2D slices.
    vol = torch.from_numpy(stack).permute(0, 3, 2, 1).flip(2).contiguous()
    vol = F.avg_pool3d(vol[None], factor)[0]
    t1, gm, wm, inside = vol.unbind(0)
    inside = inside > 0.5
    label = mt.labels_from_probabilities(gm, wm, inside)
    image = (t1 * inside).clamp(0.0, 1.0)
    z_mm = box[2].start + factor * torch.arange(image.shape[0])
    return TissueVolume(image.contiguous(), label.contiguous(), z_mm, factor)


def _slab(vol: TissueVolume, patch: int) -> tuple[int, int]:
    """[lo, hi) voxel rows along z of the training slab: `patch` rows centred on CENTRE_MM."""
    centre = int(torch.argmin((vol.z_mm - CENTRE_MM).abs()))
    lo = max(0, min(centre - patch // 2, vol.image.shape[0] - patch))
    return lo, lo + patch


def patch_corners(vol: TissueVolume, k: int, patch: int) -> list[tuple[int, int, int]]:
    """(z, y, x) corners of the `k` training patches: in the slab, on the midline, centres
    spread evenly over the brain's front-to-back extent inside the slab."""
    Z, Y, X = vol.image.shape
    if patch > min(Y, X) or patch > Z:
        raise ValueError(f"patch {patch} does not fit the volume {tuple(vol.image.shape)}")
    z0, z1 = _slab(vol, patch)
    ys = torch.nonzero((vol.label[z0:z1] > 0).any(0).any(1)).flatten()
    lo, hi = int(ys[0]), int(ys[-1]) + 1 - patch      # first and last corner inside the brain
    lo, hi = max(0, min(lo, Y - patch)), max(0, min(max(hi, lo), Y - patch))
    if k < 1 or k > hi - lo + 1:
        raise ValueError(f"k must be in [1, {hi - lo + 1}] for patch {patch}, got {k}")
    y = [(lo + hi) // 2] if k == 1 else [round(lo + i * (hi - lo) / (k - 1)) for i in range(k)]
    x = (X - patch) // 2
    return [(z0, int(yc), x) for yc in y]


def test_rows(vol: TissueVolume, patch: int, gap: int = DEFAULT_GAP) -> tuple[int, int]:
    """[0, hi) voxel rows along z of the test region: every row more than `gap` mm below the
    training slab."""
    if gap < 1:
        raise ValueError(f"gap must be >= 1 mm, got {gap}")
    z0, _ = _slab(vol, patch)
    # A row averages template slices [z_mm, z_mm + factor); it must end more than gap below.
    below = torch.nonzero(vol.z_mm + vol.factor - 1 < vol.z_mm[z0] - gap).flatten()
    if below.numel() == 0:
        raise ValueError(f"no voxel row lies more than {gap} mm below the training slab")
    return 0, int(below[-1]) + 1


def _brain_extent(label: torch.Tensor, patch: int, margin: int) -> list[slice]:
    """(Y, X) slices of the brain's bounding box in `label` [Z, Y, X] plus `margin`, widened
    to at least `patch` where the volume allows: evaluation windows then hold brain, as the
    training patches do, instead of empty air."""
    out = []
    for ax in (1, 2):
        idx = torch.nonzero((label > 0).any(0).any(2 - ax)).flatten()
        lo, hi = int(idx[0]) - margin, int(idx[-1]) + 1 + margin
        grow = max(0, patch - (hi - lo))
        lo, hi = lo - grow // 2, hi + grow - grow // 2
        n = label.shape[ax]
        lo, hi = max(0, min(lo, n - (hi - lo))), min(n, max(hi, hi - lo))
        out.append(slice(lo, hi))
    return out


def split(vol: TissueVolume, k: int, *, patch: int = DEFAULT_PATCH, gap: int = DEFAULT_GAP):
    """(train image [k, 1, P, P, P], train label [k, P, P, P], test image [1, 1, *R],
    test label [1, *R], meta) of the task with `k` training patches."""
    corners = patch_corners(vol, k, patch)
    crops = [tuple(slice(c, c + patch) for c in corner) for corner in corners]
    xtr = torch.stack([vol.image[c] for c in crops])[:, None]
    ytr = torch.stack([vol.label[c] for c in crops])
    t0, t1 = test_rows(vol, patch, gap)
    box = (slice(t0, t1), *_brain_extent(vol.label[t0:t1], patch, margin=2))
    xte, yte = vol.image[box][None, None], vol.label[box][None]
    meta = {"data": "mni-tissue-3d", "patch": patch, "gap": gap, "factor": vol.factor,
            "train_corners": corners, "train_z_mm": [int(vol.z_mm[corners[0][0]]),
                                                     int(vol.z_mm[corners[0][0] + patch - 1])
                                                     + vol.factor - 1],
            "test_z_mm": [int(vol.z_mm[t0]), int(vol.z_mm[t1 - 1]) + vol.factor - 1],
            "test_shape": list(yte.shape[1:])}
    return xtr, ytr, xte.contiguous(), yte.contiguous(), meta
