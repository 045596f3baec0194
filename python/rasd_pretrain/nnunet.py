"""nnU-Net v2 hand-off: pre-train the network an nnU-Net plans file describes, export weights
that ``nnUNetv2_train ... -pretrained_weights FILE`` loads.

* `read_plan` reads one configuration of a plans file (nnU-Net's own PlansManager resolves it).
* The ``nnunet`` backbone builds the network with nnU-Net's own builder
  (``get_network_from_plans``), deep supervision off, and returns the features of the last
  decoder stage (the input of the full-resolution segmentation head): the prototype loss acts
  on exactly the features that nnU-Net's freshly initialised head reads when fine-tuning, and
  every exported tensor is trained by it.
* `export_weights` writes ``nnunet_pretrained.pth``: ``{"network_weights": state dict}`` with
  nnU-Net's key names, every key but the segmentation heads (``.seg_layers.``), which nnU-Net
  never loads; `check_weights` tells, before a fine-tuning run, whether such a file fits the
  network of a plans file (first differing key and shapes).
* `default_plans` plans a dataset-free default: nnU-Net's own planner (residual-encoder M preset
  by default) run on one synthetic image of the requested size at 1 mm spacing.

    pip install 'rasd_kernels[nnunet]'     # nnunetv2 (and dynamic-network-architectures)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections import OrderedDict
from dataclasses import dataclass

import torch
from torch import nn

from ._deps import require
from .models import register_model

WEIGHTS_NAME = "nnunet_pretrained.pth"
HEAD_KEY = ".seg_layers."        # nnU-Net's load_pretrained_weights skips keys holding this
FORMAT = "rasd_pretrain.nnunet/1"
DEFAULT_PLANNER = "nnUNetPlannerResEncM"
# Output channels of the (unused, never exported) segmentation head during pre-training.
_PRETRAIN_HEAD_CLASSES = 2


@dataclass(frozen=True)
class NnUNetPlan:
    """One configuration of an nnU-Net plans file, as the driver uses it."""

    path: str
    plans_name: str
    dataset_name: str
    configuration: str
    arch_class_name: str
    arch_kwargs: dict
    arch_kwargs_req_import: tuple
    patch_size: tuple
    batch_size: int
    input_channels: int

    @property
    def decoder_features(self) -> int:
        """Channels of the last decoder stage (the segmentation head's input)."""
        features = self.arch_kwargs.get("features_per_stage")
        if not features:
            raise ValueError(f"{self.path}: configuration {self.configuration!r} uses "
                             f"{self.arch_class_name}, which has no 'features_per_stage'; the "
                             "driver supports nnU-Net's U-Nets (PlainConvUNet, "
                             "ResidualEncoderUNet, ResidualUNet)")
        return int(features[0])


def _load_json(path: str) -> dict:
    try:
        with open(path) as f:
            return json.load(f)
    except OSError as exc:
        raise ValueError(f"cannot read nnU-Net plans {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not an nnU-Net plans file (not JSON: {exc})") from None


def _input_channels(path: str, plans: dict, manager, config_manager) -> int:
    """From the dataset.json beside the plans (nnU-Net's own count, cascade inputs included);
    without one, from the per-channel intensity statistics the plans hold."""
    dataset_json = os.path.join(os.path.dirname(os.path.abspath(path)), "dataset.json")
    if os.path.isfile(dataset_json):
        label_handling = require("nnunetv2.utilities.label_handling.label_handling")
        return int(label_handling.determine_num_input_channels(
            manager, config_manager, _load_json(dataset_json)))
    per_channel = plans.get("foreground_intensity_properties_per_channel")
    if not per_channel:
        raise ValueError(f"{path}: no dataset.json beside the plans and no "
                         "'foreground_intensity_properties_per_channel' in them: cannot tell "
                         "the number of input channels")
    return len(per_channel)


def read_plan(path: str, configuration: str) -> NnUNetPlan:
    """The configuration `configuration` of the nnU-Net plans file `path` (ValueError naming
    what is wrong: not a plans file, unknown configuration)."""
    plans = _load_json(path)
    if not isinstance(plans, dict) or not isinstance(plans.get("configurations"), dict) \
            or "plans_name" not in plans:
        raise ValueError(f"{path} is not an nnU-Net v2 plans file (it has no 'plans_name' and "
                         "'configurations' entries; nnUNetv2_plan_and_preprocess writes one as "
                         "nnUNet_preprocessed/DatasetXXX_NAME/nnUNetPlans.json)")
    available = sorted(plans["configurations"])
    if configuration not in plans["configurations"]:
        raise ValueError(f"configuration {configuration!r} is not in {path}; it has "
                         f"{available}")
    handler = require("nnunetv2.utilities.plans_handling.plans_handler")
    manager = handler.PlansManager(plans)
    try:
        cm = manager.get_configuration(configuration)
        return NnUNetPlan(
            path=os.path.abspath(path), plans_name=manager.plans_name,
            dataset_name=plans.get("dataset_name", ""), configuration=configuration,
            arch_class_name=cm.network_arch_class_name,
            arch_kwargs=dict(cm.network_arch_init_kwargs),
            arch_kwargs_req_import=tuple(cm.network_arch_init_kwargs_req_import),
            patch_size=tuple(int(n) for n in cm.patch_size), batch_size=int(cm.batch_size),
            input_channels=_input_channels(path, plans, manager, cm))
    except (KeyError, TypeError, RuntimeError) as exc:
        raise ValueError(f"{path}: configuration {configuration!r} is incomplete or not in "
                         f"nnU-Net v2's format ({type(exc).__name__}: {exc})") from None


def build_network(plan: NnUNetPlan, num_classes: int, *, deep_supervision: bool) -> nn.Module:
    """The plan's network, built by nnU-Net's own builder (initialised as nnU-Net does)."""
    builder = require("nnunetv2.utilities.get_network_from_plans")
    try:
        return builder.get_network_from_plans(
            plan.arch_class_name, plan.arch_kwargs, plan.arch_kwargs_req_import,
            plan.input_channels, num_classes, allow_init=True, deep_supervision=deep_supervision)
    except (ImportError, TypeError, ValueError, AssertionError) as exc:
        raise ValueError(f"nnU-Net cannot build {plan.arch_class_name} from {plan.path} "
                         f"({plan.configuration}): {exc}") from None


class DecoderFeatures(nn.Module):
    """An nnU-Net network that returns its last decoder stage's features [B, F, *S] (what the
    full-resolution segmentation head reads) instead of the segmentation."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        heads = getattr(getattr(network, "decoder", None), "seg_layers", None)
        if not isinstance(heads, nn.ModuleList) or len(heads) == 0:
            raise ValueError(f"{type(network).__name__} has no decoder.seg_layers: the driver "
                             "takes the features that nnU-Net's U-Net decoders feed their "
                             "segmentation head")
        self.network = network
        self._features: torch.Tensor | None = None
        heads[-1].register_forward_pre_hook(self._keep)

    def _keep(self, module, inputs) -> None:
        self._features = inputs[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.network(x)
        features, self._features = self._features, None
        return features


@register_model("nnunet")
def nnunet_backbone(*, spatial_dims: int, in_channels: int, out_channels: int, shape,
                    plans: str, configuration: str) -> nn.Module:
    """The network of an nnU-Net plans configuration, returning decoder features."""
    plan = read_plan(plans, configuration)
    if spatial_dims != len(plan.patch_size):
        raise ValueError(f"{plans} ({configuration}) is {len(plan.patch_size)}D but the images "
                         f"are {spatial_dims}D")
    if in_channels != plan.input_channels:
        raise ValueError(f"{plans} ({configuration}) expects {plan.input_channels} input "
                         f"channel(s), the synthesis makes {in_channels} (synthesis channels)")
    if out_channels != plan.decoder_features:
        raise ValueError(f"the last decoder stage of {plans} ({configuration}) has "
                         f"{plan.decoder_features} channels, embed_dim is {out_channels}")
    return DecoderFeatures(build_network(plan, _PRETRAIN_HEAD_CLASSES, deep_supervision=False))


def config_values(plans: str, configuration: str) -> dict:
    """PretrainConfig settings of a plans configuration: the network, the patch size as the
    synthesis shape, the plans' batch size and input channels, the decoder's width as E."""
    plan = read_plan(plans, configuration)
    return {"model": "nnunet",
            "model_kwargs": {"plans": plan.path, "configuration": configuration},
            "shape": plan.patch_size, "batch": plan.batch_size,
            "embed_dim": plan.decoder_features,
            "synthesis": {"channels": plan.input_channels}}


# ---- export and checks --------------------------------------------------------------------

def nnunet_state_dict(model_state: dict) -> OrderedDict:
    """nnU-Net's key names (the wrapper's 'network.' prefix removed), segmentation heads left
    out (nnU-Net never loads them; they were not trained)."""
    prefix = "network."
    return OrderedDict((k[len(prefix):], v.detach().cpu().clone())
                       for k, v in model_state.items()
                       if k.startswith(prefix) and HEAD_KEY not in k)


def export_weights(model_state: dict, config: dict, step: int, out_dir: str) -> dict[str, str]:
    """Write OUT/nnunet_pretrained.pth (for -pretrained_weights) and export.json."""
    os.makedirs(out_dir, exist_ok=True)
    kwargs = config["model_kwargs"]
    meta = {"format": FORMAT, "plans": kwargs["plans"], "configuration": kwargs["configuration"],
            "patch_size": list(config["shape"]),
            "input_channels": int(config.get("synthesis", {}).get("channels", 1)), "step": step,
            "features": "last decoder stage (input of the segmentation head)"}
    try:    # the plans may have moved since training: the weights are written regardless
        plan = read_plan(kwargs["plans"], kwargs["configuration"])
        meta.update(plans_name=plan.plans_name, dataset_name=plan.dataset_name,
                    network_class=plan.arch_class_name)
    except ValueError:
        pass
    paths = {"network": os.path.join(out_dir, WEIGHTS_NAME),
             "meta": os.path.join(out_dir, "export.json")}
    torch.save({"network_weights": nnunet_state_dict(model_state), "rasd_pretrain": meta},
               paths["network"])
    with open(paths["meta"], "w") as f:
        json.dump({**meta, "model": "nnunet", "files": {"network": WEIGHTS_NAME}}, f, indent=2)
    return paths


def first_mismatch(expected: dict, weights: dict) -> str | None:
    """The first key of `expected` (but the heads) that `weights` lacks or holds with another
    shape, as a sentence; None when every one fits."""
    for key, value in expected.items():
        if HEAD_KEY in key:
            continue
        if key not in weights:
            return f"key {key} (shape {list(value.shape)} in the network) is missing"
        if tuple(weights[key].shape) != tuple(value.shape):
            return (f"key {key} has shape {list(weights[key].shape)} in the weights, "
                    f"{list(value.shape)} in the network")
    return None


def check_weights(path: str, plans: str, configuration: str) -> int:
    """Refuse (ValueError naming the first differing key and shapes) weights that nnU-Net's
    load_pretrained_weights would reject for the network of `plans` / `configuration`;
    returns the number of tensors it would load."""
    plan = read_plan(plans, configuration)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:   # torch raises several types for foreign or corrupt files
        raise ValueError(f"{path} is not a readable weights file: {exc}") from None
    weights = payload.get("network_weights") if isinstance(payload, dict) else None
    if not isinstance(weights, dict):
        raise ValueError(f"{path} holds no 'network_weights' (not an nnU-Net checkpoint)")
    expected = build_network(plan, _PRETRAIN_HEAD_CLASSES, deep_supervision=True).state_dict()
    problem = first_mismatch(expected, weights)
    if problem:
        built = payload.get("rasd_pretrain", {})
        origin = (f" (they were built from {built.get('plans')}, configuration "
                  f"{built.get('configuration')})" if built else "")
        raise ValueError(f"{path} does not fit the network of {plan.path} ({configuration}): "
                         f"{problem}{origin}")
    return sum(HEAD_KEY not in k for k in expected)


# ---- a plan without a dataset -----------------------------------------------------------------

_PLAN_SCRIPT = """
import sys
from nnunetv2.experiment_planning.plan_and_preprocess_api import (extract_fingerprints,
                                                                   plan_experiments)
