"""gptSessionBenchmark as a CSV: static batches of random ids, fixed lengths, latency and throughput.

For every batch size × (input_len, output_len): random token ids of exactly input_len, exactly
output_len generated tokens (end id ignored), `warm_up` untimed runs, then timed runs while
iterations < num_runs or elapsed < duration. tokens_per_s = batch × output_len / latency, as
gptSessionBenchmark. A configuration the engine cannot take gets a row with status `not run: …`
(gptSessionBenchmark prints N/A). Every rank runs; rank 0 writes the CSV.

With `--tool gptSessionBenchmark` (a trtllm engine of flow 0.8) the tool itself measures, as the recipe did, and
its rows carry what it prints: mean latency, tokens/s and the device's peak memory; with `--tool trtllm-bench` (a
flow-1.2 engine with in-flight batching) its latency mode measures the batch-1 cases (backends/trtllm/bench.py).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import statistics
import time
from pathlib import Path

import numpy
import torch

from ..errors import run_stage
from ..formats.artifact import atomic_file, read_json
from ..generation import EngineLimitError, Sampling, dtype_name
from ..infra.dist import broadcast, init_distributed, shutdown

COLUMNS = ["system", "model", "backend", "build_key", "tp", "device", "dtype", "batch_size", "input_len",
           "output_len", "status", "iterations", "latency_ms", "p50_ms", "p90_ms", "p99_ms", "ttft_ms", "tpot_ms",
           "tokens_per_s", "peak_mem_mb", "peak_mem_kind", "cuda_graphs", "engine_dtype", "load_1m_start",
           "load_1m_end", "cpus", "tool"]


PYTHON_LOOP = "trtflow's Python loop"
PYTHON_LOOP_NAME = "python-loop"


def peak_memory_mb(device: torch.device) -> tuple[float, str]:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "gpu_allocated"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "process_rss"


def measure(generator, batch_size: int, input_len: int, output_len: int, warm_up: int, num_runs: int,
            duration: float, vocab_size: int, seed: int = 0) -> dict:
    """One configuration; returns the measured columns or a `not run` status."""
    ids = torch.randint(vocab_size, (batch_size, input_len), generator=torch.Generator().manual_seed(seed)).tolist()
    try:
        generator.check_limits(ids, output_len)
    except EngineLimitError as err:
        return {"status": f"not run: {err}"}
    if generator.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(generator.device)
    for _ in range(warm_up):
        generator.generate(ids, output_len, Sampling(), ignore_eos=True)
    latencies, contexts = [], []
    load_start = os.getloadavg()[0]  # what else the machine was doing while this row was measured
    started = time.perf_counter()
    def more() -> bool:
        # Ranks run the engine together (collectives every step), so all must stop after the same run: rank 0's
        # clock decides. Each rank reading its own clock once left one rank waiting for a run the others skipped.
        wanted = len(latencies) < num_runs or time.perf_counter() - started < duration
        return bool(broadcast(torch.tensor([int(wanted)], device=generator.device))[0])

    while more():
        result = generator.generate(ids, output_len, Sampling(), ignore_eos=True)
        latencies.append(result.total_s * 1000)
        contexts.append(result.context_s * 1000)
    load_end = os.getloadavg()[0]
    latency = statistics.fmean(latencies)
    ttft = statistics.fmean(contexts)
    peak, kind = peak_memory_mb(generator.device)
    p50, p90, p99 = numpy.percentile(latencies, [50, 90, 99]).tolist()
    return {
        "status": "ok", "iterations": len(latencies), "latency_ms": latency,
        "p50_ms": p50, "p90_ms": p90, "p99_ms": p99,
        "ttft_ms": ttft, "tpot_ms": (latency - ttft) / (output_len - 1) if output_len > 1 else 0.0,
        "tokens_per_s": batch_size * output_len / (latency / 1000), "peak_mem_mb": peak, "peak_mem_kind": kind,
        "load_1m_start": load_start, "load_1m_end": load_end, "cpus": os.cpu_count(),
    }


def write_csv(path: str, rows: list[dict]) -> None:
    with atomic_file(path, checksum=True) as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in row.items()})


def cases_of(args: argparse.Namespace) -> list[tuple[int, int, int]]:
    """(batch, input, output) of every configuration, batch sizes outermost, as gptSessionBenchmark's flags."""
    pairs = [tuple(int(x) for x in pair.split(",")) for pair in args.input_output_len.split(";")]
    return [(int(b), i, o) for b in args.batch_size.split(";") for i, o in pairs]


