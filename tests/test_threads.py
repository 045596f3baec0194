"""Several Python threads synthesising at once get the serial samples, bit for bit.

The kernels release the GIL, so threads really overlap; each thread's calls use the same
shape, labels and config, the case that shared buffers would corrupt.
"""

import sys
import threading

import pytest
import torch

import rasd_kernels as rk
import rasd_kernels.synthesize  # noqa: F401 - the module, not the function
synthesize_module = sys.modules["rasd_kernels.synthesize"]

THREADS, CALLS = 4, 12
SHAPE, K, BATCH = (64, 64), 8, 2


def _run_threads(work):
    """work(t) on THREADS threads started together; re-raises the first failure."""
    errors, barrier = [], threading.Barrier(THREADS)

    def run(t):
        try:
            barrier.wait()
            work(t)
        except BaseException as exc:   # noqa: BLE001 - reported to the test below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(t,)) for t in range(THREADS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    if errors:
        raise errors[0]


@pytest.mark.parametrize("config", [rk.SynthesisConfig(),
                                    rk.SynthesisConfig(shapes="blobs", texture_std_max=0.1)])
def test_threads_on_one_shape_get_the_serial_samples(config):
    serial = {(t, i): rk.synthesize(BATCH, SHAPE, K, seed=1000 + t, start_index=BATCH * i,
                                    config=config, views=2)
              for t in range(THREADS) for i in range(CALLS)}
    threaded = {}

    def work(t):
        for i in range(CALLS):
            threaded[t, i] = rk.synthesize(BATCH, SHAPE, K, seed=1000 + t,
                                           start_index=BATCH * i, config=config, views=2)

    _run_threads(work)
    differ = [key for key in serial if not (torch.equal(serial[key][0], threaded[key][0])
                                            and torch.equal(serial[key][1], threaded[key][1]))]
    assert not differ, f"{len(differ)} of {len(serial)} calls differ from the serial ones"


def test_threads_filling_their_own_buffers_get_the_serial_samples():
    serial = rk.synthesize(BATCH, (20, 24, 22), K, seed=3, start_index=0)

    def work(t):
        image = torch.empty(BATCH, 1, 20, 24, 22)
        label = torch.empty(BATCH, 20, 24, 22, dtype=torch.uint8)
        for _ in range(CALLS):
            rk.synthesize_into(image, label, num_labels=K, seed=3, start_index=0)
            assert torch.equal(image, serial[0]) and torch.equal(label, serial[1])

    _run_threads(work)


def test_a_threads_workspaces_are_bounded_and_its_own():
    seen = {}

    def work(t):
        for n in range(10):     # ten keys, more than a thread keeps
            rk.synthesize(1, (20 + n, 20), 3, seed=0)
        # Keep the workspaces themselves, not their ids: once a thread ends its cache is freed
        # and a later thread's workspace may reuse a freed object's id.
        seen[t] = list(synthesize_module._THREAD.workspaces.values())

    _run_threads(work)
    assert all(len(kept) == synthesize_module.WORKSPACES_PER_THREAD for kept in seen.values())
    kept = [ws for workspaces in seen.values() for ws in workspaces]
    assert len({id(ws) for ws in kept}) == len(kept), "two threads shared a workspace"
