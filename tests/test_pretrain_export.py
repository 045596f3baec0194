"""Exported encoder weights load into a fresh MONAI SwinUNETR of the same hyper-parameters
(swinViT strict=True, load_from, and the whole body without the head)."""

import json

import pytest
import torch

from rasd_pretrain import cli
from rasd_pretrain import checkpoint as ckpt
from rasd_pretrain.config import build, preset_values
from rasd_pretrain.export import encoder_state_dict, export
from rasd_pretrain import train

import monai.networks.nets as nets  # noqa: E402 - after the project imports, as above

# Smallest SwinUNETR MONAI builds: feature_size must be a multiple of 12. Training needs
# 64 voxels per axis (instance norm of the 2x2 bottleneck).
SWIN = {"feature_size": 12}


def fresh_swin(spatial_dims: int, out_channels: int = 3) -> torch.nn.Module:
    """A new SwinUNETR with the pre-training hyper-parameters but another head."""
    return nets.SwinUNETR(in_channels=1, out_channels=out_channels, spatial_dims=spatial_dims,
                          **SWIN)


def assert_same(module_state: dict, trained: dict, prefix: str = "") -> None:
    for key, value in module_state.items():
        assert torch.equal(value, trained[prefix + key]), key


def test_trained_2d_encoder_loads_strictly_into_a_fresh_swinunetr(tmp_path):
    config = build(preset_values("rasd2d"), dict(shape=(64, 64), num_labels=4, batch=2, steps=1,
                                                 model_kwargs=SWIN, out=str(tmp_path / "run")))
    result = train(config, quiet=True)
    trained = torch.load(result.checkpoint, weights_only=True)["model"]

    net = fresh_swin(2)
    net.swinViT.load_state_dict(torch.load(result.exports["encoder"], weights_only=True),
                                strict=True)
    assert_same(net.swinViT.state_dict(), trained, "swinViT.")

    # The load_from layout (MONAI's self-supervised Swin weights) gives the same weights.
    other = fresh_swin(2)
    other.load_from(torch.load(result.exports["encoder_load_from"], weights_only=True))
    for name, param in other.swinViT.named_parameters():
        assert torch.equal(param, trained["swinViT." + name]), name

    # The whole body: only the head (different channel count) is left out.
    body = fresh_swin(2)
    missing, unexpected = body.load_state_dict(
        torch.load(result.exports["network"], weights_only=True), strict=False)
    assert unexpected == [] and sorted(missing) == ["out.conv.conv.bias", "out.conv.conv.weight"]

    meta = json.loads(open(result.exports["meta"]).read())
    assert meta["spatial_dims"] == 2 and meta["model_kwargs"] == SWIN and meta["step"] == 1


def test_3d_export_command_from_a_checkpoint(tmp_path, capsys):
    # The 3D (rasd3d-layout) network, saved as a checkpoint, exported by the CLI.
    torch.manual_seed(0)
    trained = fresh_swin(3, out_channels=32).state_dict()
    config = build(preset_values("rasd3d"), dict(shape=(32, 32, 32), model_kwargs=SWIN))
    path = str(tmp_path / "last.pt")
    ckpt.save(path, model_state=trained, optimizer_state={}, step=5, config=config,
              world_size=1)
    out = tmp_path / "weights"
    assert cli.main(["export", path, "--out", str(out)]) == 0
    net = fresh_swin(3)
    net.swinViT.load_state_dict(torch.load(out / "encoder.pt", weights_only=True), strict=True)
    assert_same(net.swinViT.state_dict(), trained, "swinViT.")
    # Nothing is overwritten without --overwrite.
    assert cli.main(["export", path, "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert cli.main(["export", path, "--out", str(out), "--overwrite"]) == 0


def test_non_swin_models_export_the_full_network_only(tmp_path):
    state = {"conv.weight": torch.ones(2, 1, 3, 3)}
    config = build(preset_values("cpu-small")).to_dict()
    paths = export(state, config, 3, str(tmp_path))
    assert set(paths) == {"network", "meta"}
    assert torch.equal(torch.load(paths["network"], weights_only=True)["conv.weight"],
                       state["conv.weight"])
    with pytest.raises(ValueError, match="needs a SwinUNETR"):
        encoder_state_dict(state)


def test_export_of_a_foreign_file_is_a_clear_error(tmp_path, capsys):
    bogus = tmp_path / "bogus.pt"
    torch.save({"weights": torch.zeros(1)}, bogus)
    assert cli.main(["export", str(bogus), "--out", str(tmp_path / "w")]) == 2
    assert "is not a rasd_pretrain checkpoint" in capsys.readouterr().err
