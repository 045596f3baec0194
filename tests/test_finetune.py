"""Fine-tuning: the MNI152 tissue task (nilearn's packaged template, no download), its split,
Dice on hand cases, and short fine-tunes from scratch and from a tiny pre-training checkpoint
(the pre-trained weights really land in the backbone). Small sizes keep it to seconds."""

import json
import socket

import pytest
import torch

from rasd_pretrain import finetune as ft
from rasd_pretrain import mni_tissue as mt
from rasd_pretrain.config import build, preset_values
from rasd_pretrain import train

import monai  # noqa: E402,F401 - the finetune extra: missing, these tests fail, not skip
import nilearn  # noqa: E402,F401

SIZE = 32     # fine-tune tests run at 32^2


@pytest.fixture(scope="module")
def volumes():
    # The template must come from the installed package: any network access fails the test.
    real_connect = socket.socket.connect

    def refuse(*args, **kwargs):
        raise AssertionError("the MNI152 template loader tried to use the network")

    socket.socket.connect = refuse
    try:
        return mt.load_template(1)
    finally:
        socket.socket.connect = real_connect


@pytest.fixture(scope="module")
def slices(volumes):
    return mt.build(SIZE, volumes=volumes)


# ---- the data set --------------------------------------------------------------------------

def test_template_volumes_are_aligned_probability_maps(volumes):
    shapes = {v.shape for v in volumes.values()}
    assert shapes == {(197, 233, 189)}
    for name in ("t1", "gm", "wm"):
        assert 0.0 <= volumes[name].min() and volumes[name].max() <= 1.0
    assert set(torch.from_numpy(volumes["mask"]).unique().tolist()) == {0.0, 1.0}


def test_four_classes_with_sane_proportions(volumes):
    data = mt.build(64, volumes=volumes)
    assert data.image.shape[1:] == (64, 64) and data.label.shape == data.image.shape
    assert 0.0 <= data.image.min() and data.image.max() <= 1.0
    frac = mt.class_fractions(data.label)
    # Background is most of a square crop; grey matter outweighs white matter, which outweighs
    # CSF (ventricles and sulci), which is still a real class.
    assert 0.4 < frac[0] < 0.8
    assert frac[2] > frac[3] > frac[1] > 0.01
    # A slice through the ventricles holds all four classes; every kept slice has brain.
    _, label = data.at([90])
    assert (mt.class_fractions(label) > 0.01).all()
    assert (data.brain >= 0.15).all() and len(data) > 100
    # The image is dark outside the brain and background is exactly that region.
    assert data.image[data.label == 0].max() == 0.0
    # T1 contrast: WM brighter than GM brighter than CSF.
    means = [data.image[data.label == c].mean() for c in (1, 2, 3)]
    assert means[0] < means[1] < means[2]


def test_labels_from_probabilities_hand_case():
    gm = torch.tensor([[0.6, 0.1, 0.2, 0.9]])
    wm = torch.tensor([[0.3, 0.8, 0.2, 0.1]])
    mask = torch.tensor([[True, True, True, False]])
    # CSF = 1 - gm - wm = (0.1, 0.1, 0.6, 0); last pixel outside the mask.
    assert mt.labels_from_probabilities(gm, wm, mask).tolist() == [[2, 3, 1, 0]]


@pytest.mark.parametrize("k", [1, 2, 5])
def test_train_and_test_bands_are_disjoint_with_a_gap(slices, k):
    band, gap = (80, 100), 20
    train_z, test_z = mt.split(slices, k, band=band, gap=gap)
    assert len(train_z) == len(set(train_z)) == k
    assert all(band[0] <= z <= band[1] for z in train_z)
    assert min(abs(a - b) for a in train_z for b in test_z) > gap
    assert all(z < band[0] - gap or z > band[1] + gap for z in test_z)
    # Test slices on both sides of the band.
    assert min(test_z) < band[0] and max(test_z) > band[1]
    assert mt.split(slices, k, band=band, gap=gap) == (train_z, test_z)


