"""The AVX-512 kernel files compile only their own code for AVX-512.

A file compiled whole with -mavx512f also compiles, for AVX-512, every inline function and
template instance it uses (std::vector, the shared headers). Such functions are weak symbols:
the linker keeps one copy for the whole module, possibly the AVX-512 one, and the portable
kernels then die with an illegal instruction on CPUs without AVX-512. This test compiles each
AVX-512 file as the build does and checks that none of its weak symbols holds an AVX-512
instruction, and that its kernels do (the pragma region is really compiled for AVX-512).
"""

import platform
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

CPU_SRC = Path(__file__).resolve().parent.parent / "csrc" / "cpu"
AVX512_FILES = sorted(p.name for p in CPU_SRC.glob("*_avx512.cpp"))
# Flags of CMakeLists.txt for the _C module (without the Python / pybind11 parts).
FLAGS = ["-std=c++17", "-O3", "-fPIC", "-fopenmp", "-fno-trapping-math", "-fno-math-errno"]
AVX512_REGISTER = re.compile(r"%zmm\d|\{%k[1-7]\}|%k[0-7]\b")

pytestmark = pytest.mark.skipif(
    platform.machine() != "x86_64" or shutil.which("g++") is None or shutil.which("nm") is None
    or shutil.which("objdump") is None,
    reason="the AVX-512 kernels are built by GCC for x86-64 only")


def _functions(obj: Path) -> dict[str, list[str]]:
    """Instructions of each function of an object file, by (mangled) symbol."""
    text = subprocess.run(["objdump", "-d", "--no-show-raw-insn", str(obj)], check=True,
                          capture_output=True, text=True).stdout
    found, current = {}, None
    for line in text.splitlines():
        head = re.match(r"^[0-9a-f]+ <(.+)>:$", line)
        if head:
            current = found.setdefault(head.group(1), [])
        elif current is not None and "\t" in line:
            current.append(line.split("\t", 1)[1])
    return found


def _weak_symbols(obj: Path) -> set[str]:
    text = subprocess.run(["nm", str(obj)], check=True, capture_output=True, text=True).stdout
    return {parts[2] for parts in (l.split() for l in text.splitlines())
            if len(parts) == 3 and parts[1] in ("W", "V")}


@pytest.fixture(scope="module")
def objects(tmp_path_factory):
    out = tmp_path_factory.mktemp("avx512_objects")

    def compile_one(name):
        obj = out / (name + ".o")
        subprocess.run(["g++", *FLAGS, "-c", str(CPU_SRC / name), "-o", str(obj)], check=True,
                       capture_output=True, text=True)
        return name, obj

    with ThreadPoolExecutor(2) as pool:
        return dict(pool.map(compile_one, AVX512_FILES))


def test_there_are_avx512_files():
    assert set(AVX512_FILES) >= {"gmm_shapes_avx512.cpp", "philox_avx512.cpp",
                                 "appearance_avx512.cpp"}


def test_shared_functions_are_not_compiled_for_avx512(objects):
    weak_seen, tainted = 0, []
    for name, obj in objects.items():
        functions = _functions(obj)
        weak = _weak_symbols(obj) & set(functions)
        weak_seen += len(weak)
        tainted += [f"{name}: {sym}" for sym in sorted(weak)
                    if any(AVX512_REGISTER.search(ins) for ins in functions[sym])]
    assert weak_seen > 0, "expected std / header instances among the files' functions"
    assert not tainted, f"shared (weak) functions compiled with AVX-512 instructions: {tainted}"


@pytest.mark.parametrize("name", AVX512_FILES)
def test_kernels_are_compiled_for_avx512(objects, name):
    functions = _functions(objects[name])
    with_avx512 = [sym for sym, body in functions.items()
                   if any(AVX512_REGISTER.search(ins) for ins in body)]
    assert with_avx512, f"{name}: no function holds an AVX-512 instruction"
