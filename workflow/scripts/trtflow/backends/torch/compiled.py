"""The compiled part of a torch engine (the decode step, compiled once by the engine rule, build.compile_into):
what it is valid for, and loading it.

torch.compile's portable cache artifacts (`torch.compiler.save_cache_artifacts`: inductor's compiled graphs,
the Triton kernels and their tuning) go to compiled/torch_compile.bin. A job that runs the engine loads
them before its first compile, which then finds every graph and kernel already built. The artifacts hold
machine code for one GPU architecture, made by one torch, Triton and CUDA: those are recorded, and an
engine whose compiled step was made for anything else is refused with the instruction to rebuild it (the
contract of a TensorRT engine), never recompiled behind the user's back.

`decode: kernels` runs trtflow's kernels (kernels/) for batches up to kernels.MAX_BATCH: there the record holds
the block sizes chosen at build (`kernels`, a kernels.TuningTable), which the generator reads back, and no
artifact file where every compiled batch size ran the kernels.

Only where the step is captured (BuildFlags.compiles_at_build: tp 1, CUDA graphs, contiguous cache). Elsewhere
`torch_compile` compiles at run time as before.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ...formats.provenance import package_version
from ...generation import EngineMismatchError

ARTIFACT = "compiled/torch_compile.bin"
TOOLCHAIN_KEYS = ("torch", "triton", "cuda", "sm")


def toolchain() -> dict:
    """What compiled kernels are valid for: this torch, Triton and CUDA, and this GPU's architecture."""
    sm = None
    if torch.cuda.is_available():
        major, minor = torch.cuda.get_device_capability()
        sm = f"{major}{minor}"
    return {"torch": torch.__version__, "triton": package_version("triton"), "cuda": torch.version.cuda, "sm": sm}


def check(engine_dir: Path, record: dict, here: dict | None = None) -> None:
    here = toolchain() if here is None else here
    differs = [k for k in TOOLCHAIN_KEYS if record.get(k) != here.get(k)]
    if differs:
        built = ", ".join(f"{k} {record.get(k)}" for k in differs)
        running = ", ".join(f"{k} {here.get(k) or 'none'}" for k in differs)
        raise EngineMismatchError(
            f"{engine_dir} holds a decode step compiled for {built}, but this machine has {running}: compiled "
            f"kernels run only where they were built. Delete {engine_dir} and rerun: the workflow rebuilds it here")


def load(engine_dir: Path, record: dict) -> None:
    """Check the recorded toolchain, then hand the artifacts to torch.compile's caches."""
    check(engine_dir, record)
    if record["file"]:  # none where only trtflow's kernels run (decode: kernels up to their batch)
        torch.compiler.load_cache_artifacts((engine_dir / record["file"]).read_bytes())
