"""Checkpoints: model, optimiser, step and config; nothing else is needed to resume exactly.

The data is a pure function of (seed, global index) and the per-step torch generator is
re-seeded from (seed, step, rank), so no random state is stored. Files are written atomically
(temporary file, then rename), so an interrupted save never leaves a truncated checkpoint.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from .config import PretrainConfig, differences

FORMAT = "rasd_pretrain.checkpoint/1"


def save(path: str, *, model_state: dict, optimizer_state: dict, step: int,
         config: PretrainConfig, world_size: int) -> None:
    import rasd_kernels
    payload = {
        "format": FORMAT,
        "step": step,
        "config": config.to_dict(),
        "model": model_state,
        "optimizer": optimizer_state,
        "world_size": world_size,
        "versions": {"rasd_kernels": rasd_kernels.__version__, "torch": str(torch.__version__)},
    }
    remove_stale_temporaries(path)
    tmp = f"{path}.tmp{os.getpid()}"
    torch.save(payload, tmp)
    os.replace(tmp, path)


def remove_stale_temporaries(path: str) -> list[str]:
    """Delete the half-written `PATH.tmp<pid>` files left by saves that were killed (their
    process is gone); returns them."""
    folder, name = os.path.split(os.path.abspath(path))
    if not os.path.isdir(folder):
        return []
    stale = []
    for entry in os.listdir(folder):
        pid = entry[len(name) + 4:]
        if entry.startswith(name + ".tmp") and pid.isdigit() and not _alive(int(pid)):
            stale.append(os.path.join(folder, entry))
    for f in stale:
        try:
            os.remove(f)
        except FileNotFoundError:
            pass
    return stale


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False            # this process is not saving it now
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def load(path: str, map_location="cpu") -> dict[str, Any]:
    """Read a checkpoint written by `save`; a clear error for anything else."""
    if not os.path.isfile(path):
        raise ValueError(f"no checkpoint at {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:   # torch raises several types for foreign or corrupt files
        raise ValueError(f"{path} is not a readable checkpoint: {exc}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path} is not a rasd_pretrain checkpoint (expected format {FORMAT})")
    return payload


def check_compatible(payload: dict[str, Any], config: PretrainConfig, path: str) -> None:
    """Refuse to resume under a different experiment (run options may differ)."""
    diff = differences(payload["config"], config)
    if diff:
        raise ValueError(
            f"checkpoint {path} was written by a different configuration:\n  "
            + "\n  ".join(diff)
            + "\nresume with the same settings (the run folder's config.yaml holds them), or "
              "start a new run in another --out folder")


def check_writable(folder: str) -> None:
    """Write and remove a file in `folder`; OSError where files cannot be written there (a
    read-only mount, permissions, a full disk), so a run fails before any work, not at its
    first save."""
    probe = os.path.join(folder, f".write_test_{os.getpid()}")
    with open(probe, "w"):
        pass
    os.remove(probe)
