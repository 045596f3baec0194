"""Which backend `auto` picks, with each backend's availability faked."""

import warnings

import pytest
import torch

from rasd_kernels import backends

ALL = ("reference", "cpu", "triton", "cuda")


@pytest.fixture
def available(monkeypatch):
    """Set which backends report themselves available."""
    def set_available(*names):
        monkeypatch.setattr(backends, "unavailable_reason",
                            lambda b: None if b in names else f"{b} is not here")
    return set_available


CUDA, CPU = torch.device("cuda"), torch.device("cpu")


@pytest.mark.parametrize("present,device,picked", [
    (ALL, CUDA, "cuda"),
    (("reference", "cpu", "triton"), CUDA, "triton"),
    (ALL, CPU, "cpu"),
    (("reference", "triton", "cuda"), CPU, "reference"),
])
def test_auto_order(available, present, device, picked):
    available(*present)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert backends.resolve("auto", device) == picked


def test_auto_without_a_gpu_backend_names_both(available):
    available("reference", "cpu")
    with pytest.raises(RuntimeError, match="cuda is not here; triton is not here"):
        backends.resolve("auto", CUDA)


def test_auto_warns_when_it_falls_back_to_the_reference(available):
    available("reference")
    with pytest.warns(RuntimeWarning, match="runs the float64 reference .* because cpu is not "
                                            "here"):
        backends.resolve("auto", CPU)


@pytest.mark.parametrize("backend,device,match", [
    ("cpu", CUDA, "backend 'cpu' needs CPU tensors"),
    ("cuda", CPU, "backend 'cuda' needs CUDA tensors"),
])
def test_explicit_backends_check_the_device(available, backend, device, match):
    available(*ALL)
    with pytest.raises(ValueError, match=match):
        backends.resolve(backend, device)


def test_unknown_backend_is_named():
    with pytest.raises(RuntimeError, match="unknown backend 'gpu'"):
        backends.resolve("gpu", CPU)
