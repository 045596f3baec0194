"""docs/gallery.png: our samples beside the literal published generator's, to look at.

Rows: 3D label maps and images (mid slice along D), then 2D label maps and images; columns:
for each seed, ours then literal. The two generators share the distribution, not the random
numbers, so a column pair shows two independent draws of the same process.

    .venv/bin/python benches/gallery.py [--seeds 3] [--size3d 128] [--size2d 512]
    .venv/bin/python benches/gallery.py --clinical    # docs/gallery_clinical.png

--clinical: the rasd3d-clinical preset beside the default rasd3d one on the same sample
indices (so the same anatomy; the acquisition options act only on the image), each volume cut
through its middle along D, H and W: a thick-slice axis shows as straight bands across the
two cuts that contain it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
try:
    import rasd_bench  # noqa: F401  (installed with the package)
except ImportError:   # a source checkout that was not installed
    sys.path[:0] = [str(ROOT / "python"), str(ROOT)]

import rasd_kernels as rk  # noqa: E402
from rasd_kernels import backends  # noqa: E402
from rasd_bench import literal  # noqa: E402


def mid_slice(x: torch.Tensor) -> torch.Tensor:
    """[*S] -> the middle slice along the first axis in 3D, the image itself in 2D."""
    return x[x.shape[0] // 2] if x.dim() == 3 else x


def draw(seeds: int, shape, K: int, backend: str):
    """[(ours label, ours image, literal label, literal image)] per seed, 2D slices."""
    out = []
    for seed in range(seeds):
        image, label = rk.synthesize(1, shape, K, seed=seed, backend=backend)
        lit_image, lit_label = literal.generate(1, shape, K, seed=seed)
        out.append([mid_slice(t) for t in (label[0], image[0, 0], lit_label[0], lit_image[0, 0])])
    return out


def clinical(samples: int, backend: str, out: Path) -> None:
    shape, K, default = rk.preset("rasd3d")
    clinical_config = rk.preset("rasd3d-clinical")[2]
    image, label = rk.synthesize(samples, shape, K, seed=0, config=default, backend=backend)
    clinical_image, _ = rk.synthesize(samples, shape, K, seed=0, config=clinical_config,
                                      backend=backend)
    rows = [("labels", label, "tab10")] + [
        (f"{name} image, cut {axis}", img[:, 0], "gray")
        for name, img in (("rasd3d", image), ("clinical", clinical_image))
        for axis in "DHW"]
    fig, axes = plt.subplots(len(rows), samples, figsize=(2.4 * samples, 2.4 * len(rows) + 0.6),
                             squeeze=False)
    for r, (title, volumes, cmap) in enumerate(rows):
        axis = "DHW".index(title[-1]) if "cut" in title else 0
        for s in range(samples):
            cut = volumes[s].select(axis, shape[axis] // 2)
            limits = dict(vmin=-0.5, vmax=K - 0.5) if cmap == "tab10" else dict(vmin=0, vmax=1)
            axes[r, s].imshow(cut.numpy(), cmap=cmap, interpolation="nearest", **limits)
            axes[r, s].set_xticks([])
            axes[r, s].set_yticks([])
        axes[r, 0].set_ylabel(title, fontsize=8)
    for s in range(samples):
        axes[0, s].set_title(f"sample {s}", fontsize=9)
    fig.suptitle("rasd3d beside rasd3d-clinical (thick slices, low resolution, cleared "
                 "background) on the same samples; middle cuts", fontsize=10)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    print(f"wrote {out}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--size3d", type=int, default=128)
    ap.add_argument("--size2d", type=int, default=512)
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--clinical", action="store_true",
                    help="the rasd3d-clinical preset beside rasd3d instead (4 samples)")
    args = ap.parse_args(argv)
    backend = backends.resolve(args.backend, torch.device("cpu"))
    if args.clinical:
        clinical(4, backend, args.out or ROOT / "docs" / "gallery_clinical.png")
        return
    args.out = args.out or ROOT / "docs" / "gallery.png"
    cases = [("3D", (args.size3d,) * 3, 8), ("2D", (args.size2d,) * 2, 16)]

    cols = 2 * args.seeds
    fig, axes = plt.subplots(4, cols, figsize=(2.6 * cols, 2.6 * 4 + 0.6), squeeze=False)
    for block, (name, shape, K) in enumerate(cases):
        cmap = plt.get_cmap("tab10" if K <= 10 else "tab20", K)
        for s, (label, image, lit_label, lit_image) in enumerate(draw(args.seeds, shape, K,
                                                                      backend)):
            for j, (who, lab, img) in enumerate((("ours", label, image),
                                                 ("literal", lit_label, lit_image))):
                col = 2 * s + j
                ax_l, ax_i = axes[2 * block, col], axes[2 * block + 1, col]
                ax_l.imshow(lab.numpy(), cmap=cmap, vmin=-0.5, vmax=K - 0.5,
                            interpolation="nearest")
                ax_i.imshow(img.numpy(), cmap="gray", vmin=0.0, vmax=1.0,
                            interpolation="nearest")
                ax_l.set_title(f"{who}, seed {s}", fontsize=9)
        axes[2 * block, 0].set_ylabel(f"{name} labels\n{'x'.join(map(str, shape))}, K={K}")
        axes[2 * block + 1, 0].set_ylabel(f"{name} image")
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"RaSD samples: ours (rasd_kernels, backend {backend}) beside the literal "
                 "published generator; 3D rows show the middle slice", fontsize=10)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=90)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