extract_fingerprints([int(sys.argv[1])], num_processes=1, check_dataset_integrity=True)
plan_experiments([int(sys.argv[1])], sys.argv[2])
"""


def _write_one_case(raw: str, shape, channels: int, seed: int) -> None:
    """One synthetic RaSD image/label pair at 1 mm spacing in nnU-Net's raw format."""
    import numpy as np
    import rasd_kernels as rk
    sitk = require("SimpleITK")
    os.makedirs(os.path.join(raw, "imagesTr"))
    os.makedirs(os.path.join(raw, "labelsTr"))
    config = rk.SynthesisConfig(channels=channels)
    image, label = rk.synthesize(1, tuple(shape), 4, seed=seed, start_index=0, device="cpu",
                                 config=config)
    for c in range(channels):
        sitk.WriteImage(sitk.GetImageFromArray(image[0, c].numpy()),
                        os.path.join(raw, "imagesTr", f"case_000_{c:04d}.nii.gz"))
    sitk.WriteImage(sitk.GetImageFromArray(label[0].numpy().astype(np.uint8)),
                    os.path.join(raw, "labelsTr", "case_000.nii.gz"))
    dataset = {"channel_names": {str(c): f"rasd{c}" for c in range(channels)},
               "labels": {"background": 0, **{f"label{k}": k for k in range(1, 4)}},
               "numTraining": 1, "file_ending": ".nii.gz"}
    with open(os.path.join(raw, "dataset.json"), "w") as f:
        json.dump(dataset, f, indent=2)


