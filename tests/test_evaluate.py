"""ROUGE against hand-computed values, the accuracy gate, and the benchmark CSV."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT
from test_runtime import TINY_TOKEN_IDS, engine_flags
from trtflow.backends.torch.build import build
from trtflow.evaluation import rouge
from trtflow.formats import cmodel
from trtflow.formats.artifact import ArtifactError, write_json
from trtflow.stages import accuracy_gate as gate
from trtflow.stages import benchmark as bench


def test_rouge_matches_hand_computed_values():
    # pred: the cat sat on the mat / ref: the cat lay on the mat
    # unigrams: 5 of 6 match both ways → F 83.33; bigrams: 3 of 5 → 60; LCS 5 of 6 → 83.33
    scores = rouge.score(["the cat sat on the mat"], ["the cat lay on the mat"])
    assert scores["rouge1"] == pytest.approx(500 / 6)
    assert scores["rouge2"] == pytest.approx(60.0)
    assert scores["rougeL"] == pytest.approx(500 / 6)
    assert scores["rougeLsum"] == pytest.approx(500 / 6)


def test_rouge_mean_and_per_sample():
    # second pair shares nothing; rouge_score lower-cases and drops punctuation
    scores = rouge.score(["The cat sat on the mat.", "a b c"], ["the cat lay on the mat", "d e f"])
    assert [s["rouge1"] for s in scores["per_sample"]] == pytest.approx([500 / 6, 0.0])
    assert scores["mean"]["rouge1"] == pytest.approx(250 / 6)
    assert 0 <= scores["rouge1"] <= 500 / 6


def test_rouge_aggregate_is_seeded():
    """The bootstrap's resampling is seeded: another process, and a global RNG moved on, give the same scores."""
    import random

    preds, refs = ["a b c d", "a b", "c d e", "x y"], ["a b c", "a c", "c d", "y z"]
    random.seed(12345)
    random.random()
    here = rouge.aggregate(preds, refs)
    code = ("import json, sys; from trtflow.evaluation import rouge; "
            f"print(json.dumps(rouge.aggregate({preds!r}, {refs!r}), sort_keys=True))")
    there = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONPATH": str(ROOT / "workflow" / "scripts"), "PYTHONHASHSEED": "7"})
    assert json.loads(there.stdout) == json.loads(json.dumps(here, sort_keys=True))


def test_rouge_equals_a_transcription_of_the_seeded_reference_algorithm():
    """summarize.py: evaluate's rouge = rouge_score F-measures, BootstrapAggregator (1000 resamples, 95% interval,
    the median reported), numpy seeded with 0 once before compute(); rouge types in their listed order."""
    import numpy as np
    from rouge_score import rouge_scorer

    preds = ["the cat sat on the mat", "a quick brown fox", "rain in spain", "hello world again", "x y z"]
    refs = ["the cat is on the mat", "the quick brown fox jumps", "the rain in spain falls", "hello there", "x z"]
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL", "rougeLsum"], use_stemmer=False)
    scores = [scorer.score(r, p) for p, r in zip(preds, refs, strict=True)]
    np.random.seed(0)
    expected = {}
    for kind in ("rouge1", "rouge2", "rougeL", "rougeLsum"):
        matrix = np.array([[s[kind].precision, s[kind].recall, s[kind].fmeasure] for s in scores])
        means = np.array([matrix[np.random.choice(np.arange(len(matrix)), size=len(matrix))].mean(axis=0)
                          for _ in range(1000)])
        expected[kind] = float(np.percentile(means, [2.5, 50, 97.5], axis=0)[1][2] * 100)
    assert rouge.aggregate(preds, refs) == pytest.approx(expected, abs=1e-9)
    plain = {k: float(np.mean([s[k].fmeasure for s in scores]) * 100) for k in expected}
    assert rouge.score(preds, refs)["mean"] == pytest.approx(plain, abs=1e-9)


def test_rouge_per_sample_scores_equal_rouge_scorers_own():
    """The transcribed scorer (no nltk) against rouge_score's RougeScorer itself, precision, recall and F for every
    type, on texts with repeats, punctuation, case, digits, several lines (rougeLsum's sentences) and empty ones."""
    import random

    from rouge_score import rouge_scorer

    words = ["the", "cat", "sat", "on", "mat", "The", "CAT.", "a", "dog's", "42", "x-y", ",", "\n", "\n\n", "é"]
    rng = random.Random(0)
    texts = ["", " ", "\n", "... !"] + [" ".join(rng.choice(words) for _ in range(rng.randrange(1, 40)))
                                           for _ in range(300)]
    scorer = rouge_scorer.RougeScorer(list(rouge.ROUGE_TYPES), use_stemmer=False)
    for target, prediction in zip(texts, texts[1:] + texts[:1], strict=True):
        assert rouge._scores(target, prediction) == scorer.score(target, prediction), (target, prediction)


