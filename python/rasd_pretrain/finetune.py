"""`rasd-finetune`: fine-tune a segmentation model from pre-trained weights or from scratch.

    rasd-finetune --checkpoint runs/demo/checkpoints/last.pt --k 2 --seed 0
    rasd-finetune --checkpoint runs/demo/checkpoints/last.pt --init scratch --k 2 --seed 0
    rasd-finetune --model unet --embed-dim 32 --k 2          # scratch, architecture from flags
    rasd-finetune --checkpoint runs/x3d/export --data mni-tissue-3d --k 2 --augment flip-rot90

The segmenter is the pre-training backbone ([B, C, *S] -> [B, E, *S]) followed by a 1x1
convolution to the classes. Pre-trained and scratch runs take one code path: the same
architecture is built under the same seed (so the head starts from the same weights), then a
pre-trained run overwrites the backbone with the checkpoint's weights; the data order, the
augmentation, the optimiser and the number of steps are identical. `--checkpoint` accepts a
`rasd-pretrain` checkpoint (``OUT/checkpoints/last.pt``) or an export folder
(``OUT/export``); with ``--init scratch`` only its architecture is used.

What is loaded (``--load``): ``network`` (default) every backbone weight the source holds
(MONAI UNet: the whole network; SwinUNETR: all but its output convolution), ``encoder`` only
SwinUNETR's ``swinViT.*`` encoder.

Data (``--data``): ``mni-tissue`` (the default; rasd_pretrain.mni_tissue: 4-class brain
tissue on MNI152 slices, k training slices from one band, test slices far from it),
``mni-tissue-3d`` (rasd_pretrain.mni_tissue3d: the same classes in 3D, k training patches from
one slab, a test region below it), or a file saved with torch.save holding
``train_image [N, C, *S]``, ``train_label [N, *S]``, ``test_image``, ``test_label`` and
optionally ``classes``. 3D test images are segmented by MONAI's sliding-window inference with
windows of the training patch size.

Augmentation (``--augment``, rasd_pretrain.augment): ``affine`` (rotation, zoom, shift,
left-right flip, gamma), ``flip-rot90`` (axis flips and 90-degree rotations), ``none``.

Score: per-class Dice over the whole test set (every test pixel pooled), and the mean over the
foreground classes (all but class 0).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from . import augment as augment_mod
from .export import ENCODER_PREFIX
from .models import build_model

PROG = "rasd-finetune"
INITS = ("pretrained", "scratch")
LOADS = ("network", "encoder")
# Chosen on the 2D and the 3D MNI152 tasks (docs/transfer.md): with flip-rot90 instead, scratch
# and pre-trained models alike fell from 0.61 to 0.32 (2D) and from 0.26 to 0.11 (3D) mean
# Dice, labelling the black field around a smaller brain as tissue; the zoom-out is what
# prevents it. Where test images show anatomy at the training scale, flip-rot90 may do better.
DEFAULT_AUGMENT = "affine"


# ---- the architecture and its weights ----------------------------------------------------

@dataclass(frozen=True)
class ModelSpec:
    """What `build_model` needs to rebuild a pre-training backbone."""

    model: str = "unet"
    model_kwargs: dict = field(default_factory=dict)
    embed_dim: int = 32
    in_channels: int = 1
    spatial_dims: int = 2
    pretrain_shape: tuple = ()       # the pre-training image size, when known


def read_weights(path: str) -> tuple[ModelSpec, dict]:
    """(spec, backbone state dict) of a rasd-pretrain checkpoint file or export folder."""
    if os.path.isdir(path):
        meta_path = os.path.join(path, "export.json")
        if not os.path.isfile(meta_path):
            raise ValueError(f"{path} is a folder without export.json: not a rasd-pretrain "
                             "export folder")
        with open(meta_path) as f:
            meta = json.load(f)
        spec = ModelSpec(model=meta["model"], model_kwargs=dict(meta["model_kwargs"]),
                         embed_dim=int(meta["pretrain_out_channels"]),
                         in_channels=int(meta["in_channels"]),
                         spatial_dims=int(meta["spatial_dims"]),
                         pretrain_shape=tuple(meta.get("pretrain_shape") or ()))
        network = os.path.join(path, meta.get("files", {}).get("network", "network.pt"))
        return spec, torch.load(network, map_location="cpu", weights_only=True)
    from .checkpoint import load
    payload = load(path, map_location="cpu")
    config = payload["config"]
    spec = ModelSpec(model=config["model"], model_kwargs=dict(config.get("model_kwargs") or {}),
                     embed_dim=int(config["embed_dim"]),
                     in_channels=int((config.get("synthesis") or {}).get("channels", 1)),
                     spatial_dims=len(config["shape"]), pretrain_shape=tuple(config["shape"]))
    return spec, payload["model"]


class Segmenter(nn.Module):
    """backbone [B, C, *S] -> [B, E, *S], then a 1x1 convolution to [B, classes, *S]."""

    def __init__(self, backbone: nn.Module, embed_dim: int, num_classes: int,
                 spatial_dims: int) -> None:
        super().__init__()
        conv = nn.Conv2d if spatial_dims == 2 else nn.Conv3d
        self.backbone = backbone
        self.head = conv(embed_dim, num_classes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


@dataclass
class LoadReport:
    """Which backbone tensors came from the pre-trained weights."""

    loaded: list = field(default_factory=list)
    kept: list = field(default_factory=list)     # backbone tensors left at their initial value

    def summary(self) -> str:
        return f"{len(self.loaded)} tensors loaded, {len(self.kept)} left at initialisation"


def load_backbone(backbone: nn.Module, state: dict, how: str = "network") -> LoadReport:
    """Copy `state` into `backbone`; a key the backbone lacks or of another shape is an error
    (the weights belong to another architecture). how: 'network' or 'encoder' (swinViT.*)."""
    if how not in LOADS:
        raise ValueError(f"load must be one of {LOADS}, got {how!r}")
    own = backbone.state_dict()
    if how == "encoder":
        state = {k: v for k, v in state.items() if k.startswith(ENCODER_PREFIX)}
        if not state:
            raise ValueError("--load encoder needs SwinUNETR weights (swinViT.*); these have "
                             "none: use --load network")
    foreign = sorted(k for k in state if k not in own)
    wrong = sorted(k for k in state if k in own and own[k].shape != state[k].shape)
    if foreign or wrong:
        detail = ([f"unknown keys {foreign[:5]}"] if foreign else []) + \
                 ([f"shape mismatch at {wrong[:5]}"] if wrong else [])
        raise ValueError("the pre-trained weights do not fit this architecture: "
                         + "; ".join(detail))
    backbone.load_state_dict(state, strict=False)
    return LoadReport(loaded=sorted(state), kept=sorted(k for k in own if k not in state))


def build_segmenter(spec: ModelSpec, num_classes: int, shape, *, seed: int,
                    state: dict | None = None, load: str = "network"
                    ) -> tuple[Segmenter, LoadReport]:
    """The segmenter under `seed`; with `state`, its backbone takes those weights."""
    torch.manual_seed(seed)
    backbone = build_model(spec.model, spatial_dims=spec.spatial_dims,
                           in_channels=spec.in_channels, out_channels=spec.embed_dim,
                           shape=tuple(shape), **spec.model_kwargs)
    model = Segmenter(backbone, spec.embed_dim, num_classes, spec.spatial_dims)
    report = LoadReport(kept=sorted(backbone.state_dict()))
    if state is not None:
        report = load_backbone(backbone, state, load)
    return model, report


# ---- data ----------------------------------------------------------------------------------

@dataclass
class TaskData:
    """A labelled task: images [N, C, *S] float32, labels [N, *S] int64 in [0, classes)."""

    train_image: torch.Tensor
    train_label: torch.Tensor
    test_image: torch.Tensor
    test_label: torch.Tensor
    classes: tuple
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        for which in ("train", "test"):
            x, y = getattr(self, f"{which}_image"), getattr(self, f"{which}_label")
            if x.dim() < 4 or y.shape != (x.shape[0], *x.shape[2:]):
                raise ValueError(f"{which} images must be [N, C, *S] and labels [N, *S], got "
                                 f"{tuple(x.shape)} and {tuple(y.shape)}")
            if y.numel() and (y.min() < 0 or y.max() >= len(self.classes)):
                raise ValueError(f"{which} labels must lie in [0, {len(self.classes)})")
        self.train_label = self.train_label.long()
        self.test_label = self.test_label.long()


def mni_task(k: int, *, size: int = 96, band=None, gap: int | None = None,
             test_stride: int = 2, slices=None) -> TaskData:
    """The MNI152 tissue task with `k` training slices (see rasd_pretrain.mni_tissue)."""
    from . import mni_tissue as mt
    band = tuple(band) if band is not None else mt.DEFAULT_BAND
    gap = mt.DEFAULT_GAP if gap is None else gap
    slices = slices if slices is not None else mt.build(size)
    train_z, test_z = mt.split(slices, k, band=band, gap=gap, test_stride=test_stride)
    (xtr, ytr), (xte, yte) = slices.at(train_z), slices.at(test_z)
    return TaskData(xtr, ytr, xte, yte, mt.CLASSES,
                    meta={"data": "mni-tissue", "size": slices.image.shape[-1], "band": band,
                          "gap": gap, "train_z": train_z, "test_z": test_z})


def mni3d_task(k: int, *, patch: int | None = None, gap: int | None = None,
               volume=None) -> TaskData:
    """The 3D MNI152 tissue task with `k` training patches (see rasd_pretrain.mni_tissue3d)."""
    from . import mni_tissue3d as m3
    volume = volume if volume is not None else m3.build()
    xtr, ytr, xte, yte, meta = m3.split(volume, k, patch=patch or m3.DEFAULT_PATCH,
                                        gap=m3.DEFAULT_GAP if gap is None else gap)
    return TaskData(xtr, ytr, xte, yte, m3.CLASSES, meta=meta)


def file_task(path: str) -> TaskData:
    blob = torch.load(path, map_location="cpu", weights_only=True)
    need = ("train_image", "train_label", "test_image", "test_label")
    if not isinstance(blob, dict) or any(n not in blob for n in need):
        raise ValueError(f"{path} must hold a dict with {list(need)}")
    classes = tuple(blob.get("classes") or
                    range(int(max(blob["train_label"].max(), blob["test_label"].max())) + 1))
    return TaskData(*(blob[n].float() if "image" in n else blob[n] for n in need),
                    classes=tuple(str(c) for c in classes), meta={"data": path})


# ---- augmentation, loss, score -------------------------------------------------------------

def augment(x: torch.Tensor, y: torch.Tensor, gen: torch.Generator,
            scale_range: tuple[float, float] = (0.6, 1.2),
            gamma_range: tuple[float, float] = (0.7, 1.4)):
    """The `affine` augmentation of 2D batches (see rasd_pretrain.augment)."""
    return augment_mod.affine_2d(x, y, gen, scale_range, gamma_range)


def seg_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy plus soft Dice (mean over classes, batch pooled)."""
    ce = F.cross_entropy(logits, target)
    prob = logits.softmax(1)
    onehot = F.one_hot(target, logits.shape[1]).movedim(-1, 1).to(prob.dtype)
    dims = (0, *range(2, logits.dim()))
    inter = (prob * onehot).sum(dims)
    denom = prob.sum(dims) + onehot.sum(dims)
    dice = (2 * inter + 1.0) / (denom + 1.0)
    return ce + (1.0 - dice).mean()


