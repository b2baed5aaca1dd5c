"""GPU memory of one engine variant alone: each variant in a process of its own, nothing else on the device.

gpu_speed.py's peak-memory column counts everything alive in its process (the HF reference model, the
engines' static KV cache sized for batch 64). Here each variant is built for the case it serves (batch 1,
in 60 / out 100: `max_batch_size` 1, so the static cache holds one sequence) and measured in a fresh process:
bytes allocated once the engine is open, the peak during bs-1 generation, and the latency of the same run.
The engines are built (and compiled) by the parent process, so nothing the build allocated is counted.

    PYTHONPATH=workflow/scripts python3 benchmarks/engine_memory.py --out $OUT \
        --variants trtflow-cudagraph-gemv trtflow-cudagraph-gemv-int8wo
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow" / "scripts"))
sys.path.insert(0, str(ROOT / "benchmarks"))

CASE = (1, 60, 100)
COLUMNS = ["variant", "device", "max_batch_size", "weights_mb", "allocated_after_open_mb", "peak_mb", "latency_ms",
           "tokens_per_s"]


def engine_dir(work: Path, variant: str) -> Path:
    return work / "engines" / f"memory-{variant}"


def build_engines(variants: list[str], work: Path) -> None:
    """In the parent process: the checkpoint, the c-model and each variant's engine (compiled at build where the
    variant compiles), so that nothing the build allocated is counted in the measuring processes."""
    from convert import CHECKPOINT_TOKEN_IDS, c_model
    from gpu_speed import FLAGS, VARIANTS
    from trtflow.backends.torch.build import build
    from trtflow.flags import BuildFlags

    source = c_model(work)
    for variant in variants:
        flags = BuildFlags.from_config({**FLAGS, **VARIANTS[variant], "max_batch_size": CASE[0]}, "float16")
        build(source, engine_dir(work, variant), flags, "0" * 10, CHECKPOINT_TOKEN_IDS)


def live_blocks(top: int = 12) -> list[str]:
    """The largest blocks allocated now, each with the innermost frames that allocated it (memory history on)."""
    import torch

    blocks = [block for segment in torch.cuda.memory._snapshot()["segments"] for block in segment["blocks"]
              if block["state"] == "active_allocated"]
    lines = []
    for block in sorted(blocks, key=lambda b: -b["size"])[:top]:
        frames = [f"{Path(f['filename']).name}:{f['line']} {f['name']}" for f in block.get("frames", [])
                  if f["filename"].endswith(".py")][:3]
        lines.append(f"{block['size'] / 2**20:8.2f} MiB  {' < '.join(frames) or '(no python frame)'}")
    return lines


def measure_one(variant: str, work: Path, breakdown: bool = False) -> dict:
    """In a fresh process: open the engine, run the case, report its memory (with `breakdown`, the largest blocks
    still allocated after the run, and where they were allocated, on stderr)."""
    import torch
    from gpu_speed import weights_mib
    from trtflow.backends.torch.generator import TorchEngineGenerator
    from trtflow.infra.dist import init_distributed
    from trtflow.stages import benchmark as bench

    dist = init_distributed()
    if breakdown:
        torch.cuda.memory._record_memory_history(stacks="python")
    before = torch.cuda.memory_allocated()
    engine = TorchEngineGenerator(engine_dir(work, variant), dist)
    opened = torch.cuda.memory_allocated() - before
    row = bench.measure(engine, *CASE, 2, 10, 0.0, 50257)  # resets the peak statistics before its runs
    if breakdown:
        print(f"{variant}: largest blocks allocated after the run", *live_blocks(), sep="\n  ", file=sys.stderr)
    return {"variant": variant, "device": torch.cuda.get_device_name(), "max_batch_size": CASE[0],
            "weights_mb": weights_mib(engine),
            "allocated_after_open_mb": opened / 2**20, "peak_mb": torch.cuda.max_memory_allocated() / 2**20,
            "latency_ms": row["latency_ms"], "tokens_per_s": row["tokens_per_s"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--work", default="/tmp/trtflow-gpu")
    parser.add_argument("--variants", nargs="+", default=["trtflow-cudagraph-gemv", "trtflow-cudagraph-gemv-int8wo"])
    parser.add_argument("--breakdown", action="store_true", help="also list the largest blocks allocated after the "
                        "run and where they were allocated")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # the per-process measurement
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure_one(args.one, Path(args.work), args.breakdown)))
        return
    build_engines(args.variants, Path(args.work))
    rows = []
    for variant in args.variants:
        proc = subprocess.run([sys.executable, __file__, "--out", args.out, "--work", args.work, "--one", variant]
                              + ["--breakdown"] * args.breakdown, stdout=subprocess.PIPE, text=True, check=True)
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(" ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in rows[-1].items()), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with (out / "engine_memory.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows({k: (f"{v:.2f}" if isinstance(v, float) else v) for k, v in row.items()} for row in rows)
    base = rows[0]
    for row in rows[1:]:
        print(f"{row['variant']} vs {base['variant']}: peak {100 * row['peak_mb'] / base['peak_mb']:.1f}%, weights "
              f"{100 * row['weights_mb'] / base['weights_mb']:.1f}%, latency {row['latency_ms']:.2f} vs "
              f"{base['latency_ms']:.2f} ms")


if __name__ == "__main__":
    main()