def _rouge_json(engine_scores, hf_scores):
    def side(scores):
        return {"rouge1": sum(scores) / len(scores), "per_sample": [{"rouge1": s} for s in scores]}

    return {"engine": side(engine_scores), "hf": side(hf_scores) if hf_scores else None}


def test_gate_passes_equal_and_fails_below_threshold():
    assert gate.evaluate_gate(_rouge_json([40, 50, 60], [40, 50, 60]), 14, 3)["passed"]
    verdict = gate.evaluate_gate(_rouge_json([10, 12, 11], None), 14, 3)
    assert not verdict["passed"] and "below the threshold 14" in verdict["failures"][0]


def test_gate_fails_an_engine_clearly_worse_than_hf():
    engine = [40, 42, 38, 41, 39, 40]
    hf = [60, 61, 59, 62, 58, 60]
    verdict = gate.evaluate_gate(_rouge_json(engine, hf), 14, 3)
    assert not verdict["passed"]
    assert "worse than Hugging Face" in verdict["failures"][0]


def test_gate_tolerates_noise_within_k_standard_errors():
    engine = [50, 70, 40, 65, 55, 60]
    hf = [55, 65, 45, 60, 60, 58]
    assert gate.evaluate_gate(_rouge_json(engine, hf), 14, 3)["passed"]


@pytest.mark.parametrize("engine, hf, threshold, k, passed", [
    ([14, 14], None, 14, 3, True),  # exactly at the threshold
    ([13.99, 14], None, 14, 3, False),  # just under it
    ([50, 50], [51, 53], 14, 2, True),  # mean difference −2 = −k·SE exactly (SE 1)
    ([50, 50], [51, 53], 14, 1.99, False),  # beyond k·SE
    ([50, 50], [50, 50], 14, 3, True),  # SE 0, no difference
    ([50, 50], [50.5, 50.5], 14, 3, False),  # SE 0, consistently worse than HF
])
def test_gate_boundaries(engine, hf, threshold, k, passed):
    assert gate.evaluate_gate(_rouge_json(engine, hf), threshold, k)["passed"] is passed


def test_gate_cli_exits_with_the_message_and_writes_nothing(tmp_path, capsys):
    write_json(tmp_path / "rouge.json", _rouge_json([5, 6], [50, 60]), checksum=True)
    with pytest.raises(SystemExit) as exit_info:
        gate.main(["--rouge", str(tmp_path / "rouge.json"), "--out", str(tmp_path / "accuracy.ok")])
    assert "accuracy gate FAILED" in str(exit_info.value) and "below the threshold" in str(exit_info.value)
    assert not (tmp_path / "accuracy.ok").exists()


def test_gate_refuses_an_edited_rouge_json(tmp_path):
    """ROUGE-1 raised to 99 by hand once passed the gate: rouge.json now carries a sha256 the gate verifies."""
    rouge = tmp_path / "rouge.json"
    write_json(rouge, _rouge_json([5, 6], [50, 60]), checksum=True)
    edited = json.loads(rouge.read_text())
    edited["engine"]["rouge1"] = 99.0
    rouge.write_text(json.dumps(edited))
    with pytest.raises(ArtifactError, match=r"rouge.json does not match the sha256 in rouge.json.sha256 \(modified"):
        gate.main(["--rouge", str(rouge), "--threshold", "14", "--out", str(tmp_path / "accuracy.ok")])
    rouge.unlink(), (tmp_path / "rouge.json.sha256").unlink()
    rouge.write_text(json.dumps(edited))
    with pytest.raises(ArtifactError, match="has no rouge.json.sha256"):
        gate.main(["--rouge", str(rouge), "--out", str(tmp_path / "accuracy.ok")])
    assert not (tmp_path / "accuracy.ok").exists()


