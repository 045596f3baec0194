"""Compile every Triton kernel for a CUDA target on a machine without a GPU.

    python -m rasd_kernels.triton.compile_check [--arch 90]

The interpreter does not type-check like the compiler (integer widths, constexpr
specialisation, layouts), so this runs each op's launcher on small CPU tensors with the
launch intercepted, and compiles every kernel with exactly the arguments its launcher passed
(GPU tile sizes, constexpr tuples, ints equal to 1 specialised as the JIT does) down to a cubin
with Triton's bundled ptxas. It prints registers and spills per kernel; exit status 1 if any
kernel fails to compile. TRITON_INTERPRET must not be set.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

if os.environ.get("TRITON_INTERPRET", "0") == "1":
    raise SystemExit("compile_check compiles real kernels: unset TRITON_INTERPRET")

import torch  # noqa: E402
import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402
from triton.runtime.jit import JITFunction  # noqa: E402

_POINTER = {torch.float32: "*fp32", torch.uint8: "*u8", torch.int64: "*i64",
            torch.int32: "*i32"}
_OPTIONS = ("num_warps", "num_stages", "num_ctas")


def _arg_type(value) -> str:
    if isinstance(value, torch.Tensor):
        return _POINTER[value.dtype]
    if isinstance(value, bool):
        return "i1"
    if isinstance(value, int):
        return "i32" if -2**31 <= value < 2**31 else "i64"
    if isinstance(value, float):
        return "fp32"
    raise TypeError(f"no Triton type for {type(value).__name__}")


def _source(fn: JITFunction, args, kwargs) -> tuple[ASTSource, dict, dict]:
    """The ASTSource the JIT would build for this launch, its options and constexprs."""
    options = {k: kwargs.pop(k) for k in list(kwargs) if k in _OPTIONS}
    bound = fn.signature.bind(*args, **kwargs)
    signature, constexprs = {}, {}
    for param in fn.params:
        value = bound.arguments[param.name]
        specialise_one = (isinstance(value, int) and not isinstance(value, bool) and value == 1
                          and not param.do_not_specialize)
        if param.is_constexpr or specialise_one:
            signature[param.name] = "constexpr"
            constexprs[param.name] = value
        else:
            signature[param.name] = _arg_type(value)
    return ASTSource(fn=fn, signature=signature, constexprs=constexprs), options, constexprs


def record_launches(run_ops) -> list:
    """[(kernel, args, kwargs)] of every launch that run_ops() makes (nothing runs)."""
    calls = []
    original = JITFunction.run

    def record(self, *args, grid, warmup, **kwargs):
        calls.append((self, args, dict(kwargs)))

    JITFunction.run = record
    try:
        run_ops()
    finally:
        JITFunction.run = original
    return calls


def _resources(cubin: bytes) -> str:
    """'REG:.. STACK:..' of the cubin's kernel, from the bundled cuobjdump."""
    tool = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin",
                        "cuobjdump")
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        try:
            out = subprocess.run([tool, "-res-usage", f.name], capture_output=True, text=True,
                                 timeout=60).stdout
        except (OSError, subprocess.TimeoutExpired):
            return "?"
    lines = [line.strip() for line in out.splitlines() if "REG:" in line]
    return lines[0] if lines else "?"


def example_launches() -> list:
    """Every launcher, 2D and 3D, on small CPU tensors (GPU tile sizes: not interpreting)."""
    from rasd_kernels import layout, params
    from rasd_kernels.config import SynthesisConfig

    from . import appearance, bias_field, gmm_shapes, philox_fill

    def run_ops():
        f32 = torch.float32
        index = torch.arange(2, dtype=torch.int64)
        philox_fill(torch.empty(2, 1000), index, (1 << 40) + 3, 7, "normal")
        philox_fill(torch.empty(2, 1000), index, 5, 1, "uniform")
        for shape in ((20, 21, 22), (40, 41)):
            d = len(shape)
            config = SynthesisConfig()
            for mode in ("perlin", "blobs"):
                cfg = config.replace(shapes=mode)
                ws = params.make_workspace(2, shape, 8, 2, cfg, "cpu")
                gmm_shapes(torch.empty(2, *shape, dtype=torch.uint8), ws.fields, ws.warps,
                           cfg.field_nodes, cfg.warp_nodes, mode)
            ws = params.make_workspace(2, shape, 8, 2, config, "cpu")
            image = torch.empty(2, 2, *shape, dtype=f32)
            bias_field(image, ws.bias_coef, ws.scalars)
            appearance(image, torch.zeros(2, *shape, dtype=torch.uint8), ws.label_stats,
                       ws.bias_coef, ws.scalars, ws.stats, index, 11)
            assert ws.scalars.shape[-1] == layout.scalar_count(d)

    return record_launches(run_ops)


def _innermost(exc: BaseException) -> str:
    """The compiler nests the real error in the source location of every inlined call."""
    chain = [exc]
    while chain[-1].__cause__ is not None and len(chain) < 20:
        chain.append(chain[-1].__cause__)
    return "\n".join(f"  {type(e).__name__}: {e}" for e in chain[-2:])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--arch", type=int, default=90, help="compute capability, e.g. 90")
    args = parser.parse_args(argv)
    target = GPUTarget("cuda", args.arch, 32)
    failures, seen = 0, set()
    for fn, call_args, kwargs in example_launches():
        src, options, constexprs = _source(fn, call_args, kwargs)
        key = (fn.__name__, tuple(sorted(src.signature.items())),
               tuple(sorted((k, str(v)) for k, v in src.constants.items())))
        if key in seen:
            continue
        seen.add(key)
        label = f"{fn.__name__} {options} " + " ".join(
            f"{name}={value}" for name, value in constexprs.items())
        try:
            compiled = triton.compile(src, target=target, options=options)
        except Exception as exc:  # report every kernel, then fail
            failures += 1
            print(f"FAIL {label}\n{_innermost(exc)}")
            continue
        print(f"ok   {label}\n  {_resources(compiled.asm['cubin'])}")
    print(f"{len(seen) - failures} of {len(seen)} kernel variants compiled for sm_{args.arch}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
