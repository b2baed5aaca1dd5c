"""benchmarks/refresh_current.sh, the one command that refreshes docs/benchmarks/current.csv's speed rows with every
baseline in the same run: run for real on the CPU (gpu_speed.py --smoke, a 2-layer model), this tree standing in
for the previous main; and the speed table's previous-main column, written from such rows."""

from __future__ import annotations

import csv
import importlib.util
import os
import subprocess
import sys

from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
import current  # noqa: E402

KERNELS = ["trtflow-cudagraph-triton", "trtflow-cudagraph-triton-int8wo"]


def refresh(tmp_path, previous, *extra):
    env = {**os.environ, "PYTHON": sys.executable, "TMPDIR": str(tmp_path)}
    env.pop("PYTHONPATH", None)
    return subprocess.run(["bash", "benchmarks/refresh_current.sh", str(previous), "0000aaa", "1111bbb",
                           str(tmp_path / "out"), *extra], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)


def test_one_command_measures_main_and_the_previous_main_and_names_each_rows_commit(tmp_path):
    proc = refresh(tmp_path, ROOT, "--smoke", "--num-runs", "1", "--hf-num-runs", "1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = list(csv.DictReader((tmp_path / "out" / "current.csv").open()))
    systems = {(row["system"], row["commit"]) for row in rows}
    torchao = importlib.util.find_spec("torchao") is not None
    assert systems == {*((s, "1111bbb") for s in [*KERNELS, "hf-transformers-generate",
                                                   "hf-transformers-static-compiled"]),
                       *((s + current.PREVIOUS_MAIN, "0000aaa") for s in KERNELS),
                       *([("hf-transformers-static-compiled-torchao-int8wo", "1111bbb")] if torchao else [])}
    for system, _ in systems:  # the smoke cases, each once
        cases = sorted((r["batch_size"], r["input_len"], r["output_len"]) for r in rows if r["system"] == system)
        assert cases == [("1", "8", "4"), ("4", "16", "4")], system
    assert torchao or "torchao: not importable" in proc.stdout


def test_a_previous_tree_without_the_benchmark_is_refused_first_with_the_fix(tmp_path):
    proc = refresh(tmp_path, tmp_path)
    assert proc.returncode == 2 and "holds no benchmarks/gpu_speed.py" in proc.stderr and "git archive" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_the_speed_table_shows_the_previous_main_once_current_csv_holds_its_rows():
    def row(system, weights, batch, input_len, value):
        figure = "latency_ms" if batch == 1 else "tokens_per_s"
        return {"system": system, "device": "NVIDIA H200", "weights": weights, "tp": "1", "batch_size": str(batch),
                "input_len": str(input_len), "output_len": "100", "latency_ms": "", "tokens_per_s": "",
                figure: value}

    main = [row(KERNELS[0], "float16", 1, 60, "45.5"), row(KERNELS[1], "int8 weight-only", 1, 60, "40.25")]
    previous = [row(s + current.PREVIOUS_MAIN, w, 1, 60, v)
                for s, w, v in ((KERNELS[0], "float16", "49.87"), (KERNELS[1], "int8 weight-only", "49.71"))]
    without, beside = current.speed_table(main), current.speed_table(main + previous)
    assert "previous main" not in without[0] and "| trtflow, previous main |" in beside[0]
    assert len(beside[0].split("|")) == len(without[0].split("|")) + 1
    by_label = {line.split("|")[1].strip(): line.split("|")[2:4] for line in beside[2:]}
    assert [c.strip() for c in by_label["fp16, batch 1, in 60 / out 100 (ms)"]] == ["45.50", "49.87"]
    assert [c.strip() for c in by_label["int8 weight-only, batch 1, in 60 / out 100 (ms)"]] == ["40.25", "49.71"]