def test_benchmark_csv(tiny_gpt2, tmp_path, capsys):
    source = cmodel.convert(tiny_gpt2, tmp_path / "c", 1, "float32", progress=False)
    engine = build(source, tmp_path / "e", engine_flags(), "0" * 10, TINY_TOKEN_IDS)
    out = tmp_path / "benchmark.csv"
    started = time.perf_counter()
    bench.main(["--engine-dir", str(engine), "--model", "tiny", "--batch-size", "1;16", "--input-output-len",
                "8,4;80,4", "--warm-up", "1", "--num-runs", "3", "--out", str(out)])
    wall_s = time.perf_counter() - started
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == bench.COLUMNS
    assert [(r["batch_size"], r["input_len"]) for r in rows] == [("1", "8"), ("1", "80"), ("16", "8"), ("16", "80")]
    ok = rows[0]
    assert ok["status"] == "ok" and int(ok["iterations"]) == 3
    assert float(ok["tokens_per_s"]) == pytest.approx(1 * 4 / (float(ok["latency_ms"]) / 1000), rel=1e-3)
    assert float(ok["p50_ms"]) <= float(ok["p99_ms"])
    assert rows[1]["status"].startswith("not run: input length 80 > the engine's max_input_len 64")
    assert rows[2]["status"].startswith("not run: batch size 16 > the engine's max_batch_size 8")
    assert rows[1]["latency_ms"] == "" and rows[1]["tokens_per_s"] == ""
    assert "[BENCHMARK] batch_size 1 input_length 8 output_length 4 latency(ms)" in capsys.readouterr().out
    assert (ok["dtype"], ok["engine_dtype"], ok["cuda_graphs"]) == ("float32", "float32", "False")
    for row in rows[:1]:  # invariants that tie the columns to each other and to the clock
        latency, ttft, tpot = float(row["latency_ms"]), float(row["ttft_ms"]), float(row["tpot_ms"])
        assert 0 < ttft < latency and float(row["p50_ms"]) <= float(row["p90_ms"]) <= float(row["p99_ms"])
        assert tpot * 3 + ttft == pytest.approx(latency, rel=1e-3) and float(row["peak_mem_mb"]) > 0
    assert int(ok["iterations"]) * float(ok["latency_ms"]) / 1000 < wall_s  # the runs happened inside main()
    assert float(ok["load_1m_start"]) >= 0 and float(ok["load_1m_end"]) >= 0 and int(ok["cpus"]) >= 1


def test_benchmark_csv_says_which_engine_path_ran(tiny_gpt2, tmp_path):
    source = cmodel.convert(tiny_gpt2, tmp_path / "c", 1, "float16", progress=False)
    engine = build(source, tmp_path / "e", engine_flags(decode="cuda-graph"), "0" * 10, TINY_TOKEN_IDS)
    out = tmp_path / "benchmark.csv"
    bench.main(["--engine-dir", str(engine), "--batch-size", "1", "--input-output-len", "8,4", "--warm-up", "0",
                "--num-runs", "1", "--out", str(out)])
    (row,) = csv.DictReader(out.open())
    assert (row["dtype"], row["engine_dtype"], row["cuda_graphs"]) == ("float32", "float16", "True")


@pytest.mark.parametrize("settings_edit", ["as trained", "no eos_token named", "clean-up on"])
def test_the_fast_tokenizer_gives_transformers_ids_and_texts(settings_edit, demo_resources, tmp_path):
    """Engine jobs tokenize with `tokenizers` (no transformers import); it must agree with AutoTokenizer."""
    import shutil

    from trtflow.evaluation.datasets import read_dataset
    from trtflow.evaluation.prompts import summarize_prompt
    from trtflow.evaluation.tokenizer import FastTokenizer, TransformersTokenizer, encode

    hf = tmp_path / "hf"
    shutil.copytree(demo_resources / "models/demo/hf", hf)
    settings = json.loads((hf / "tokenizer_config.json").read_text())
    if settings_edit == "no eos_token named":
        del settings["eos_token"], settings["bos_token"], settings["unk_token"]
    if settings_edit == "clean-up on":
        settings["clean_up_tokenization_spaces"] = True
    (hf / "tokenizer_config.json").write_text(json.dumps(settings))
    fast, slow = FastTokenizer(hf), TransformersTokenizer(hf)
    assert (fast.eos_token_id, fast.pad_token_id) == (slow.eos_token_id, slow.pad_token_id) != (None, None)
    rows = read_dataset(demo_resources / "datasets/demo/test.jsonl")[:20]
    texts = [summarize_prompt(r["article"]) for r in rows] + [r["highlights"] + " I'm sure it's n't , ok ." for r in rows]
    for text in texts:
        ids = encode(fast, text, 64)
        assert ids == encode(slow, text, 64) and len(ids) == min(64, len(fast.encode(text)))
        with_end = ids + [fast.eos_token_id] + ids[:5]
        assert fast.decode(with_end) == slow.decode(with_end)


RANKS_SCRIPT = """
import json, sys, time
import torch
from trtflow.generation import GenerationResult
from trtflow.infra.dist import all_reduce, init_distributed, shutdown
from trtflow.stages import benchmark

dist = init_distributed()
if dist.rank == 1:  # this rank's clock runs 50x fast: alone, it would stop long before rank 0
    real = time.perf_counter
    benchmark.time.perf_counter = lambda: real() * 50

class Engine:  # a collective per call, as a tensor-parallel engine has
    device = torch.device("cpu")
    def check_limits(self, batch, steps): pass
    def generate(self, batch, steps, sampling=None, ignore_eos=False):
        time.sleep(0.02)
        all_reduce(torch.ones(1))
        return GenerationResult([[0] * steps for _ in batch], 0.001, 0.02, {})

row = benchmark.measure(Engine(), 1, 4, 3, warm_up=0, num_runs=1, duration=0.5, vocab_size=10)
open(sys.argv[1] + f".{dist.rank}", "w").write(json.dumps(row["iterations"]))
shutdown()
"""