def test_split_refuses_impossible_requests(slices):
    with pytest.raises(ValueError, match="k must be"):
        mt.split(slices, 30, band=(80, 100))
    with pytest.raises(ValueError, match="no kept slice"):
        mt.split(slices, 1, band=(80, 100), gap=200)


# ---- Dice --------------------------------------------------------------------------------

def test_dice_hand_cases():
    target = torch.tensor([[0, 0, 1, 1], [2, 2, 2, 0]])
    assert ft.dice_per_class(target, target, 4)[:3].tolist() == [1.0, 1.0, 1.0]
    pred = torch.tensor([[0, 1, 1, 1], [2, 2, 0, 0]])
    # class 0: P = 3, G = 3, overlap 2 -> 4/6; class 1: P = 3, G = 2, overlap 2 -> 4/5;
    # class 2: P = 2, G = 3, overlap 2 -> 4/5; class 3 absent from both -> NaN.
    dice = ft.dice_per_class(pred, target, 4)
    assert torch.allclose(dice[:3], torch.tensor([4 / 6, 4 / 5, 4 / 5], dtype=torch.float64))
    assert torch.isnan(dice[3])
    # A class predicted but absent from the target scores 0.
    assert ft.dice_per_class(torch.full((2, 2), 1), torch.zeros(2, 2, dtype=torch.long), 2
                             ).tolist() == [0.0, 0.0]
    assert ft.foreground_mean(dice) == pytest.approx(0.8)


# ---- fine-tuning ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A 1-step pre-training run of the cpu-small UNet at 32^2 (the fine-tuning size)."""
    out = tmp_path_factory.mktemp("pretrain") / "run"
    config = build(dict(preset_values("cpu-small"), shape=(SIZE, SIZE), num_labels=4, batch=2,
                        steps=1, out=str(out), model_kwargs={"channels": [8, 16, 32],
                                                             "strides": [2, 2],
                                                             "num_res_units": 1}))
    result = train(config, quiet=True)
    return result.checkpoint


def short(seed=0, steps=2) -> ft.FinetuneConfig:
    return ft.FinetuneConfig(steps=steps, batch=2, warmup_steps=1, seed=seed)


def test_pretrained_backbone_carries_the_checkpoint_weights(checkpoint):
    spec, state = ft.read_weights(checkpoint)
    assert spec.model == "unet" and spec.embed_dim == 32 and spec.in_channels == 1
    pre, report = ft.build_segmenter(spec, 4, (SIZE, SIZE), seed=3, state=state)
    scratch, _ = ft.build_segmenter(spec, 4, (SIZE, SIZE), seed=3)
    assert len(report.loaded) == len(state) and not report.kept
    for key, value in state.items():
        assert torch.equal(pre.backbone.state_dict()[key], value), key
    conv = [k for k in state if k.endswith("conv.weight")][0]
    assert not torch.equal(scratch.backbone.state_dict()[conv], state[conv])
    # Same seed, same head: the only difference between the two runs is the backbone.
    assert torch.equal(pre.head.weight, scratch.head.weight)


def test_two_step_finetune_from_scratch_and_from_the_checkpoint(checkpoint, slices):
    data = ft.mni_task(1, size=SIZE, slices=slices)
    spec, state = ft.read_weights(checkpoint)
    results = {}
    for init, weights in (("scratch", None), ("pretrained", state)):
        r = ft.finetune(data, spec, short(), state=weights)
        assert r.init == init and len(r.losses) == 2 and all(map(torch.isfinite,
                                                                  torch.tensor(r.losses)))
        assert len(r.dice) == 4 and 0.0 <= r.mean_dice <= 1.0
        results[init] = r
    assert results["pretrained"].loaded_tensors == len(state)
    assert results["scratch"].loaded_tensors == 0
    # Zero steps leave the loaded weights untouched.
    r0 = ft.finetune(data, spec, short(steps=0), state=state)
    key = next(iter(state))
    assert torch.equal(r0.model.backbone.state_dict()[key], state[key])
    # The same seed replays the same run.
    again = ft.finetune(data, spec, short(), state=state)
    assert again.losses == results["pretrained"].losses


