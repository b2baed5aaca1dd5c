"""TensorRT-LLM's own benchmark tool for a trtllm engine, and its output as benchmark.csv rows.

Flow 0.8 measures with `gptSessionBenchmark` (benchmarks/cpp/gptSessionBenchmark.cpp at v0.8.0), as the recipe
did: `mpirun -n tp gptSessionBenchmark --model gpt --engine_dir E --batch_size "1;8" --input_output_len "60,20"`.
It times static batches of random ids of exactly the input length, forced to exactly the output length, and rank
0 prints one line per configuration:

    [BENCHMARK] batch_size 1 input_length 60 output_length 20 latency(ms) 39.47 tokensPerSec 506.69 gpu_peak_mem(gb) 23.06

(`latency(ms) N/A tokensPerSec N/A` where it ran out of memory). Any other failure, a configuration beyond the
engine's limits among them, ends the whole run, so a configuration the engine cannot take is left out before
the tool starts and gets a `not run` row, as the Python loop's rows do.
"""

from __future__ import annotations

import math
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from ...errors import KnownError

GPT_SESSION_BENCHMARK = "gptSessionBenchmark"
# Where `scripts/build_wheel.py --benchmarks` leaves it, under the TensorRT-LLM checkout
BUILT_AT = Path("cpp") / "build" / "benchmarks" / GPT_SESSION_BENCHMARK

BENCHMARK_LINE = re.compile(
    r"\[BENCHMARK\] batch_size (\d+) input_length (\d+) output_length (\d+) latency\(ms\) (N/A|[\d.]+) "
    r"tokensPerSec (N/A|[\d.]+)(?: gpu_peak_mem\(gb\) ([\d.]+))?")
DONE_LINE = re.compile(r"Benchmarking done\. Iteration: (\d+), duration: ([\d.]+) sec\.")


class BenchmarkToolError(KnownError, RuntimeError):
    """The tool failed; its own output precedes this in the job's log."""


@dataclass(frozen=True)
class Case:
    batch_size: int
    input_len: int
    output_len: int


def find_gpt_session_benchmark(configured: str | None, examples_dir: str | None) -> str | None:
    """trtllm.benchmark_tool, else gptSessionBenchmark on PATH, else where the TensorRT-LLM checkout whose
    examples/ is trtllm.examples_dir builds it."""
    if configured:
        return configured if os.access(configured, os.X_OK) else None
    found = shutil.which(GPT_SESSION_BENCHMARK)
    if found:
        return found
    if examples_dir:
        built = Path(examples_dir).resolve().parent / BUILT_AT
        if os.access(built, os.X_OK):
            return str(built)
    return None


def gpt_session_benchmark_argv(program: str, engine_dir: str, batch_sizes: list[int], input_len: int,
                               output_len: int, warm_up: int, num_runs: int, duration: float) -> list[str]:
    """One input/output pair: the tool sizes its session for the largest batch it is given and checks that batch
    against the engine's max_num_tokens, so each pair gets only the batch sizes the engine takes with it."""
    return [program, "--model", "gpt", "--engine_dir", engine_dir, "--batch_size", ";".join(map(str, batch_sizes)),
            "--input_output_len", f"{input_len},{output_len}", "--warm_up", str(warm_up), "--num_runs",
            str(num_runs), "--duration", str(math.ceil(duration))]  # the tool reads whole seconds


def beyond_limits(case: Case, layout: dict, max_num_tokens: int | None) -> str | None:
    """Why the engine cannot take `case` (the tool would end the whole run on it), or None."""
    for value, key, what in ((case.batch_size, "max_batch_size", "batch size"),
                             (case.input_len, "max_input_len", "input length"),
                             (case.output_len, "max_output_len", "output length")):
        if value > layout[key]:
            return f"{what} {value} > the engine's {key} {layout[key]}"
    if max_num_tokens is not None and case.batch_size * case.input_len > max_num_tokens:
        return (f"batch × input length {case.batch_size * case.input_len} > the engine's max_num_tokens "
                f"{max_num_tokens} (packed input)")
    return None


def max_num_tokens_of(config: dict) -> int | None:
    """The engine's max_num_tokens where gptSessionBenchmark checks it: packed input (v0.8.0 config.json)."""
    packed = (config.get("plugin_config") or {}).get("remove_input_padding")
    return (config.get("builder_config") or {}).get("max_num_tokens") if packed else None


def parse_output(text: str) -> dict[Case, dict]:
    """Rank 0's [BENCHMARK] lines as measured columns; the iterations come from the `Benchmarking done` lines
    (every rank prints one per configuration it finished; where they disagree the count is left blank)."""
    done = [int(m.group(1)) for m in DONE_LINE.finditer(text)]
    iterations = done[0] if done and len(set(done)) == 1 else None
    rows = {}
    for match in BENCHMARK_LINE.finditer(text):
        batch, input_len, output_len = (int(match.group(i)) for i in (1, 2, 3))
        case = Case(batch, input_len, output_len)
        if match.group(4) == "N/A":
            rows[case] = {"status": "not run: gptSessionBenchmark ran out of GPU memory (latency N/A)"}
            continue
        latency, tokens = float(match.group(4)), float(match.group(5))
        peak_gb = float(match.group(6)) if match.group(6) is not None else None
        rows[case] = {"status": "ok", "iterations": iterations, "latency_ms": latency, "tokens_per_s": tokens,
                      "peak_mem_mb": peak_gb * 1e9 / 2**20 if peak_gb is not None else None,
                      "peak_mem_kind": "gpu_device_used"}
    return rows


def run_gpt_session_benchmark(program: str, engine_dir: str, cases: list[Case], ranks: int, warm_up: int,
                              num_runs: int, duration: float) -> dict[Case, dict]:
    """Every case the engine takes, through the tool on `ranks` MPI ranks (its output goes on to this job's log);
    the measured columns, or a `not run` status, for each case."""
    import subprocess

    from ...formats.artifact import read_json
    from ...infra.launch import ranks_command
    from .runner import engine_layout

    config = read_json(Path(engine_dir) / "config.json")
    layout, max_tokens = engine_layout(config), max_num_tokens_of(config)
    results = {case: {"status": f"not run: {why}"} for case in cases
               if (why := beyond_limits(case, layout, max_tokens))}
    pairs = sorted({(c.input_len, c.output_len) for c in cases if c not in results})
    # line-buffered, so that one rank's line never arrives cut by another rank's output
    line_buffered = [found, "-oL"] if (found := shutil.which("stdbuf")) else []
    for input_len, output_len in pairs:
        batches = sorted({c.batch_size for c in cases if (c.input_len, c.output_len) == (input_len, output_len)
                          and c not in results})
        argv = ranks_command(ranks, [*line_buffered, *gpt_session_benchmark_argv(
            program, engine_dir, batches, input_len, output_len, warm_up, num_runs, duration)])
        print("benchmark:", " ".join(argv), flush=True)
        proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        print(proc.stdout, end="", flush=True)
        if proc.returncode != 0:
            raise BenchmarkToolError(f"gptSessionBenchmark failed (exit {proc.returncode}) on input {input_len} / "
                                     f"output {output_len}; its output is above in this log")
        measured = parse_output(proc.stdout)
        for batch in batches:
            case = Case(batch, input_len, output_len)
            results[case] = measured.get(case) or {
                "status": "not run: gptSessionBenchmark printed no [BENCHMARK] line for it (its output is in the log)"}
    return results
