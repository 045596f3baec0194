"""Run `nnUNetv2_train` (nnU-Net's own entry point, same arguments) and save the network's
weights at the moment its first training step would start.

    python tests/nnunet_train_probe.py SNAPSHOT.pt DATASET CONFIG FOLD [nnUNetv2_train options]

nnU-Net writes no checkpoint before it has trained, so the state it starts from is observed
here: nnUNetTrainer.on_train_start runs after -pretrained_weights was loaded and right before
the first train_step; the wrapper below calls it unchanged, then saves the state dict (and
trains on one thread, see below).
"""

import sys

import torch


def declare_torchvision_ops() -> None:
    """Let torchvision import where its C++ ops cannot load (PyPI's Linux torchvision wheels are
    built for CUDA torch; CI runs the CPU torch). nnU-Net's search for the -tr trainer class
    imports every trainer module, and its Primus trainers import timm, which imports
    torchvision; torchvision's import then registers Python kernels for nms and qnms and fails
    if those ops were never declared. Declaring their schemas is enough: no U-Net calls them."""
    try:
        import torchvision  # noqa: F401
    except RuntimeError:
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        lib = torch.library.Library("torchvision", "DEF")
        for op in ("nms", "qnms"):
            lib.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        declare_torchvision_ops.library = lib     # keep the declarations alive


def main() -> None:
    declare_torchvision_ops()
    from nnunetv2.run.run_training import run_training_entry
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    snapshot = sys.argv[1]
    original = nnUNetTrainer.on_train_start

    def on_train_start(self):
        original(self)
        state = {k: v.detach().cpu().clone() for k, v in self.network.state_dict().items()}
        torch.save(state, snapshot)
        # nnU-Net gives the CPU all cores; on a shared machine the test's tiny convolutions run
        # several times faster on one thread than on threads that wait for each other.
        torch.set_num_threads(1)

    nnUNetTrainer.on_train_start = on_train_start
    sys.argv = ["nnUNetv2_train", *sys.argv[2:]]
    run_training_entry()


if __name__ == "__main__":
    main()
