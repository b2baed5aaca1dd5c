"""Run by tests/test_kernels.py under Triton's CPU interpreter (TRITON_INTERPRET=1): trtflow's batch-1 decode
kernels (backends/torch/kernels.py) against torch, printed as JSON.

    TRITON_INTERPRET=1 PYTHONPATH=<triton>:workflow/scripts python tests/kernel_check.py HF_DIR WORK
"""

import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow" / "scripts"))

from test_runtime import TINY_TOKEN_IDS, engine_flags  # noqa: E402  (tests/ is this script's folder)
from trtflow.backends.torch import kernels  # noqa: E402
from trtflow.backends.torch.build import build  # noqa: E402
from trtflow.backends.torch.kvcache import ContiguousKV  # noqa: E402
from trtflow.backends.torch.model import ParallelGPT2  # noqa: E402
from trtflow.formats import cmodel  # noqa: E402
from trtflow.formats.artifact import read_json  # noqa: E402
from trtflow.gpt2 import ModelDims  # noqa: E402


def gemv_errors() -> dict[str, float]:
    """Each fused form against torch in fp32, for shapes that do and do not fill the kernel's blocks."""
    torch.manual_seed(0)
    errors = {}
    for n, k in ((384, 128), (100, 300), (64, 1024)):
        x, weight = torch.randn(1, k).half(), (torch.randn(n, k) / k**0.5).half()
        bias, residual, ln_w, ln_b = torch.randn(n).half(), torch.randn(1, n).half(), torch.randn(k).half(), \
            torch.randn(k).half()
        f32 = {name: t.float() for name, t in dict(x=x, w=weight, b=bias, r=residual, lw=ln_w, lb=ln_b).items()}
        cases = {
            "ln+bias": (kernels.gemv(x, weight, bias, ln=(ln_w, ln_b, 1e-5)),
                        F.linear(F.layer_norm(f32["x"], (k,), f32["lw"], f32["lb"], 1e-5), f32["w"], f32["b"])),
            "bias+gelu+residual": (kernels.gemv(x, weight, bias, residual=residual, gelu=True),
                                   F.gelu(F.linear(f32["x"], f32["w"], f32["b"]), approximate="tanh") + f32["r"]),
            "plain fp32 out": (kernels.gemv(x, weight, out_dtype=torch.float32), F.linear(f32["x"], f32["w"])),
        }
        for name, (got, want) in cases.items():
            errors[f"{n}x{k} {name}"] = (got.float() - want).abs().max().item() / want.abs().max().item()
    return errors


def decode_steps(hf_dir: Path, work: Path, steps: int = 4) -> dict:
    """kernels.decode on an fp16 engine against model.decode of the same weights in fp32, greedy from one token."""
    flags = engine_flags(max_batch_size=1, max_input_len=8, max_output_len=8, cuda_graphs=True,
                         torch_compile="triton")
    source = cmodel.convert(hf_dir, work / "c", 1, "float16", progress=False)
    engine = build(source, work / "e", flags, "0" * 10, TINY_TOKEN_IDS)
    from safetensors.torch import load_file

    dims = ModelDims.from_json(read_json(engine / "config.json")["model"])
    half = load_file(engine / "rank0.safetensors")
    fast = ParallelGPT2(dims, dims.heads, 1, half)
    reference = ParallelGPT2(dims, dims.heads, 1, {k: v.float() for k, v in half.items()})
    caches = [ContiguousKV(dims.layers, 1, dims.heads, 16, dims.head_dim, dtype, torch.device("cpu"))
              for dtype in (torch.float16, torch.float32)]
    token, tokens, worst = torch.tensor([5]), {"kernels": [], "reference": []}, 0.0
    fast_token = token
    for step in range(steps):
        position = torch.tensor([step])
        got = kernels.decode(fast, fast_token, position, caches[0], 16)
        want = reference.decode(token, position, caches[1], 16)
        worst = max(worst, ((got - want).abs().max() / want.abs().max()).item())
        fast_token, token = got.argmax(-1), want.argmax(-1)
        tokens["kernels"].append(int(fast_token))
        tokens["reference"].append(int(token))
    return {"applies": kernels.applies(fast), "relative_logit_error": worst, **tokens}


if __name__ == "__main__":
    hf, work = Path(sys.argv[1]), Path(sys.argv[2])
    print(json.dumps({"gemv": gemv_errors(), "decode": decode_steps(hf, work)}))
