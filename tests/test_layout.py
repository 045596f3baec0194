"""rasd_kernels.layout, the parameter layout every backend reads, equals csrc/common/layout.h."""

import ast
from pathlib import Path

import pytest

from rasd_kernels import backends, layout

if backends.unavailable_reason("cpu") is not None:  # the build is part of the product
    raise RuntimeError(backends.unavailable_reason("cpu"))

from rasd_kernels import _C  # noqa: E402


@pytest.mark.parametrize("d", [2, 3])
def test_python_and_cpp_layouts_agree(d):
    assert layout.entries(d) == _C.layout(d)
    assert layout.NORMALISE_EPS == _C.NORMALISE_EPS


@pytest.mark.parametrize("d", [2, 3])
def test_scalar_columns_tile_the_row(d):
    covered = sorted(i for sl in layout.scalar_slices(d).values()
                     for i in range(sl.start, sl.stop))
    assert covered == list(range(layout.scalar_count(d)))


def test_no_import_cycle_between_params_and_the_ops():
    """params draws with the ops; the ops take their layouts from layout, never from params."""
    ops = Path(layout.__file__).parent / "ops"
    for path in ops.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [a.name for a in node.names]
                assert not any(n == "params" or n.endswith(".params") for n in names), path.name