def test_every_rank_runs_the_same_number_of_timed_runs(tmp_path):
    """With a duration, each rank once read its own clock: one stopped while the other waited in a collective
    for a run that never came. Rank 0's decision now holds for all."""
    script = tmp_path / "ranks.py"
    script.write_text(RANKS_SCRIPT)
    out = tmp_path / "iterations"
    subprocess.run([sys.executable, "-m", "trtflow.infra.launch", "--gpus", "0", "-n", "2", str(script), str(out)],
                   check=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT / "workflow" / "scripts")})
    counts = [json.loads(Path(f"{out}.{rank}").read_text()) for rank in (0, 1)]
    assert counts[0] == counts[1] >= 10  # 0.5 s of 20 ms runs, on rank 0's clock


# ------------------------------------------------------------------ the seed table's inputs


def seed_inputs(tmp_path: Path, rouge1: float = 30.0) -> tuple[list[dict], dict]:
    """A rouge.json and a benchmark.csv with the recipe's tp-1 cases, as the DAG writes them."""
    side = {"rouge1": rouge1, "rouge2": 10.0, "rougeL": 20.0, "rougeLsum": 25.0,
            "per_sample": [{"rouge1": rouge1 + d} for d in (-1.0, 0.0, 1.0)]}
    write_json(tmp_path / "rouge.json", {"engine": side, "hf": side, "device": "cpu"}, checksum=True)
    rows = [{"batch_size": 1, "input_len": 60, "output_len": out, "status": "ok", "latency_ms": 10.0 * out,
             "tokens_per_s": 100.0, "peak_mem_mb": 1000.0, "peak_mem_kind": "gpu_device_used", "device": "X",
             "dtype": "float16", "engine_dtype": "float16", "backend": "trtllm", "tool": "gptSessionBenchmark"}
            for out in (20, 100)]
    bench.write_csv(str(tmp_path / "benchmark.csv"), rows)
    runs = [{"tp": 1, "rouge": str(tmp_path / "rouge.json"), "benchmarks": [str(tmp_path / "benchmark.csv")]}]
    context = {"model": "m", "source": "hf", "source_name": "openai-community/gpt2-medium", "backend": "trtllm",
               "storage_type": "float16", "dataset": "cnn_dailymail",
               "summarize": {"max_ite": 20, "batch_size": 1, "output_len": 100, "max_input_length": 923},
               "threshold": 14, "k": 3, "shape": {"n_layer": 24, "n_embd": 1024, "n_head": 16, "vocab_size": 50257}}
    return runs, context


def test_the_seed_table_of_a_recipe_like_run_names_only_what_differs(tmp_path):
    """gpt2-medium, cnn_dailymail, the recipe's settings, gptSessionBenchmark: left to differ are the device and
    the backend line; memory measured as the recipe does gets its ratio."""
    from trtflow.stages.seed_table import build_table

    runs, context = seed_inputs(tmp_path)
    table = build_table("m", runs, context)
    assert [line.split(":")[0] for line in table["differences"]] == ["device", "backend", "the recipe's tp 2 not in "
                                                                                            "this run (config `tp`"]
    row = table["speed"][0]
    assert row["peak_mem_ratio"] == pytest.approx(1000 * 2**20 / 1e9 / 23.06)
    assert row["latency_ratio"] == pytest.approx(200 / 39.47)


@pytest.mark.parametrize("damage, message", [
    ("drop a case", "tp 1: no benchmark row for batch 1, in 60 / out 100; remove the run's benchmark files and rerun"),
    ("edit rouge.json", "rouge.json"),
])
def test_a_seed_table_input_that_is_not_what_the_dag_wrote_is_one_line(damage, message, tmp_path):
    runs, context = seed_inputs(tmp_path)
    if damage == "drop a case":
        rows = list(csv.DictReader((tmp_path / "benchmark.csv").open()))
        bench.write_csv(str(tmp_path / "benchmark.csv"), rows[:1])
    else:
        (tmp_path / "rouge.json").write_text((tmp_path / "rouge.json").read_text().replace("30.0", "99.0"))
    proc = subprocess.run([sys.executable, "-m", "trtflow.stages.seed_table", "--model", "m", "--runs",
                           json.dumps(runs), "--context", json.dumps(context), "--out-json", str(tmp_path / "t.json"),
                           "--out-md", str(tmp_path / "t.md")], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT / "workflow" / "scripts")})
    assert proc.returncode == 1 and "Traceback" not in proc.stderr and message in proc.stderr, proc.stderr[-2000:]
    assert not (tmp_path / "t.json").exists() and not (tmp_path / "t.md").exists()
