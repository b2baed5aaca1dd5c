# The PTX Triton 3.6 makes for sm_90 of how a split-K program meets the others of its block (kernels/split.py's
# combine): a 64-row proj (1,024 outputs, K 4,096) split 8 ways, blocks of 64x128, with a residual. No GPU needed.
#   PYTHONPATH=.triton:workflow/scripts .venv/bin/python docs/benchmarks/data/2026-12-08-cpu-sm90-split-k/split_ptx.py
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[4] / "tests"))
import sm90_check as check  # noqa: E402
import torch  # noqa: E402
from triton.runtime import driver  # noqa: E402
from triton.runtime.jit import JITFunction  # noqa: E402
from trtflow.backends.torch import kernels  # noqa: E402
from trtflow.backends.torch.kernels import launch, tuning  # noqa: E402
from trtflow.backends.torch.kernels.linear import linear  # noqa: E402
from trtflow.backends.torch.weights import Linear  # noqa: E402

built = {}
run = JITFunction.run


def compile_only(self, *args, grid, warmup, **kwargs):
    built[self.fn.__name__] = kernel = run(self, *args, grid=grid, warmup=True, **kwargs)
    return kernel


driver.set_active(check.Sm90Driver())
JITFunction.run = compile_only
launch.PDL = True
x, w = torch.zeros(64, 4096).half(), torch.zeros(1024, 4096).half()
table = kernels.TuningTable()
table.chosen[kernels.shape_of(64, w, x)] = tuning.SPLIT_BLOCKS[-1]  # 64x128, split 8
linear(x, Linear(w, torch.zeros(1024).half()), epilogue=kernels.Epilogue(residual=torch.zeros(64, 1024).half()),
       tuning=table)
lines = [line.strip() for line in built["_linear_kernel"].asm["ptx"].splitlines()]
first = next(i for i, line in enumerate(lines) if "relaxed.add" in line)
for line in lines[first:]:
    if re.search(r"atom\.|red\.|bar\.sync|setp\.eq\.(b32|f32)|ld\.shared\.b32|st\.global", line):
        print(line)
    if line.startswith("st.global"):
        break