def dice_per_class(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Dice 2|P & G| / (|P| + |G|) of each class over every pixel of `pred` and `target`
    (integer maps of equal shape), float64 [num_classes]; NaN for a class absent from both."""
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ")
    p = F.one_hot(pred.reshape(-1).long(), num_classes).double()
    g = F.one_hot(target.reshape(-1).long(), num_classes).double()
    inter, total = (p * g).sum(0), p.sum(0) + g.sum(0)
    return torch.where(total > 0, 2 * inter / total.clamp_min(1), torch.nan)


@torch.no_grad()
def predict(model: nn.Module, image: torch.Tensor, chunk: int = 16,
            roi: tuple | None = None) -> torch.Tensor:
    """Class map of every image; with `roi`, by MONAI's sliding-window inference (windows of
    the training patch size, half overlapping, Gaussian-weighted), one image at a time."""
    was = model.training
    model.eval()
    if roi is None:
        out = torch.cat([model(image[i:i + chunk]).argmax(1)
                         for i in range(0, len(image), chunk)])
    else:
        from ._deps import require
        inferers = require("monai.inferers")
        out = torch.cat([inferers.sliding_window_inference(
            image[i:i + 1], roi_size=tuple(roi), sw_batch_size=4, predictor=model,
            overlap=0.5, mode="gaussian").argmax(1) for i in range(len(image))])
    model.train(was)
    return out


def evaluate(model: nn.Module, data: TaskData, device, roi: tuple | None = None
             ) -> torch.Tensor:
    pred = predict(model, data.test_image.to(device), roi=roi)
    return dice_per_class(pred.cpu(), data.test_label, len(data.classes))


# ---- fine-tuning -----------------------------------------------------------------------------

@dataclass(frozen=True)
class FinetuneConfig:
    steps: int = 200
    batch: int = 8
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 20
    seed: int = 0
    augment: str = DEFAULT_AUGMENT   # rasd_pretrain.augment.AUGMENTS (True / False: default / none)
    eval_every: int = 0          # 0: evaluate only at the end
    load: str = "network"
    backbone_lr_scale: float = 1.0   # backbone lr = scale * lr; 0 freezes it (linear probe)
    scale_range: tuple = (0.6, 1.2)  # zoom of the augmentation
    gamma_range: tuple = (0.7, 1.4)  # intensity gamma of the augmentation ((1, 1): none)
    sliding_window: bool | None = None   # evaluate by windows of the patch size (None: in 3D)
    device: str = "cpu"

    def __post_init__(self) -> None:
        if isinstance(self.augment, bool):
            object.__setattr__(self, "augment", DEFAULT_AUGMENT if self.augment else "none")
        if self.augment not in augment_mod.AUGMENTS:
            raise ValueError(f"augment must be one of {augment_mod.AUGMENTS}, got "
                             f"{self.augment!r}")
        for name, lo in (("steps", 0), ("batch", 1), ("warmup_steps", 0), ("seed", 0),
                         ("eval_every", 0)):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < lo:
                raise ValueError(f"{name} must be an int >= {lo}, got {v!r}")
        if not self.lr > 0 or not self.weight_decay >= 0:
            raise ValueError(f"need lr > 0 and weight_decay >= 0, got {self.lr}, "
                             f"{self.weight_decay}")
        for name in ("scale_range", "gamma_range"):
            lo_hi = tuple(getattr(self, name))
            object.__setattr__(self, name, lo_hi)
            if len(lo_hi) != 2 or not 0 < lo_hi[0] <= lo_hi[1]:
                raise ValueError(f"{name} must be (lo, hi) with 0 < lo <= hi, got {lo_hi}")
        if not self.backbone_lr_scale >= 0:
            raise ValueError(f"backbone_lr_scale must be >= 0, got {self.backbone_lr_scale}")
        if self.load not in LOADS:
            raise ValueError(f"load must be one of {LOADS}, got {self.load!r}")

    def lr_at(self, step: int) -> float:
        """Linear warm-up, then cosine to 0 at `steps`."""
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        t = (step - self.warmup_steps) / max(1, self.steps - self.warmup_steps)
        return self.lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))


@dataclass
class FinetuneResult:
    init: str
    seed: int
    classes: tuple
    dice: list                   # per class, final model
    mean_dice: float             # mean over the foreground classes
    curve: list                  # [(step, mean foreground Dice)]
    losses: list
    train_s: float
    eval_s: float
    load: str
    loaded_tensors: int
    meta: dict = field(default_factory=dict)
    model: nn.Module | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict:
        d = asdict(dataclasses.replace(self, model=None))
        d.pop("model")
        d["classes"] = list(self.classes)
        d["dice"] = [None if math.isnan(v) else v for v in self.dice]
        return d


def foreground_mean(dice: torch.Tensor) -> float:
    return float(torch.nanmean(dice[1:]))


def finetune(data: TaskData, spec: ModelSpec, config: FinetuneConfig, *,
             state: dict | None = None, log=None) -> FinetuneResult:
    """Fine-tune `spec` (from `state` if given, else from scratch) on `data`; Dice on its test
    split. Everything random derives from config.seed."""
    device = torch.device(config.device)
    shape = tuple(data.train_image.shape[2:])
    if len(shape) != spec.spatial_dims:
        raise ValueError(f"the model is {spec.spatial_dims}D, the data {len(shape)}D")
    if data.train_image.shape[1] != spec.in_channels:
        raise ValueError(f"the model takes {spec.in_channels} channel(s), the data has "
                         f"{data.train_image.shape[1]}")
    use_window = len(shape) == 3 if config.sliding_window is None else config.sliding_window
    roi = shape if use_window else None
    model, report = build_segmenter(spec, len(data.classes), shape, seed=config.seed,
                                    state=state, load=config.load)
    model.to(device).train()
    groups = [{"params": list(model.head.parameters()), "scale": 1.0}]
    if config.backbone_lr_scale > 0:
        groups.append({"params": list(model.backbone.parameters()),
                       "scale": config.backbone_lr_scale})
    else:
        model.backbone.requires_grad_(False)
    opt = torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)
    gen = torch.Generator().manual_seed(config.seed)
    x_all, y_all = data.train_image.to(device), data.train_label.to(device)
    curve, losses, eval_s = [], [], 0.0
    t0 = time.perf_counter()
    for step in range(config.steps):
        for g in opt.param_groups:
            g["lr"] = config.lr_at(step) * g["scale"]
        rows = torch.randint(len(x_all), (config.batch,), generator=gen).to(device)
        x, y = x_all[rows], y_all[rows]
        x, y = augment_mod.apply(config.augment, x, y, gen, scale_range=config.scale_range,
                                 gamma_range=config.gamma_range)
        loss = seg_loss(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if config.eval_every and (step + 1) % config.eval_every == 0 and step + 1 < config.steps:
            te = time.perf_counter()
            curve.append((step + 1, foreground_mean(evaluate(model, data, device, roi))))
            eval_s += time.perf_counter() - te
            if log:
                log(f"  step {step + 1}: loss {loss.item():.4f}, test Dice {curve[-1][1]:.4f}")
    te = time.perf_counter()
    dice = evaluate(model, data, device, roi)
    eval_s += time.perf_counter() - te
    curve.append((config.steps, foreground_mean(dice)))
    return FinetuneResult(init="pretrained" if state is not None else "scratch",
                          seed=config.seed, classes=tuple(data.classes), dice=dice.tolist(),
                          mean_dice=foreground_mean(dice), curve=curve, losses=losses,
                          train_s=time.perf_counter() - t0 - eval_s, eval_s=eval_s,
                          load=config.load, loaded_tensors=len(report.loaded),
                          meta=dict(data.meta), model=model)


# ---- command line ----------------------------------------------------------------------------

def _key_value(text: str):
    from .cli import _key_value as parse
    return parse(text)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Fine-tune a segmentation model from "
                                "RaSD pre-trained weights or from scratch (same code path) and "
                                "report per-class Dice on a held-out split.")
    a = p.add_argument
    a("--checkpoint", help="rasd-pretrain checkpoint or export folder (omit: scratch, "
      "architecture from --model)")
    a("--init", choices=INITS, help="pretrained (default with --checkpoint) or scratch (the "
      "checkpoint's architecture, fresh weights)")
    a("--load", choices=LOADS, default="network", help="which pre-trained weights to load")
    a("--model", default="unet", help="backbone without a checkpoint (default unet)")
    a("--model-arg", type=_key_value, action="append", metavar="KEY=VALUE",
      help="backbone argument without a checkpoint, repeatable")
    a("--embed-dim", type=int, default=32, help="backbone output channels without a checkpoint")
    a("--data", default="mni-tissue", help="mni-tissue (2D), mni-tissue-3d, or a torch.save "
      "file of train/test tensors")
    a("--k", type=int, default=2, help="mni-tissue: training slices; mni-tissue-3d: training "
      "patches")
    a("--patch", type=int, help="mni-tissue-3d: patch size in voxels (default: the "
      "checkpoint's pre-training size, else 32)")
    a("--size", type=int, default=96, help="mni-tissue: image size")
    a("--band", type=int, nargs=2, metavar=("LO", "HI"), help="mni-tissue: training band "
      "(1 mm slice indices)")
    a("--gap", type=int, help="mni-tissue: mm between the band and any test slice")
    a("--steps", type=int, default=200)
    a("--batch", type=int, default=8)
    a("--lr", type=float, default=1e-3)
    a("--weight-decay", type=float, default=1e-4)
    a("--warmup-steps", type=int, default=20)
    a("--seed", type=int, default=0)
    a("--augment", choices=augment_mod.AUGMENTS, default=DEFAULT_AUGMENT,
      help=f"fine-tuning augmentation (default {DEFAULT_AUGMENT}; see rasd_pretrain.augment)")
    a("--no-augment", dest="augment", action="store_const", const="none",
      help="same as --augment none")
    a("--eval-every", type=int, default=0, help="steps between test evaluations (0: end only)")
    a("--scale-range", type=float, nargs=2, default=[0.6, 1.2], metavar=("LO", "HI"),
      help="zoom range of the augmentation (< 1 shrinks the anatomy)")
    a("--gamma-range", type=float, nargs=2, default=[0.7, 1.4], metavar=("LO", "HI"),
      help="intensity gamma range of the augmentation (1 1: none)")
    a("--backbone-lr-scale", type=float, default=1.0, help="backbone lr relative to --lr "
      "(0: frozen backbone, a linear probe of its features)")
    a("--device", default="cpu")
    a("--out", metavar="JSON", help="write the result here")
    a("--quiet", action="store_true")
    return p


def _default_unet_args() -> dict:
    from .config import PRESETS
    return dict(PRESETS["cpu-small"]["model_kwargs"])


def run(args: argparse.Namespace) -> FinetuneResult:
    state = None
    if args.checkpoint:
        spec, weights = read_weights(args.checkpoint)
        state = weights if (args.init or "pretrained") == "pretrained" else None
    else:
        if args.init == "pretrained":
            raise ValueError("--init pretrained needs --checkpoint")
        kwargs = dict(args.model_arg or []) or (_default_unet_args()
                                                if args.model == "unet" else {})
        spec = ModelSpec(model=args.model, model_kwargs=kwargs, embed_dim=args.embed_dim)
    if args.data == "mni-tissue":
        data = mni_task(args.k, size=args.size, band=args.band, gap=args.gap)
    elif args.data == "mni-tissue-3d":
        patch = args.patch or (spec.pretrain_shape[0] if spec.pretrain_shape else None)
        data = mni3d_task(args.k, patch=patch, gap=args.gap)
    else:
        data = file_task(args.data)
    if not args.checkpoint:
        spec = dataclasses.replace(spec, spatial_dims=data.train_image.dim() - 2)
    config = FinetuneConfig(steps=args.steps, batch=args.batch, lr=args.lr,
                            weight_decay=args.weight_decay, warmup_steps=args.warmup_steps,
                            seed=args.seed, augment=args.augment, eval_every=args.eval_every,
                            load=args.load, backbone_lr_scale=args.backbone_lr_scale,
                            scale_range=tuple(args.scale_range),
                            gamma_range=tuple(args.gamma_range),
                            device=args.device)
    log = None if args.quiet else print
    return finetune(data, spec, config, state=state, log=log)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        result = run(args)
    except (ValueError, ImportError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    if not args.quiet:
        print(f"{result.init}: {result.loaded_tensors} pre-trained tensors loaded; "
              f"{result.train_s:.1f} s training")
        for name, d in zip(result.classes, result.dice):
            print(f"  Dice {name:12s} {d:.4f}")
        print(f"  mean foreground Dice {result.mean_dice:.4f}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result.to_dict(), f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
