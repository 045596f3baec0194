"""`rasd-sample`: write synthetic image/label pairs as NIfTI and a PNG gallery of mid slices.

    rasd-sample --n 8 --out samples/                    # published 3D setting (128^3, K = 8)
    rasd-sample --n 16 --preset rasd2d --out samples2d/

Sample i is the global index start_index + i of the seed: the same pairs a pre-training run
with that seed sees. Files: sample_<index>_image.nii.gz (float32; channels last when there is
more than one), sample_<index>_label.nii.gz (uint8), gallery.png. Arrays keep the synthesis
axis order (D, H, W) as NIfTI (i, j, k) with an identity affine (1 mm voxels).
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import torch

from rasd_kernels.backends import BACKENDS

from ._deps import MissingDependency, require
from .checkpoint import check_writable
from .cli import _key_value
from .config import PRESETS, preset_values

PROG = "rasd-sample"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Write RaSD synthetic samples as NIfTI "
                                "image/label pairs plus a PNG gallery of mid slices.")
    p.add_argument("--n", type=int, required=True, help="number of samples")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--preset", choices=sorted(PRESETS), default="rasd3d",
                   help="size and labels (default rasd3d: 128^3, K = 8)")
    p.add_argument("--shape", type=int, nargs="+", metavar="N", help="override the size")
    p.add_argument("--labels", type=int, metavar="K", help="override the number of labels")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--start-index", type=int, default=0, help="global index of the first one")
    p.add_argument("--views", type=int, default=1, help="appearances per anatomy")
    p.add_argument("--synth", type=_key_value, action="append", metavar="KEY=VALUE",
                   help="SynthesisConfig override, repeatable")
    p.add_argument("--batch", type=int, default=4, help="samples synthesised at once")
    p.add_argument("--backend", default="auto", choices=("auto", *BACKENDS),
                   help="synthesis backend (default auto: the fastest built for the device)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--gallery-max", type=int, default=16, help="rows of the gallery")
    p.add_argument("--overwrite", action="store_true", help="replace existing sample files")
    return p


def _names(index: int) -> tuple[str, str]:
    return f"sample_{index:06d}_image.nii.gz", f"sample_{index:06d}_label.nii.gz"


def _settings(args):
    from .config import build
    flags = {"synthesis": dict(args.synth or [])}
    if args.shape:
        flags["shape"] = args.shape
    if args.labels is not None:
        flags["num_labels"] = args.labels
    flags["views"] = args.views
    return build(preset_values(args.preset), flags)


def write_samples(args) -> list[str]:
    """Synthesise and write everything; returns the written paths (gallery last)."""
    nib = require("nibabel")
    if args.n < 1 or args.batch < 1 or args.gallery_max < 0 or args.start_index < 0:
        raise ValueError("--n and --batch must be >= 1, --gallery-max and --start-index >= 0")
    config = _settings(args)
    synth = config.synthesis_config()
    indices = range(args.start_index, args.start_index + args.n)
    planned = [os.path.join(args.out, n) for i in indices for n in _names(i)]
    planned.append(os.path.join(args.out, "gallery.png"))
    taken = [p for p in planned if os.path.exists(p)]
    if taken and not args.overwrite:
        raise ValueError(f"{len(taken)} file(s) already exist in {args.out} (e.g. "
                         f"{os.path.basename(taken[0])}); pass --overwrite to replace them")
    _check_device(args.device, args.backend)
    created = _make_writable_folder(args.out)
    try:
        return _write(args, config, synth, nib)
    except BaseException:
        if created and not os.listdir(args.out):
            os.rmdir(args.out)             # no empty folder left behind by a failed run
        raise


def _check_device(device: str, backend: str) -> None:
    """The device and backend can run here (checked before anything is written)."""
    from rasd_kernels import backends
    from rasd_kernels.synthesize import _device

    try:
        backends.resolve(backend, _device(device))
    except (RuntimeError, ValueError) as exc:
        raise ValueError(f"--device {device} --backend {backend}: {exc}") from None


def _make_writable_folder(out: str) -> bool:
    """Create `out` if needed and check that files can be written there; whether it was
    created here."""
    created = not os.path.exists(out)
    if not created and not os.path.isdir(out):
        raise ValueError(f"the output path {out} exists and is not a folder")
    try:
        os.makedirs(out, exist_ok=True)
        check_writable(out)
    except OSError as exc:
        if created and os.path.isdir(out) and not os.listdir(out):
            os.rmdir(out)
        raise ValueError(f"cannot write to the output folder {out}: {exc.strerror}") from None
    return created


def _write(args, config, synth, nib) -> list[str]:
    from rasd_kernels import synthesize
    written, rows = [], []
    for first in range(0, args.n, args.batch):
        count = min(args.batch, args.n - first)
        image, label = synthesize(count, config.shape, config.num_labels, seed=args.seed,
                                  start_index=args.start_index + first, device=args.device,
                                  config=synth, views=config.views, backend=args.backend)
        image, label = image.cpu(), label.cpu()
        for b in range(count):
            img_name, lab_name = _names(args.start_index + first + b)
            x = image[b].numpy()
            x = x[0] if x.shape[0] == 1 else x.transpose(*range(1, x.ndim), 0)  # channels last
            for name, arr in ((img_name, x), (lab_name, label[b].numpy())):
                path = os.path.join(args.out, name)
                nib.save(nib.Nifti1Image(arr, np.eye(4)), path)
                written.append(path)
            if len(rows) < args.gallery_max:
                rows.append((args.start_index + first + b, image[b], label[b]))
    if rows:
        path = os.path.join(args.out, "gallery.png")
        gallery(rows, config.num_labels, path)
        written.append(path)
    return written


def _mid(t: torch.Tensor) -> torch.Tensor:
    """The middle slice along the first spatial axis of a 3D array; 2D arrays as they are."""
    return t[t.shape[0] // 2] if t.dim() == 3 else t


def gallery(rows, num_labels: int, path: str) -> None:
    """One row per sample: every image channel, then the label map (mid slices)."""
    matplotlib = require("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    cols = rows[0][1].shape[0] + 1
    fig, axes = plt.subplots(len(rows), cols, figsize=(2.2 * cols, 2.2 * len(rows)),
                             squeeze=False)
    for r, (index, image, label) in enumerate(rows):
        for c in range(cols - 1):
            axes[r][c].imshow(_mid(image[c]).numpy(), cmap="gray", vmin=0.0, vmax=1.0)
            axes[r][c].set_title(f"#{index} image" + (f" {c}" if cols > 2 else ""),
                                 fontsize=8)
        axes[r][-1].imshow(_mid(label).numpy(), cmap="tab20", vmin=0,
                           vmax=max(num_labels - 1, 1), interpolation="nearest")
        axes[r][-1].set_title(f"#{index} label", fontsize=8)
        for ax in axes[r]:
            ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        written = write_samples(args)
    except (ValueError, MemoryError, MissingDependency) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.n} image/label pairs to {args.out} (gallery: "
          f"{written[-1] if written[-1].endswith('.png') else 'none'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
