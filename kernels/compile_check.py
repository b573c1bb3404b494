"""Compile Duet's Triton kernels for a GPU architecture on a machine without a GPU.

Why it exists: the tests run the kernels in Triton's interpreter, which accepts programs that the
real compiler rejects (and says nothing about registers or shared memory). Inside `compile_only()`
every launch made by `kernels.triton_attention`, `kernels.triton_ring_attention` and
`kernels.triton_fsq` is bound and specialised exactly as a GPU launch would be (same argument binder,
same alignment/int specialisation, same launch options) and compiled to a cubin for the target instead of running. Needs a process where
TRITON_INTERPRET is not set, and CPU tensors standing in for the GPU ones.

    python -m kernels.compile_check            # sm_90, all kernels, prints registers/spills/smem
"""
from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import os
import re
import subprocess
import sys
import tempfile

import torch

# True inside compile_only(): the Triton modules then accept CPU tensors without the interpreter.
COMPILE_ONLY: contextvars.ContextVar[bool] = contextvars.ContextVar("duet_kernels_compile_only", default=False)


@dataclasses.dataclass
class CompiledRecord:
    """One compiled specialisation: kernel name, constexprs, registers, spills, shared memory (bytes)."""
    name: str
    constexprs: dict
    n_regs: int
    n_spills: int
    shared: int
    num_warps: int


@contextlib.contextmanager
def compile_only(arch: int = 90):
    """Inside the block, Triton launches from kernels.triton_* compile for sm_<arch> and do not run.
    Yields the list of CompiledRecord it fills."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource, make_backend
    from triton.runtime.jit import JITFunction, create_function_from_signature

    from . import triton_attention, triton_fsq, triton_ring_attention

    if os.environ.get("TRITON_INTERPRET") == "1":
        raise RuntimeError("kernels/compile_check.py: TRITON_INTERPRET=1 is set; compile checks need the compiler")
    target = GPUTarget("cuda", arch, 32)
    backend = make_backend(target)
    records: list[CompiledRecord] = []
    patched = []

    def make_run(fn):
        binder = create_function_from_signature(fn.signature, fn.params, backend)

        def run(*args, grid, warmup, **kwargs):
            bound_args, specialization, options = binder(*args, **kwargs)
            options, signature, constexprs, attrs = fn._pack_args(backend, kwargs, bound_args, specialization,
                                                                  options)
            src = ASTSource(fn, signature, constexprs, attrs)
            kernel = triton.compile(src, target=target, options=options.__dict__)
            md = kernel.metadata
            named = {fn.arg_names[k[0]]: v for k, v in constexprs.items() if len(k) == 1}
            regs, spills = _ptxas_usage(kernel.asm["ptx"], arch)
            records.append(CompiledRecord(fn.__name__, named, regs, spills, md.shared, md.num_warps))
        return run

    for module in (triton_attention, triton_ring_attention, triton_fsq):
        for value in vars(module).values():
            if isinstance(value, JITFunction) and "run" not in vars(value):
                value.run = make_run(value)
                patched.append(value)
    token = COMPILE_ONLY.set(True)
    try:
        yield records
    finally:
        COMPILE_ONLY.reset(token)
        for fn in patched:
            del fn.run


def _ptxas_usage(ptx: str, arch: int) -> tuple[int, int]:
    """(registers per thread, spill stores in bytes) from `ptxas -v`; (-1, -1) if ptxas is unavailable."""
    import triton

    try:
        ptxas = triton.knobs.nvidia.ptxas.path
    except Exception:
        return -1, -1
    suffix = "a" if arch >= 90 else ""
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "k.ptx")
        with open(src, "w") as f:
            f.write(ptx)
        proc = subprocess.run([ptxas, "-v", f"--gpu-name=sm_{arch}{suffix}", src, "-o", os.path.join(tmp, "k.o")],
                              capture_output=True, text=True)
    regs = re.search(r"Used (\d+) registers", proc.stderr)
    spills = re.search(r"(\d+) bytes spill stores", proc.stderr)
    return (int(regs.group(1)) if regs else -1), (int(spills.group(1)) if spills else -1)


def check_all(arch: int = 90, head_dims=(16, 32, 64, 128), dtypes=(torch.bfloat16, torch.float16, torch.float32),
              verbose: bool = True) -> list[CompiledRecord]:
    """Compile every kernel variant the library launches (training fwd/bwd, GQA, ragged D, decode with and
    without split-KV, FSQ) for sm_<arch>; raise if one fails or exceeds the shared memory of an H100 block."""
    from . import triton_attention as ta
    from . import triton_ring_attention as tr
    from . import triton_fsq as tf

    smem_limit = 227 * 1024
    with compile_only(arch) as records:
        for dtype in dtypes:
            for d in head_dims:
                q = torch.zeros(1, 4, 64, d, dtype=dtype, requires_grad=True)
                k = torch.zeros(1, 2, 64, d, dtype=dtype, requires_grad=True)
                v = torch.zeros(1, 2, 64, d, dtype=dtype, requires_grad=True)
                o, lse = ta._attention_forward(q, k, v, 0, 16, 1.0)
                ta._attention_backward(torch.zeros_like(o), q, k, v, o, lse, 0, 16, 1.0)
                pos = torch.zeros(1, 1, dtype=torch.long)
                kc = torch.zeros(1, 2, 256, d, dtype=dtype)
                cpos = torch.zeros(1, 256, dtype=torch.long)
                for splits in (1, 2):
                    tr.ring_attention_triton(q[:, :, :1], kc, kc, pos, cpos, window=32, num_splits=splits)
        q = torch.zeros(1, 2, 16, 48, dtype=torch.bfloat16)  # head dim that is not a power of two
        ta._attention_forward(q, q, q, 0, 17, 1.0)
        for levels in ([3] * 8, [8, 5, 5, 5]):
            z = torch.zeros(4, len(levels), requires_grad=True)
            codes, idx = tf.fsq_triton(z, levels)
            codes.backward(torch.zeros_like(codes))
            tf.fsq_decode_triton(torch.zeros_like(idx), levels)
    if verbose:
        print(f"{'kernel':<16} {'constexprs':<72} {'warps':>5} {'regs':>5} {'spill B':>7} {'smem KiB':>8}")
        for r in records:
            consts = ", ".join(f"{k}={v}" for k, v in r.constexprs.items() if k.isupper() and k != "PREC")
            print(f"{r.name:<16} {consts[:72]:<72} {r.num_warps:>5} {r.n_regs:>5} {r.n_spills:>7} "
                  f"{r.shared / 1024:>8.1f}")
    over = [r for r in records if r.shared > smem_limit]
    if over:
        raise RuntimeError(f"kernels/compile_check.py: {len(over)} kernels need more than {smem_limit} bytes of "
                           f"shared memory: {[(r.name, r.constexprs, r.shared) for r in over]}")
    return records


if __name__ == "__main__":
    from kernels.compile_check import check_all as _check_all  # the package's instance, not __main__'s

    _check_all(int(sys.argv[1]) if len(sys.argv) > 1 else 90)