def print_line(row: dict) -> None:
    shown = f"latency(ms) {row['latency_ms']:.2f} tokensPerSec {row['tokens_per_s']:.2f}" \
        if row["status"] == "ok" else row["status"]
    print(f"[BENCHMARK] batch_size {row['batch_size']} input_length {row['input_len']} output_length "
          f"{row['output_len']} {shown}", flush=True)


def python_loop(args: argparse.Namespace) -> None:
    """Every rank runs the engine through trtflow's generator; rank 0 writes the CSV."""
    from ..engines import open_engine

    dist = init_distributed()
    engine = open_engine(args.engine_dir, dist, args.build_key)
    config = read_json(Path(args.engine_dir) / "config.json")
    base = {
        "system": "trtflow", "model": args.model, "backend": config.get("backend", "trtllm"),
        "build_key": config.get("build_key", args.build_key), "tp": dist.world_size,
        "device": torch.cuda.get_device_name(dist.device) if dist.device.type == "cuda" else "cpu",
        "dtype": dtype_name(engine.compute_dtype),  # what the matmuls run in (float32 on a CPU)
        "engine_dtype": config.get("dtype") or dtype_name(engine.compute_dtype),  # what the engine stores
        "cuda_graphs": bool(config.get("build", {}).get("cuda_graphs", False)),
        "tool": PYTHON_LOOP,
    }
    rows = []
    for batch_size, input_len, output_len in cases_of(args):
        measured = measure(engine, batch_size, input_len, output_len, args.warm_up, args.num_runs,
                           args.duration, engine.vocab_size)
        rows.append({**base, "batch_size": batch_size, "input_len": input_len, "output_len": output_len, **measured})
        if dist.is_main:
            print_line(rows[-1])
    if dist.is_main:
        write_csv(args.out, rows)
    shutdown()


def trtllm_tool(args: argparse.Namespace) -> None:
    """One process runs TensorRT-LLM's benchmark tool (which starts the engine's ranks) and writes what it measured
    as the CSV."""
    from ..engines import benchmark_with_tool

    cases = cases_of(args)
    layout, measured = benchmark_with_tool(args.tool, args.engine_dir, args.build_key, json.loads(args.trtllm),
                                           args.hf_dir, args.model, cases, args.warm_up, args.num_runs, args.duration)
    base = {"system": "trtflow", "model": args.model, "backend": "trtllm", "build_key": args.build_key,
            "tp": layout["world_size"], "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
            "dtype": layout["dtype"], "engine_dtype": layout["dtype"], "cuda_graphs": False, "tool": args.tool}
    rows = [{**base, "batch_size": b, "input_len": i, "output_len": o, **measured[(b, i, o)]} for b, i, o in cases]
    for row in rows:
        print_line(row)
    write_csv(args.out, rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Benchmark an engine (gptSessionBenchmark's method, or the tool).")
    parser.add_argument("--engine-dir", required=True)
    parser.add_argument("--model", default="")
    parser.add_argument("--batch-size", default="1;8", help="';'-separated, as gptSessionBenchmark")
    parser.add_argument("--input-output-len", default="60,20;60,100", help="';'-separated in,out pairs")
    parser.add_argument("--warm-up", type=int, default=2)
    parser.add_argument("--num-runs", type=int, default=10)
    parser.add_argument("--duration", type=float, default=0.0)
    parser.add_argument("--build-key", default=None, help="refuse an engine folder that holds another engine")
    parser.add_argument("--tool", choices=[PYTHON_LOOP_NAME, "gptSessionBenchmark", "trtllm-bench"],
                        default=PYTHON_LOOP_NAME,
                        help="what measures: trtflow's loop (every rank runs this stage) or TensorRT-LLM's tool "
                             "(one process starts the tool's ranks)")
    parser.add_argument("--trtllm", default="{}", help="trtllm settings as JSON (benchmark_tool, examples_dir)")
    parser.add_argument("--hf-dir", default=None, help="the model's checkpoint folder (trtllm-bench's tokenizer)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    if args.tool == PYTHON_LOOP_NAME:
        python_loop(args)
    else:
        trtllm_tool(args)


if __name__ == "__main__":
    run_stage(main)
