"""The data loop: sample_indices and SyntheticDataset in every loader a user runs it in.

Every item is compared with `synthesize` at the same global indices, and the indices of a
step over ranks and workers with its global batch (disjoint and covering).
"""

import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

import rasd_kernels as rk
from rasd_kernels.data import SyntheticDataset, sample_indices

SMALL = rk.SynthesisConfig(field_nodes=(4, 3), warp_nodes=(5, 3), bias_fwhm_min=4.0,
                           bias_fwhm_max=8.0)
SHAPE, K, SEED = (24, 20), 5, 17
# Child interpreters run from here, not the repository root, whose source tree (without the
# compiled module) would shadow the installed package.
NEUTRAL = tempfile.gettempdir()


def _expected(indices, views=1):
    """(image, label) of these global indices, drawn by synthesize."""
    indices = list(indices)
    image, label = rk.synthesize(len(indices), SHAPE, K, seed=SEED, start_index=indices[0],
                                 config=SMALL, views=views)
    assert indices == list(range(indices[0], indices[0] + len(indices)))
    return image, label


def _check_item(item, views=1, label_dtype=torch.int64):
    image, label = _expected(item["index"].tolist(), views)
    assert torch.equal(item["image"], image)
    assert item["label"].dtype == label_dtype
    assert item["label"].shape == (label.shape[0], 1, *SHAPE)
    assert torch.equal(item["label"][:, 0].to(torch.uint8), label)


def _dataset(**kw):
    args = dict(global_batch=6, shape=SHAPE, num_labels=K, seed=SEED, config=SMALL, steps=5)
    args.update(kw)
    return SyntheticDataset(args.pop("global_batch"), args.pop("shape"),
                            args.pop("num_labels"), **args)


# ---- sample_indices ---------------------------------------------------------------------

@pytest.mark.parametrize("global_batch,world,workers,start", [
    (8, 1, 1, 0), (8, 2, 3, 0), (12, 3, 2, 5), (6, 6, 4, 1), (5, 1, 2, 3)])
def test_indices_are_disjoint_and_cover_each_step(global_batch, world, workers, start):
    for step in range(start, start + 7):
        drawn = []
        owners = set()
        for rank in range(world):
            for worker in range(workers):
                rows = sample_indices(step, global_batch, rank=rank, world_size=world,
                                      worker=worker, num_workers=workers, start_step=start)
                drawn += list(rows)
                if len(rows):
                    owners.add(worker)
        assert sorted(drawn) == list(range(step * global_batch, (step + 1) * global_batch))
        assert owners == {(step - start) % workers}     # one worker draws the whole step


def test_indices_do_not_depend_on_world_size():
    one = [list(sample_indices(s, 8)) for s in range(4)]
    four = [sum((list(sample_indices(s, 8, rank=r, world_size=4)) for r in range(4)), [])
            for s in range(4)]
    assert one == four


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(step=-1), ValueError, "step must be >= 0"),
    (dict(global_batch=0), ValueError, "global_batch must be >= 1"),
    (dict(global_batch=6, world_size=4), ValueError, r"global batch \(6\) must be divisible"),
    (dict(rank=2, world_size=2), ValueError, "rank 2 is not below world_size 2"),
    (dict(worker=3, num_workers=3), ValueError, "worker 3 is not below num_workers 3"),
    (dict(step=2, start_step=3), ValueError, "step 2 comes before start_step 3"),
    (dict(step=1.5), TypeError, "step must be an int"),
])
def test_sample_indices_names_bad_arguments(kwargs, error, match):
    args = dict(step=0, global_batch=8)
    args.update(kwargs)
    with pytest.raises(error, match=match):
        sample_indices(args.pop("step"), args.pop("global_batch"), **args)


def test_the_driver_draws_what_sample_indices_says():
    from rasd_pretrain.data import SyntheticBatches

    batches = SyntheticBatches(shape=SHAPE, num_labels=K, global_batch=6, rank=1, world_size=3,
                               views=1, config=SMALL, seed=SEED, backend="auto",
                               device=torch.device("cpu"))
    for step in range(3):
        assert batches.indices(step) == sample_indices(step, 6, rank=1, world_size=3)
        _, label = batches.draw(step)
        assert torch.equal(label, _expected(batches.indices(step))[1])


# ---- the Dataset in the main process ----------------------------------------------------

