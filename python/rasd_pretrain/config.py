"""PretrainConfig: every setting of a pre-training run, presets, YAML loading, resume checks.

Precedence: preset < YAML file < command-line flags. A config is validated on construction
(ValueError naming the field). Fields split in two: the *experiment* (everything that changes
what the model sees or how it learns; a checkpoint only resumes under the same experiment) and
*run options* (where to write, how often, how long, on which device) that may change between a
run and its resumption.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from rasd_kernels import SynthesisConfig

# Run options: may differ between a checkpoint and the run that resumes it.
RUN_OPTIONS = ("preset", "steps", "out", "device", "ckpt_every", "log_every")

SCHEDULES = ("constant", "cosine")
AMP_MODES = ("none", "bf16")
CONSISTENCY_KINDS = ("cosine", "mse")


@dataclass(frozen=True)
class PretrainConfig:
    """One pre-training run. `batch` is the global batch, split evenly over the ranks."""

    preset: str | None = None
    # Data (rasd_kernels synthesis).
    shape: tuple[int, ...] = (64, 64)
    num_labels: int = 8
    batch: int = 8
    views: int = 1
    seed: int = 0
    backend: str = "auto"
    synthesis: dict = field(default_factory=dict)   # SynthesisConfig field overrides
    # Model.
    model: str = "unet"
    model_kwargs: dict = field(default_factory=dict)
    embed_dim: int = 32
    # Loss.
    tau: float = 0.07
    eps: float = 1e-6
    normalize: bool = True
    consistency: str = "cosine"
    consistency_weight: float = 1.0
    # Optimiser (AdamW) and schedule.
    lr: float = 1e-5
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 0
    schedule: str = "constant"
    grad_clip: float = 0.0
    amp: str = "none"
    # Run options.
    steps: int = 200
    out: str = "runs/rasd"
    device: str = "auto"
    ckpt_every: int = 1000
    log_every: int = 50

    def __post_init__(self) -> None:
        shape = tuple(self.shape)
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "betas", tuple(self.betas))
        object.__setattr__(self, "synthesis", dict(self.synthesis or {}))
        object.__setattr__(self, "model_kwargs", dict(self.model_kwargs or {}))
        if len(shape) not in (2, 3) or not all(_is_int(n) and n >= 2 for n in shape):
            raise ValueError(f"shape must be 2 or 3 ints, got {list(shape)}")
        for name, lo in (("num_labels", 2), ("batch", 1), ("views", 1), ("seed", 0),
                         ("embed_dim", 1), ("warmup_steps", 0), ("steps", 1),
                         ("ckpt_every", 1), ("log_every", 1)):
            value = getattr(self, name)
            if not _is_int(value) or value < lo:
                raise ValueError(f"{name} must be an int >= {lo}, got {value!r}")
        if self.num_labels > 255:
            raise ValueError(f"num_labels must be <= 255 (labels are uint8), got "
                             f"{self.num_labels}")
        for name in ("tau", "lr"):
            if not _is_number(getattr(self, name)) or getattr(self, name) <= 0:
                raise ValueError(f"{name} must be a number > 0, got {getattr(self, name)!r}")
        for name in ("eps", "weight_decay", "grad_clip", "consistency_weight"):
            if not _is_number(getattr(self, name)) or getattr(self, name) < 0:
                raise ValueError(f"{name} must be a number >= 0, got {getattr(self, name)!r}")
        if len(self.betas) != 2 or not all(_is_number(b) and 0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {list(self.betas)}")
        for name, choices in (("schedule", SCHEDULES), ("amp", AMP_MODES),
                              ("consistency", CONSISTENCY_KINDS)):
            if getattr(self, name) not in choices:
                raise ValueError(f"{name} must be one of {choices}, got {getattr(self, name)!r}")
        if not isinstance(self.normalize, bool):
            raise ValueError(f"normalize must be true or false, got {self.normalize!r}")
        for name in ("model", "backend", "device", "out"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ValueError(f"{name} must be a non-empty string, got "
                                 f"{getattr(self, name)!r}")
        synth = self.synthesis_config()   # validates the overrides
        need = max((*synth.warp_nodes, *(synth.field_nodes if synth.shapes == "perlin" else ())))
        if min(shape) < need:
            raise ValueError(f"shape {list(shape)} is too small: synthesis needs every size >= "
                             f"{need} (its largest coarse grid)")

    @property
    def spatial_dims(self) -> int:
        return len(self.shape)

    def synthesis_config(self) -> SynthesisConfig:
        names = {f.name for f in dataclasses.fields(SynthesisConfig)}
        unknown = sorted(set(self.synthesis) - names)
        if unknown:
            raise ValueError(f"unknown synthesis setting(s) {unknown}; valid: {sorted(names)}")
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in self.synthesis.items()}
        try:
            return SynthesisConfig(**values)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"synthesis settings {self.synthesis}: {exc}") from None

    @property
    def in_channels(self) -> int:
        return self.synthesis_config().channels

    def replace(self, **changes) -> "PretrainConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML/JSON-friendly values (tuples become lists)."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def experiment_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.to_dict().items() if k not in RUN_OPTIONS}

    def lr_at(self, step: int) -> float:
        """Learning rate of 0-based `step`: linear warm-up, then constant or cosine to 0."""
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        if self.schedule == "cosine":
            span = max(1, self.steps - self.warmup_steps)
            t = min(1.0, (step - self.warmup_steps) / span)
            return self.lr * 0.5 * (1.0 + math.cos(math.pi * t))
        return self.lr


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _plain(v):
    if isinstance(v, (tuple, list)):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return v


FIELD_NAMES = tuple(f.name for f in dataclasses.fields(PretrainConfig))

# The published setups, and a small one that trains on a laptop CPU in minutes.
PRESETS: dict[str, dict[str, Any]] = {
    # 1.2 M volumes of 128^3 with K = 8 at batch 4: 300 k steps.
    "rasd3d": dict(shape=(128, 128, 128), num_labels=8, batch=4, model="swinunetr",
                   model_kwargs={"feature_size": 48}, embed_dim=32, lr=1e-5, steps=300_000,
                   ckpt_every=5000, log_every=100),
    # 9.6 M images of 512^2 with K = 16 at batch 16: 600 k steps.
    "rasd2d": dict(shape=(512, 512), num_labels=16, batch=16, model="swinunetr",
                   model_kwargs={"feature_size": 48}, embed_dim=32, lr=1e-5, steps=600_000,
                   ckpt_every=5000, log_every=100),
    # A MONAI UNet at 64^2: a few minutes for 200 steps on two CPU cores. The larger lr makes
    # the loss fall visibly within such a short run.
    "cpu-small": dict(shape=(64, 64), num_labels=8, batch=8, model="unet",
                      model_kwargs={"channels": [16, 32, 64], "strides": [2, 2],
                                    "num_res_units": 1},
                      embed_dim=32, lr=1e-3, steps=200, ckpt_every=100, log_every=20),
}


def preset_values(name: str) -> dict[str, Any]:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return {"preset": name, **PRESETS[name]}


def normalize_keys(values: dict[str, Any], where: str) -> dict[str, Any]:
    """Accept `model-kwargs` as well as `model_kwargs`; reject unknown keys by name."""
    if not isinstance(values, dict):
        raise ValueError(f"{where} must hold a mapping of settings, got {type(values).__name__}")
    out = {str(k).replace("-", "_"): v for k, v in values.items()}
    unknown = sorted(set(out) - set(FIELD_NAMES))
    if unknown:
        raise ValueError(f"unknown setting(s) {unknown} in {where}; valid: {list(FIELD_NAMES)}")
    return out


def load_yaml(path: str) -> dict[str, Any]:
    from ._deps import require
    yaml = require("yaml")
    try:
        with open(path) as f:
            values = yaml.safe_load(f)
    except OSError as exc:
        raise ValueError(f"cannot read config file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"config file {path} is not valid YAML: {exc}") from None
    return normalize_keys(values or {}, f"config file {path}")


def dump_yaml(config: PretrainConfig, path: str) -> None:
    from ._deps import require
    yaml = require("yaml")
    with open(path, "w") as f:
        yaml.safe_dump(config.to_dict(), f, sort_keys=False)


def build(*layers: dict[str, Any]) -> PretrainConfig:
    """Merge layers left to right (later wins; dict-valued settings merge key by key)."""
    merged: dict[str, Any] = {}
    for layer in layers:
        # Another model starts from its own defaults, not the previous model's arguments.
        if "model" in layer and layer["model"] != merged.get("model"):
            merged.pop("model_kwargs", None)
        for k, v in layer.items():
            if isinstance(v, dict) and isinstance(merged.get(k), dict):
                merged[k] = {**merged[k], **v}
            else:
                merged[k] = v
    try:
        return PretrainConfig(**merged)
    except TypeError as exc:   # a wrong type reaching a comparison
        raise ValueError(f"invalid configuration: {exc}") from None


def differences(saved: dict[str, Any], current: PretrainConfig) -> list[str]:
    """Experiment settings that differ between a checkpoint's config and this one.

    `steps` is a run option, except under the cosine schedule, whose curve it sets.
    """
    now = current.experiment_dict()
    keys = {k for k in saved if k not in RUN_OPTIONS} | set(now)
    if "cosine" in (saved.get("schedule"), current.schedule):
        now["steps"] = current.steps
        keys.add("steps")
    return [f"{k}: {saved.get(k)!r} in the checkpoint, {now.get(k)!r} now"
            for k in sorted(keys) if _plain(saved.get(k)) != now.get(k)]
