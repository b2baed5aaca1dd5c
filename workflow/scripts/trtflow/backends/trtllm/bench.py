"""TensorRT-LLM's own benchmark tools for a trtllm engine, and their output as benchmark.csv rows.

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

import json
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


def run_gpt_session_benchmark(program: str, engine_dir: str, config: dict, cases: list[Case], warm_up: int,
                              num_runs: int, duration: float) -> dict[Case, dict]:
    """Every case the engine (of config.json `config`) takes, through the tool on the engine's MPI ranks (its output
    goes on to this job's log); the measured columns, or a `not run` status, for each case."""
    import subprocess

    from ...infra.launch import ranks_command
    from .runner import engine_layout

    layout, max_tokens = engine_layout(config), max_num_tokens_of(config)
    ranks = layout["world_size"]
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


# Flow 1.2: `trtllm-bench --model M --model_path HF latency --backend tensorrt --engine_dir E --dataset D.jsonl`
# runs a dataset of requests one at a time through the executor (max_batch_size 1, streaming) and writes its
# report with --report_json. It loads only engines with in-flight batching, as the executor does.
TRTLLM_BENCH = "trtllm-bench"
ONE_AT_A_TIME = ("trtllm-bench's latency mode runs one request at a time (max_batch_size 1): a static batch of "
                 "{batch} has no equivalent there (its throughput mode batches in flight)")


def trtllm_bench_dataset(path: Path, case: Case, requests: int, vocab_size: int, seed: int = 0) -> None:
    """`requests` lines of exactly case.input_len random ids and case.output_len output tokens (EOS is ignored in
    latency mode), in trtllm-bench's dataset format."""
    import random

    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as handle:
        for task in range(requests):
            ids = [rng.randrange(vocab_size) for _ in range(case.input_len)]
            handle.write(json.dumps({"task_id": task, "input_ids": ids, "output_tokens": case.output_len}) + "\n")


def trtllm_bench_argv(program: str, model: str, hf_dir: str, workspace: Path, engine_dir: str, dataset: Path,
                      requests: int, warm_up: int, report: Path) -> list[str]:
    return [program, "--model", model, "--model_path", hf_dir, "--workspace", str(workspace), "latency",
            "--backend", "tensorrt", "--engine_dir", engine_dir, "--dataset", str(dataset), "--num_requests",
            str(requests), "--warmup", str(warm_up), "--report_json", str(report)]


def parse_report(report: dict, case: Case) -> dict:
    """The report's per-request figures as benchmark.csv's columns; tokens/s as gptSessionBenchmark defines it."""
    performance, streaming = report["performance"], report.get("streaming_metrics") or {}
    latency = performance["avg_request_latency_ms"]
    spread = performance["request_latency_percentiles_ms"]
    return {"status": "ok", "iterations": report["request_info"]["num_requests"], "latency_ms": latency,
            "p50_ms": spread["p50"], "p90_ms": spread["p90"], "p99_ms": spread["p99"],
            "ttft_ms": streaming.get("avg_ttft_ms"), "tpot_ms": streaming.get("avg_tpot_ms"),
            "tokens_per_s": case.batch_size * case.output_len / (latency / 1000)}


def run_trtllm_bench(program: str, engine_dir: str, config: dict, hf_dir: str, model: str, cases: list[Case],
                     warm_up: int, num_runs: int) -> dict[Case, dict]:
    """Each batch-1 case the engine (of config.json `config`) takes as one trtllm-bench latency run of `num_runs`
    requests (one process: the executor starts the engine's ranks); the measured columns, or a `not run` status, for
    each case."""
    import subprocess
    import tempfile

    from .runner import engine_layout

    layout = engine_layout(config)
    results = {}
    with tempfile.TemporaryDirectory(prefix="trtflow-bench-") as work:
        for case in cases:
            why = beyond_limits(case, layout, None) or (
                ONE_AT_A_TIME.format(batch=case.batch_size) if case.batch_size > 1 else None)
            if why:
                results[case] = {"status": f"not run: {why}"}
                continue
            dataset, report = Path(work) / f"{case.input_len}-{case.output_len}.jsonl", Path(work) / "report.json"
            trtllm_bench_dataset(dataset, case, num_runs, layout["vocab_size"])
            argv = trtllm_bench_argv(program, model, hf_dir, Path(work), engine_dir, dataset, num_runs, warm_up,
                                     report)
            print("benchmark:", " ".join(argv), flush=True)
            proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            print(proc.stdout, end="", flush=True)
            if proc.returncode != 0 or not report.is_file():
                raise BenchmarkToolError(f"trtllm-bench failed (exit {proc.returncode}) on input {case.input_len} / "
                                         f"output {case.output_len}; its output is above in this log")
            results[case] = parse_report(json.loads(report.read_text()), case)
            report.unlink()
    return results


def find_trtllm_bench(configured: str | None) -> str | None:
    """trtllm.benchmark_tool, else trtllm-bench beside this Python or on PATH (the wheel's console script)."""
    from ...infra.launch import find_program

    if configured:
        return configured if os.access(configured, os.X_OK) else None
    return find_program(TRTLLM_BENCH)


def measure(tool: str, engine_dir: str, settings: dict, hf_dir: str | None, model: str,
            cases: list[tuple[int, int, int]], warm_up: int, num_runs: int, duration: float
            ) -> tuple[dict, dict[tuple[int, int, int], dict]]:
    """The engine's layout and, for each (batch, input, output), what `tool` measured or why it did not run; the
    engine checked first as the runner checks it (its manifest, TensorRT-LLM version and GPU)."""
    from ...formats.artifact import read_json, verify_manifest
    from .build import installed_version
    from .runner import check_provenance, engine_layout

    verify_manifest(engine_dir)
    check_provenance(Path(engine_dir), installed_version())
    config = read_json(Path(engine_dir) / "config.json")
    layout = engine_layout(config)
    if tool == GPT_SESSION_BENCHMARK:
        program = find_gpt_session_benchmark(settings.get("benchmark_tool"), settings.get("examples_dir"))
        where = f"not on PATH nor under trtllm.examples_dir's checkout at {BUILT_AT}"
        fix = "build it with TensorRT-LLM v0.8.0's `scripts/build_wheel.py --benchmarks` and set trtllm.benchmark_tool"
    else:
        program = find_trtllm_bench(settings.get("benchmark_tool"))
        where, fix = "not on PATH", "install tensorrt_llm 1.2 in this environment (its console scripts include it)"
    if not program:
        raise BenchmarkToolError(f"{tool} not found (trtllm.benchmark_tool: {settings.get('benchmark_tool')}; "
                                 f"{where}): {fix}")
    typed = [Case(*case) for case in cases]
    if tool == GPT_SESSION_BENCHMARK:
        measured = run_gpt_session_benchmark(program, engine_dir, config, typed, warm_up, num_runs, duration)
    else:
        measured = run_trtllm_bench(program, engine_dir, config, hf_dir, model, typed, warm_up, num_runs)
    return layout, {(c.batch_size, c.input_len, c.output_len): measured[c] for c in typed}