def default_plans(shape, out_dir: str, *, planner: str = DEFAULT_PLANNER, channels: int = 1,
                  dataset_id: int = 999, seed: int = 0) -> str:
    """Plans from nnU-Net's own planner for images of `shape` (2 or 3 sizes) at 1 mm spacing:
    the planner sees one synthetic case of that size. Writes PLANS.json and dataset.json into
    `out_dir`; returns the plans path. The planner may shrink the patch below `shape` to fit
    its GPU memory target."""
    require("nnunetv2")
    if len(shape) not in (2, 3) or min(shape) < 8:
        raise ValueError(f"shape must be 2 or 3 sizes >= 8, got {list(shape)}")
    name = f"Dataset{dataset_id:03d}_RaSDDefault"
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "nnUNet_raw": os.path.join(tmp, "raw"),
               "nnUNet_preprocessed": os.path.join(tmp, "preprocessed"),
               "nnUNet_results": os.path.join(tmp, "results")}
        _write_one_case(os.path.join(tmp, "raw", name), shape, channels, seed)
        run = subprocess.run([sys.executable, "-c", _PLAN_SCRIPT, str(dataset_id), planner],
                             env=env, capture_output=True, text=True)
        folder = os.path.join(tmp, "preprocessed", name)
        written = [f for f in os.listdir(folder) if f.endswith("Plans.json")] \
            if os.path.isdir(folder) else []
        if run.returncode or len(written) != 1:
            raise ValueError(f"nnU-Net's planner {planner} failed for shape {list(shape)}:\n"
                             f"{run.stderr[-2000:] or run.stdout[-2000:]}")
        os.makedirs(out_dir, exist_ok=True)
        target = os.path.join(out_dir, written[0])
        with open(os.path.join(folder, written[0])) as src, open(target, "w") as dst:
            dst.write(src.read())
        with open(os.path.join(tmp, "raw", name, "dataset.json")) as src, \
                open(os.path.join(out_dir, "dataset.json"), "w") as dst:
            dst.write(src.read())
    return target


