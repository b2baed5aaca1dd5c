"""Run by tests/test_kernels.py: every Triton kernel of `decode: kernels` compiled for sm_90 (H100, H200) by Triton's own
JIT, on a machine with no GPU, with the arguments the decode step passes. The interpreter (kernel_check.py) checks
the arithmetic but never compiles; a kernel can be right there and not build for the GPU (a layout the compiler
refuses, a pass that crashes). Here a stand-in for Triton's CUDA driver names the target, and every launch is turned
into Triton's compile-only warm-up. Printed as JSON: per compiled kernel its blocks, registers, spilled bytes and
shared memory (cuobjdump, shipped with Triton's wheel).

Each linear compiles with the first of its unsplit and of its split-K candidates (tuning.candidates_of); with
--every-candidate, with all of them, as an engine build does (about 100 s here).

    PYTHONPATH=<triton>:workflow/scripts python tests/sm90_check.py [--every-candidate]
"""

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.runtime import driver
from triton.runtime.jit import JITFunction

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow" / "scripts"))

from trtflow.backends.torch import kernels  # noqa: E402
from trtflow.backends.torch.kernels import launch, tuning  # noqa: E402
from trtflow.backends.torch.model import ParallelGPT2  # noqa: E402
from trtflow.backends.torch.state import DecodeState  # noqa: E402
from trtflow.backends.torch.weight_only import quantize_weights  # noqa: E402
from trtflow.backends.torch.weights import GPT2Weights  # noqa: E402
from trtflow.gpt2 import ModelDims  # noqa: E402

# gpt2-medium's widths (they set the kernels' constant shapes, so their registers), two layers
DIMS = ModelDims(vocab_size=50257, hidden=1024, heads=16, layers=2, positions=1024, inner=4096, eps=1e-5,
                 activation="gelu_new", tied=True)
CAPACITY = 228
CUOBJDUMP = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"


class Sm90Driver:
    """What Triton's JIT asks its driver before compiling: the device, its stream, the target."""

    def get_current_device(self):
        return 0

    def get_current_stream(self, device=None):
        return 0

    def get_current_target(self):
        return GPUTarget("cuda", 90, 32)


COMPILED: dict[tuple, dict] = {}


def _compile_only(run):
    def compiled(self, *args, grid, warmup, **kwargs):
        kernel = run(self, *args, grid=grid, warmup=True, **kwargs)
        name = self.fn.__name__
        key = (name, kernel.hash)
        if key not in COMPILED:
            blocks = {k: v for k, v in kwargs.items() if k.startswith(("BLOCK_", "SPLIT_", "AHEAD"))}
            COMPILED[key] = {"kernel": name, **blocks, **resources(kernel)}
        return kernel
    return compiled


def resources(kernel) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".cubin") as cubin:
        cubin.write(kernel.asm["cubin"])
        cubin.flush()
        usage = subprocess.run([str(CUOBJDUMP), "--dump-resource-usage", cubin.name], capture_output=True, text=True,
                               check=True).stdout
    return {"registers": int(re.search(r"REG:(\d+)", usage).group(1)),
            "spilled": int(re.search(r"STACK:(\d+)", usage).group(1)), "shared": kernel.metadata.shared,
            "warps": kernel.metadata.num_warps, "pdl": "griddepcontrol" in kernel.asm["ptx"]}


def random_model(int8: bool) -> ParallelGPT2:
    torch.manual_seed(0)
    h = DIMS.hidden
    w = {"wte": torch.randn(DIMS.vocab_size, h), "wpe": torch.randn(DIMS.positions, h),
         "ln_f.weight": torch.rand(h) + 0.5, "ln_f.bias": torch.randn(h)}
    for layer in range(DIMS.layers):
        p = f"layers.{layer}."
        for name, (n, k) in {"qkv": (3 * h, h), "dense": (h, h), "fc": (DIMS.inner, h), "proj": (h, DIMS.inner)}.items():
            w[p + name + ".weight"], w[p + name + ".bias"] = torch.randn(n, k) / k**0.5, torch.randn(n)
        for norm in ("ln_1", "ln_2"):
            w[p + norm + ".weight"], w[p + norm + ".bias"] = torch.rand(h) + 0.5, torch.randn(h)
    w = {k: v.half() for k, v in w.items()}
    return ParallelGPT2(DIMS, DIMS.heads, 1, GPT2Weights.from_engine(quantize_weights(w) if int8 else w, DIMS.eps))


def compile_steps(batches, int8: bool, every: bool) -> list[str]:
    """The tuning candidates of every linear of the step at each batch (`every`: all; else the first unsplit and the
    first split), then one whole greedy step (attention, the one-row kernels, the lm_head's argmax, the
    bookkeeping). Returns the linears' shapes compiled."""
    model = random_model(int8)
    shapes = []
    for batch in batches:
        step = kernels.KernelStep(model, kernels.TuningTable(), batch, CAPACITY)
        for name, (weight, x, launches) in step.linears(batch).items():
            key = kernels.shape_of(batch, weight, x)
            configs = tuning.candidates_of(name, batch, weight.shape[1])
            if not every:
                configs = list({c.kwargs.get("SPLIT_K", 1) > 1: c for c in reversed(configs)}.values())
            for config in configs:
                step.tuning.chosen[key] = config
                launches[0]()
            shapes.append(str(key))
        caches = [torch.zeros(batch, 2, DIMS.heads, CAPACITY, DIMS.head_dim, dtype=torch.float16)
                  for _ in range(DIMS.layers)]
        state = DecodeState.zeros(batch, CAPACITY, torch.device("cpu"), kernels.argmax_slots(batch, torch.device("cpu")))
        step.greedy(state, caches)
    return shapes


def attention_variants(batch: int) -> None:
    """The attention kernel with its loads further ahead than the step runs it (benchmarks/kernel_bench.py's sweep)."""
    qkv = torch.zeros(batch, 3 * DIMS.hidden, dtype=torch.float16)
    cache = torch.zeros(batch, 2, DIMS.heads, CAPACITY, DIMS.head_dim, dtype=torch.float16)
    for block_t, ahead in ((64, 2), (128, 1), (128, 2)):
        kernels.attention(qkv, cache, torch.zeros(batch, dtype=torch.long),
                          {"BLOCK_T": block_t, "num_warps": 4, "AHEAD": ahead})


def compile_only_for_sm90() -> None:
    """From here on in this process, every Triton launch compiles for sm_90 (with PDL, as on Hopper) and runs
    nothing, each kernel's resources recorded in COMPILED."""
    os.environ.pop("TRITON_INTERPRET", None)
    driver.set_active(Sm90Driver())
    JITFunction.run = _compile_only(JITFunction.run)
    launch.PDL = True


if __name__ == "__main__":
    compile_only_for_sm90()
    every = "--every-candidate" in sys.argv
    # every row tile: 16 (statistics) in int8, 32 (folded) in fp16, 1 and 64 in both; all of them with every candidate
    fp16 = [1, 3, 17, 64] if every else [1, 17, 64]
    shapes = compile_steps(fp16, False, every) + compile_steps([1, 3, 64], True, every)
    attention_variants(64)
    print(json.dumps({"shapes": shapes, "kernels": sorted(COMPILED.values(), key=lambda k: k["kernel"])}))
