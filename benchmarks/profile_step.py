"""Where a decode step's time goes on the GPU: kernel time by kind, for one engine variant at one batch size.

    PYTHONPATH=workflow/scripts python3 benchmarks/profile_step.py --out $OUT [--variant trtflow-cudagraph-compile]
        [--batch 1]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow" / "scripts"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from convert import CHECKPOINT_TOKEN_IDS, c_model  # noqa: E402
from gpu_speed import FLAGS, VARIANTS  # noqa: E402
from trtflow.backends.torch.build import build  # noqa: E402
from trtflow.backends.torch.generator import TorchEngineGenerator  # noqa: E402
from trtflow.flags import BuildFlags  # noqa: E402
from trtflow.infra.dist import init_distributed  # noqa: E402


def kind(name: str) -> str:
    name = name.lower()
    for key, label in (("gemv", "gemm/gemv"), ("gemm", "gemm/gemv"), ("cutlass", "gemm/gemv"), ("sm90", "gemm/gemv"),
                       ("attention", "attention"), ("fmha", "attention"), ("flash", "attention"),
                       ("layer_norm", "layer norm"), ("index", "kv write (index_put)"), ("scatter", "kv write (index_put)"),
                       ("triton", "fused elementwise (triton)"), ("elementwise", "elementwise"), ("reduce", "reduction")):
        if key in name:
            return label
    return "other"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--variant", default="trtflow-cudagraph-compile")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch", type=int, default=1, help="prompts of 60 tokens (the engine is built for it)")
    args = parser.parse_args()
    work = Path("/tmp/trtflow-gpu")
    source = c_model(work)
    engine_dir = build(source, work / "engines" / f"profile-{args.variant}-b{args.batch}",
                       BuildFlags.from_config({**FLAGS, **VARIANTS[args.variant], "max_batch_size": max(args.batch, 1)},
                                              "float16"), "0" * 10,
                       CHECKPOINT_TOKEN_IDS)
    engine = TorchEngineGenerator(engine_dir, init_distributed())
    prompt = [[int(t) for t in torch.randint(50257, (60,))] for _ in range(args.batch)]
    for _ in range(3):
        engine.generate(prompt, args.steps, ignore_eos=True)
    torch.cuda.synchronize()
    started = time.perf_counter()
    result = engine.generate(prompt, args.steps, ignore_eos=True)
    wall_ms = (time.perf_counter() - started) * 1000
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        engine.generate(prompt, args.steps, ignore_eos=True)
        torch.cuda.synchronize()
    totals, counts = defaultdict(float), defaultdict(int)
    for event in prof.events():
        if event.device_type == torch.autograd.DeviceType.CUDA:
            totals[kind(event.name)] += event.device_time_total
            counts[kind(event.name)] += 1
    steps = args.steps
    lines = [f"variant {args.variant}, batch {args.batch}: {steps} tokens in {wall_ms:.1f} ms wall "
             f"(context {result.context_s * 1000:.2f} ms), "
             f"{(wall_ms - result.context_s * 1000) / (steps - 1):.3f} ms per decode step",
             f"GPU kernel time per generated token: {sum(totals.values()) / 1000 / steps:.3f} ms in "
             f"{sum(counts.values()) / steps:.0f} kernels"]
    for label in sorted(totals, key=totals.get, reverse=True):
        per_token, kernels = totals[label] / 1000 / steps, counts[label] / steps
        lines.append(f"  {label:28s} {per_token:7.3f} ms/token  {kernels:6.1f} kernels/token")
    lines.append(prof.key_averages().table(sort_by="cuda_time_total", row_limit=15, max_name_column_width=70))
    text = "\n".join(lines)
    print(text)
    Path(args.out, f"profile-{args.variant}-b{args.batch}.txt").write_text(text)


if __name__ == "__main__":
    main()