def test_linear_probe_keeps_the_pretrained_backbone(checkpoint, slices):
    data = ft.mni_task(1, size=SIZE, slices=slices)
    spec, state = ft.read_weights(checkpoint)
    config = ft.FinetuneConfig(steps=2, batch=2, warmup_steps=0, backbone_lr_scale=0.0,
                               scale_range=(0.6, 1.2))
    r = ft.finetune(data, spec, config, state=state)
    assert all(torch.equal(r.model.backbone.state_dict()[k], v) for k, v in state.items())
    start, _ = ft.build_segmenter(spec, 4, (SIZE, SIZE), seed=0, state=state)
    assert not torch.equal(r.model.head.weight, start.head.weight)
    with pytest.raises(ValueError, match="scale_range"):
        ft.FinetuneConfig(scale_range=(1.2, 0.6))


def test_export_folder_loads_like_the_checkpoint(checkpoint):
    folder = checkpoint.rsplit("/checkpoints/", 1)[0] + "/export"
    spec_a, state_a = ft.read_weights(checkpoint)
    spec_b, state_b = ft.read_weights(folder)
    assert spec_a == spec_b and state_a.keys() == state_b.keys()
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)


def test_weights_of_another_architecture_are_refused(checkpoint):
    spec, state = ft.read_weights(checkpoint)
    wider = ft.ModelSpec(model="unet", model_kwargs={"channels": [16, 32, 64],
                                                     "strides": [2, 2], "num_res_units": 1})
    with pytest.raises(ValueError, match="do not fit"):
        ft.build_segmenter(wider, 4, (SIZE, SIZE), seed=0, state=state)
    with pytest.raises(ValueError, match="swinViT"):
        ft.build_segmenter(spec, 4, (SIZE, SIZE), seed=0, state=state, load="encoder")


def test_swinunetr_encoder_only_load():
    spec = ft.ModelSpec(model="swinunetr", model_kwargs={"feature_size": 12}, embed_dim=8)
    source, _ = ft.build_segmenter(spec, 4, (SIZE, SIZE), seed=1)
    state = source.backbone.state_dict()
    net, report = ft.build_segmenter(spec, 4, (SIZE, SIZE), seed=2, state=state,
                                     load="encoder")
    assert report.loaded and all(k.startswith("swinViT.") for k in report.loaded)
    enc = report.loaded[0]
    assert torch.equal(net.backbone.state_dict()[enc], state[enc])
    dec = [k for k in report.kept if k.startswith("decoder") and k.endswith("weight")][0]
    assert not torch.equal(net.backbone.state_dict()[dec], state[dec])


def test_cli_on_a_saved_task_scratch_and_pretrained(checkpoint, tmp_path, capsys):
    gen = torch.Generator().manual_seed(0)
    label = torch.randint(0, 3, (4, SIZE, SIZE), generator=gen)
    image = (label.float()[:, None] / 2 + 0.1 * torch.rand(4, 1, SIZE, SIZE, generator=gen))
    task = tmp_path / "task.pt"
    torch.save({"train_image": image[:2], "train_label": label[:2], "test_image": image[2:],
                "test_label": label[2:], "classes": ["a", "b", "c"]}, task)
    for init in ("scratch", "pretrained"):
        out = tmp_path / f"{init}.json"
        code = ft.main(["--checkpoint", checkpoint, "--init", init, "--data", str(task),
                        "--steps", "2", "--batch", "2", "--out", str(out)])
        assert code == 0
        result = json.loads(out.read_text())
        assert result["init"] == init and result["classes"] == ["a", "b", "c"]
        assert (result["loaded_tensors"] > 0) == (init == "pretrained")
    assert "mean foreground Dice" in capsys.readouterr().out
    assert ft.main(["--init", "pretrained", "--data", str(task)]) == 2
    assert "needs --checkpoint" in capsys.readouterr().err
