"""`rasd-pretrain`: RaSD pre-training from flags or a YAML file (flags override the file).

    rasd-pretrain --preset cpu-small --steps 200 --out runs/demo
    rasd-pretrain --config run.yaml --lr 3e-5
    rasd-pretrain --out runs/demo --resume --steps 400
    rasd-pretrain --out runs/demo --resume --stop-at 300     # end early, keep the schedule
    torchrun --nproc-per-node 8 -m rasd_pretrain --preset rasd3d --out runs/rasd3d
    rasd-pretrain export runs/demo/checkpoints/last.pt --out weights/
    rasd-pretrain --nnunet-plans nnUNetPlans.json --nnunet-configuration 3d_fullres --out runs/nn
    rasd-pretrain nnunet-check runs/nn/export/nnunet_pretrained.pth --nnunet-plans ... (see
        rasd_pretrain.nnunet; also nnunet-default-plans)
"""

from __future__ import annotations

import argparse
import os
import sys

from ._deps import MissingDependency, require
from .config import (AMP_MODES, CONSISTENCY_KINDS, PRESETS, SCHEDULES, build, load_yaml,
                     normalize_keys, preset_values)
from .trainer import Stopped, train

PROG = "rasd-pretrain"

# flag dest -> config field (where they differ)
_RENAME = {"labels": "num_labels", "synth": "synthesis", "model_arg": "model_kwargs"}
_NOT_CONFIG = {"config", "resume", "overwrite", "quiet", "progress", "print_config", "stop_at",
               "nnunet_plans", "nnunet_configuration"}


def _key_value(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        parsed = require("yaml").safe_load(value)
    except Exception:
        parsed = value
    return key.strip().replace("-", "_"), parsed


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG, description="RaSD pre-training on freshly synthesised images (every step "
        "draws a new batch on the training device). Precedence: preset < --config < flags.",
        epilog=f"presets: {', '.join(sorted(PRESETS))}. Export encoder weights of a checkpoint: "
        f"{PROG} export CHECKPOINT --out DIR.")
    a = p.add_argument
    a("--config", metavar="YAML", help="settings file (keys as in OUT/config.yaml)")
    a("--preset", choices=sorted(PRESETS),
      help="starting point (default cpu-small unless --config or --resume give one)")
    g = p.add_argument_group("data")
    g.add_argument("--shape", type=int, nargs="+", metavar="N", help="image size, 2 or 3 ints")
    g.add_argument("--labels", type=int, metavar="K", help="labels per image")
    g.add_argument("--batch", type=int, help="global batch (split over the ranks)")
    g.add_argument("--views", type=int, help="appearances per anatomy (2 adds a consistency "
                   "term)")
    g.add_argument("--seed", type=int, help="data seed (also seeds the model initialisation)")
    g.add_argument("--backend", help="synthesis backend (auto, reference, cpu, triton, cuda)")
    g.add_argument("--synth", type=_key_value, action="append", metavar="KEY=VALUE",
                   help="SynthesisConfig override, repeatable (e.g. noise_std_max=0.3)")
    g = p.add_argument_group("model and loss")
    g.add_argument("--model", help="swinunetr, unet, or package.module:factory")
    g.add_argument("--model-arg", type=_key_value, action="append", metavar="KEY=VALUE",
                   help="model factory argument, repeatable (e.g. feature_size=24)")
    g.add_argument("--embed-dim", type=int, help="output channels E of the backbone")
    g.add_argument("--tau", type=float, help="temperature (default 0.07)")
    g.add_argument("--normalize", action=argparse.BooleanOptionalAction,
                   help="L2-normalise embeddings and prototypes (default on)")
    g.add_argument("--consistency", choices=CONSISTENCY_KINDS, help="two-view term")
    g.add_argument("--consistency-weight", type=float)
    g = p.add_argument_group("nnU-Net (the nnunet extra)")
    g.add_argument("--nnunet-plans", metavar="JSON", help="pre-train the network of this nnU-Net "
                   "plans file (sets model, shape, batch, embed-dim and channels from it)")
    g.add_argument("--nnunet-configuration", metavar="NAME",
                   help="configuration of the plans (2d, 3d_fullres, ...)")
    g = p.add_argument_group("optimisation")
    g.add_argument("--steps", type=int, help="total steps of the run (sets the cosine "
                   "schedule's length)")
    g.add_argument("--stop-at", type=int, metavar="STEP", help="end this invocation after "
                   "STEP (checkpoint and export written) without changing --steps or the "
                   "schedule; --resume continues. Ctrl-C or SIGTERM also stop after the "
                   "current step with a checkpoint and an export")
    g.add_argument("--lr", type=float, help="AdamW learning rate")
    g.add_argument("--weight-decay", type=float)
    g.add_argument("--warmup-steps", type=int)
    g.add_argument("--schedule", choices=SCHEDULES)
    g.add_argument("--grad-clip", type=float, help="max gradient norm (0: off)")
    g.add_argument("--amp", choices=AMP_MODES, help="autocast dtype for the model")
    g = p.add_argument_group("run")
    g.add_argument("--out", help="run folder")
    g.add_argument("--device", help="auto, cpu, cuda, cuda:1 ...")
    g.add_argument("--ckpt-every", type=int, help="steps between checkpoints")
    g.add_argument("--log-every", type=int, help="steps between printed lines (no tty)")
    g.add_argument("--resume", nargs="?", const=True, metavar="CKPT",
                   help="continue from OUT/checkpoints/last.pt, or from CKPT")
    g.add_argument("--overwrite", action="store_true", help="replace a run already in OUT")
    g.add_argument("--quiet", action="store_true", help="print nothing but errors")
    g.add_argument("--progress", action=argparse.BooleanOptionalAction,
                   help="progress bar (default: when stderr is a terminal)")
    g.add_argument("--print-config", action="store_true", help="print the resolved config "
                   "as YAML and exit without training")
    return p