def test_items_are_monai_dicts_equal_to_synthesize():
    items = list(_dataset(views=2))
    assert [it["step"] for it in items] == [0, 1, 2, 3, 4]
    for step, item in enumerate(items):
        assert item["index"].tolist() == list(range(6 * step, 6 * step + 6))
        assert item["image"].shape == (6, 2, *SHAPE) and item["image"].dtype == torch.float32
        _check_item(item, views=2)


def test_uint8_labels_on_request_and_the_length():
    dataset = _dataset(label_dtype=torch.uint8, steps=3)
    assert len(dataset) == 3
    _check_item(next(iter(dataset)), label_dtype=torch.uint8)
    with pytest.raises(TypeError, match="no length"):
        len(_dataset(steps=None))


def test_resume_from_a_step_draws_the_same_tail():
    full = list(_dataset(steps=6))
    resumed = list(_dataset(start_step=4, steps=2))
    for a, b in zip(full[4:], resumed):
        assert a["step"] == b["step"] and torch.equal(a["index"], b["index"])
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])


def test_endless_dataset_keeps_going():
    it = iter(_dataset(steps=None))
    steps = [next(it)["step"] for _ in range(7)]
    assert steps == list(range(7))


def test_ranks_draw_their_rows():
    union = []
    for rank in range(3):
        item = next(iter(_dataset(rank=rank, world_size=3)))
        _check_item(item)
        union += item["index"].tolist()
    assert sorted(union) == list(range(6))


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(rank=0, world_size=4), ValueError, r"global batch \(6\) must be divisible"),
    (dict(rank=1), ValueError, "give both rank and world_size"),
    (dict(start_step=-2), ValueError, "start_step must be >= 0"),
    (dict(steps=0), ValueError, "steps must be >= 1"),
    (dict(global_batch=0), ValueError, "global_batch must be >= 1"),
    (dict(label_dtype=torch.float32), ValueError, "label_dtype must be one of"),
    (dict(shape=32), TypeError, "shape must be a tuple of 2 or 3 ints"),
    (dict(num_labels=300), ValueError, "num_labels must be in"),
    (dict(transform="flip"), TypeError, "transform must be callable"),
    (dict(threads=0), ValueError, "threads must be >= 1"),
])
def test_bad_dataset_arguments_are_named(kwargs, error, match):
    with pytest.raises(error, match=match):
        _dataset(**kwargs)


def test_a_monai_transform_runs_on_each_sample():
    from monai.transforms import Compose, Flipd, ScaleIntensityRanged

    transform = Compose([Flipd(keys=["image", "label"], spatial_axis=0),
                         ScaleIntensityRanged(keys="image", a_min=0.0, a_max=1.0, b_min=-1.0,
                                              b_max=1.0)])
    item = next(iter(_dataset(transform=transform)))
    image, label = _expected(range(6))
    assert torch.allclose(torch.as_tensor(item["image"]), 2 * image.flip(2) - 1, atol=1e-6)
    assert torch.equal(torch.as_tensor(item["label"])[:, 0], label.flip(1).long())
    assert torch.equal(torch.as_tensor(item["index"]), torch.arange(6)) and item["step"] == 0


# ---- loaders ------------------------------------------------------------------------------

def _stream(loader):
    return [(item["step"], item["index"].tolist(), item["image"], item["label"])
            for item in loader]


def _assert_same_stream(got, expected):
    assert [(s, i) for s, i, _, _ in got] == [(s, i) for s, i, _, _ in expected]
    for (_, _, image, label), (_, _, image_ref, label_ref) in zip(got, expected):
        assert torch.equal(image, image_ref) and torch.equal(label, label_ref)


@pytest.mark.parametrize("context,persistent", [("fork", False), ("spawn", True)])
def test_dataloader_workers_yield_the_steps_in_order(context, persistent):
    dataset = _dataset(steps=5)
    expected = _stream(dataset)
    loader = DataLoader(dataset, batch_size=None, num_workers=2,
                        multiprocessing_context=context, persistent_workers=persistent)
    for _ in range(2 if persistent else 1):     # a second epoch with the same workers
        _assert_same_stream(_stream(loader), expected)


def test_monai_loaders_yield_the_same_stream():
    from monai.data import DataLoader as MonaiDataLoader
    from monai.data import ThreadDataLoader
    from monai.data.utils import no_collation

    dataset = _dataset(steps=4)
    expected = _stream(dataset)
    # MONAI's loaders collate with list_data_collate unless told otherwise; the items are
    # batches already.
    thread_loader = ThreadDataLoader(dataset, batch_size=None, collate_fn=no_collation)
    _assert_same_stream(_stream(thread_loader), expected)
    loader = MonaiDataLoader(dataset, batch_size=None, num_workers=2, collate_fn=no_collation)
    _assert_same_stream(_stream(loader), expected)