# ---- commands: rasd-pretrain nnunet-check / nnunet-default-plans --------------------------------

def _parser(command: str):
    import argparse
    prog = f"rasd-pretrain {command}"
    if command == "nnunet-check":
        p = argparse.ArgumentParser(prog=prog, description="Check that pre-trained weights fit "
                                    "the network of an nnU-Net plans configuration (what "
                                    "nnUNetv2_train -pretrained_weights requires).")
        p.add_argument("weights", help="nnunet_pretrained.pth")
    else:
        p = argparse.ArgumentParser(prog=prog, description="Write nnU-Net plans for images of "
                                    "a given size at 1 mm spacing, planned by nnU-Net's own "
                                    "planner, for pre-training without a dataset.")
        p.add_argument("--shape", type=int, nargs="+", required=True, metavar="N",
                       help="image size, 2 or 3 ints (the patch size the planner starts from)")
        p.add_argument("--out", required=True, help="folder for PLANS.json and dataset.json")
        p.add_argument("--planner", default=DEFAULT_PLANNER,
                       help=f"nnU-Net planner class (default {DEFAULT_PLANNER}; "
                       "ExperimentPlanner for the plain U-Net)")
        p.add_argument("--channels", type=int, default=1, help="input channels")
    if command == "nnunet-check":
        p.add_argument("--nnunet-plans", required=True, metavar="JSON")
        p.add_argument("--nnunet-configuration", required=True, metavar="NAME")
    return p


def main(argv: list[str]) -> int:
    """`rasd-pretrain nnunet-check ...` and `rasd-pretrain nnunet-default-plans ...`."""
    from ._deps import MissingDependency
    command = argv[0]
    args = _parser(command).parse_args(argv[1:])
    try:
        if command == "nnunet-check":
            n = check_weights(args.weights, args.nnunet_plans, args.nnunet_configuration)
            print(f"{args.weights} fits {args.nnunet_plans} ({args.nnunet_configuration}): "
                  f"{n} tensors load, the segmentation heads start fresh")
        else:
            path = default_plans(args.shape, args.out, planner=args.planner,
                                 channels=args.channels)
            plans = _load_json(path)
            for name in sorted(plans["configurations"]):
                plan = read_plan(path, name)
                print(f"{name}: {plan.arch_class_name.rsplit('.', 1)[-1]}, patch "
                      f"{list(plan.patch_size)}, batch {plan.batch_size}")
            print(f"plans: {path}")
    except (ValueError, MissingDependency, OSError) as exc:
        print(f"rasd-pretrain {command}: error: {exc}", file=sys.stderr)
        return 2
    return 0