def _flag_values(args: argparse.Namespace) -> dict:
    values = {}
    for dest, value in vars(args).items():
        if value is None or dest in _NOT_CONFIG:
            continue
        if dest in ("synth", "model_arg"):
            value = dict(value)
        values[_RENAME.get(dest, dest)] = value
    return values


def _resume_base(args: argparse.Namespace, out: str | None) -> dict:
    """Settings of the run being resumed (used when neither --preset nor --config is given)."""
    if args.resume is True:
        if out is None:
            raise ValueError("--resume without a checkpoint path needs --out (the run folder)")
        path = os.path.join(out, "config.yaml")
        if not os.path.isfile(path):
            raise ValueError(f"nothing to resume in {out}: no config.yaml there")
        return load_yaml(path)
    from .checkpoint import load
    return normalize_keys(load(args.resume)["config"], f"checkpoint {args.resume}")


def resolve(args: argparse.Namespace):
    """The PretrainConfig of parsed arguments."""
    flags = _flag_values(args)
    file_values = load_yaml(args.config) if args.config else {}
    preset = args.preset or file_values.get("preset")
    if preset:
        base = preset_values(preset)
    elif args.config:
        base = {}
    elif args.resume is not None:
        base = _resume_base(args, flags.get("out"))
    else:
        base = preset_values("cpu-small")
    return build(base, file_values, _nnunet_values(args, flags), flags)


def _nnunet_values(args: argparse.Namespace, flags: dict) -> dict:
    """Settings from --nnunet-plans / --nnunet-configuration (empty without them)."""
    if args.nnunet_plans is None and args.nnunet_configuration is None:
        return {}
    if args.nnunet_plans is None or args.nnunet_configuration is None:
        raise ValueError("--nnunet-plans and --nnunet-configuration go together")
    clash = sorted({"model", "model_kwargs", "embed_dim"} & set(flags))
    if clash:
        raise ValueError(f"--nnunet-plans sets the network; drop {clash}")
    from .nnunet import config_values
    return config_values(args.nnunet_plans, args.nnunet_configuration)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["export"]:
        return export_main(argv[1:])
    if argv[:1] in (["nnunet-check"], ["nnunet-default-plans"]):
        from . import nnunet
        return nnunet.main(argv)
    args = parser().parse_args(argv)
    try:
        config = resolve(args)
        if args.print_config:
            print(require("yaml").safe_dump(config.to_dict(), sort_keys=False), end="")
            print(f"{PROG}: --print-config: nothing was trained (drop the flag to train)",
                  file=sys.stderr)
            return 0
        if args.stop_at is not None and args.stop_at < 1:
            raise ValueError(f"--stop-at must be a step >= 1, got {args.stop_at}")
        result = train(config, resume=args.resume, overwrite=args.overwrite, quiet=args.quiet,
                       progress=args.progress, record=False, stop_at=args.stop_at)
        if config.model == "nnunet" and result.exports and not args.quiet:
            print(f"fine-tune with: nnUNetv2_train DATASET {config.model_kwargs['configuration']}"
                  f" FOLD -pretrained_weights {result.exports['network']}")
    except (ValueError, MissingDependency) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except Stopped as exc:
        print(f"{PROG}: interrupted: {exc}, written to the checkpoint and export/; "
              "continue with --resume", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; continue from the last checkpoint with --resume",
              file=sys.stderr)
        return 130
    return 0


def export_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog=f"{PROG} export",
                                description="Write a checkpoint's weights in MONAI layouts "
                                "(encoder.pt, encoder_load_from.pt, network.pt, export.json).")
    p.add_argument("checkpoint")
    p.add_argument("--out", required=True, help="folder for the exported files")
    p.add_argument("--overwrite", action="store_true")
    args = p.parse_args(argv)
    from .export import export_checkpoint
    try:
        taken = [n for n in ("encoder.pt", "encoder_load_from.pt", "network.pt", "export.json",
                             "nnunet_pretrained.pth")
                 if os.path.exists(os.path.join(args.out, n))]
        if taken and not args.overwrite:
            raise ValueError(f"{args.out} already holds {', '.join(taken)}; pass --overwrite "
                             "to replace them")
        paths = export_checkpoint(args.checkpoint, args.out)
    except (ValueError, OSError) as exc:
        print(f"{PROG} export: error: {exc}", file=sys.stderr)
        return 2
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