def test_monai_loss_takes_the_labels():
    from monai.losses import DiceCELoss

    item = next(iter(_dataset()))
    logits = torch.randn(6, K, *SHAPE, requires_grad=True)
    loss = DiceCELoss(to_onehot_y=True, softmax=True)(logits, item["label"])
    loss.backward()
    assert torch.isfinite(loss) and logits.grad is not None
    assert torch.isfinite(torch.nn.functional.cross_entropy(logits, item["label"][:, 0]))


FORKED_AFTER_KERNELS = textwrap.dedent("""
    import torch
    from torch.utils.data import DataLoader
    import rasd_kernels as rk
    from rasd_kernels.backends import cpu
    from rasd_kernels.data import SyntheticDataset

    cpu.set_num_threads(2)
    rk.synthesize(2, (48, 48, 48), 6, seed=0)      # the parent starts its OpenMP threads
    dataset = SyntheticDataset(4, (48, 48, 48), 6, seed=3, steps=4, threads=THREADS)
    expected = [item["image"] for item in dataset]
    loader = DataLoader(dataset, batch_size=None, num_workers=2,
                        multiprocessing_context="fork")
    got = [item["image"] for item in loader]
    assert all(torch.equal(a, b) for a, b in zip(got, expected)) and len(got) == 4
    print("ok")
""")


@pytest.mark.parametrize("threads", [None, 2])
def test_forked_workers_after_the_parent_ran_the_kernels_do_not_hang(threads):
    """GNU OpenMP hangs in a child forked after its threads started; the kernels run on
    threads of their own there. A hang fails by the (generous) timeout, not by speed."""
    script = FORKED_AFTER_KERNELS.replace("THREADS", repr(threads))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=600, cwd=NEUTRAL)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_kernels_in_a_forked_child_run_on_their_own_threads():
    from rasd_kernels.backends import cpu

    script = textwrap.dedent("""
        import os, torch
        import rasd_kernels as rk
        from rasd_kernels.backends import cpu
        cpu.set_num_threads(2)
        rk.synthesize(2, (40, 40, 40), 6, seed=0)
        parent = rk.synthesize(2, (40, 40, 40), 6, seed=5)
        read, write = os.pipe()
        if os.fork() == 0:
            torch.set_num_threads(1)
            child = rk.synthesize(2, (40, 40, 40), 6, seed=5)
            same = torch.equal(child[0], parent[0]) and torch.equal(child[1], parent[1])
            os.write(write, f"{same} {cpu.last_team_size()} {cpu.openmp_usable()}".encode())
            os._exit(0)
        os.wait()
        print(os.read(read, 100).decode())
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=600, cwd=NEUTRAL)
    assert done.stdout.split() == ["True", "2", "False"], done.stderr[-2000:]
    assert cpu.openmp_usable()          # this process was not forked


TORCHRUN_SCRIPT = textwrap.dedent("""
    import sys
    import torch
    import torch.distributed as dist
    from torch.utils.data import DataLoader
    import rasd_kernels as rk
    from rasd_kernels.data import SyntheticDataset

    dist.init_process_group("gloo")
    config = rk.SynthesisConfig(field_nodes=(4, 3), warp_nodes=(5, 3), bias_fwhm_min=4.0,
                                bias_fwhm_max=8.0)
    dataset = SyntheticDataset(6, (24, 20), 5, seed=17, config=config, steps=3)
    rows = []
    for item in DataLoader(dataset, batch_size=None, num_workers=2):
        image, label = rk.synthesize(3, (24, 20), 5, seed=17, config=config,
                                     start_index=int(item["index"][0]))
        assert torch.equal(item["image"], image)
        assert torch.equal(item["label"][:, 0].to(torch.uint8), label)
        rows += item["index"].tolist()
    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, rows)
    if dist.get_rank() == 0:
        print(sorted(sum(gathered, [])) == list(range(18)), sorted(rows))
    dist.destroy_process_group()
""")


def test_torchrun_ranks_draw_disjoint_covering_rows(tmp_path):
    script = tmp_path / "ranks.py"
    script.write_text(TORCHRUN_SCRIPT)
    torchrun = Path(sys.executable).with_name("torchrun")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run([str(torchrun), "--standalone", "--nproc-per-node", "2", str(script)],
                          capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split("\n")[0].startswith("True [0, 1, 2, 6, 7, 8, 12, 13, 14]")
