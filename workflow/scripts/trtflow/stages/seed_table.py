"""The recipe's table for one model: every tp's ROUGE, gate and benchmark cases beside the recipe's figures.

Reads what the DAG made (rouge.json, benchmark.csv, and seed-benchmark.csv where the config's benchmark grid
lacks one of the recipe's cases) and writes seed_table.json (checksummed, the report reads it) and
seed_table.md. The gate's verdict is computed from rouge.json by the gate's own code, so a failed gate still
shows in the table. Ratios are this run / the recipe.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .. import seed_recipe
from ..errors import run_stage
from ..formats.artifact import ArtifactError, atomic_file, read_json, verify_checksum, verify_manifest, write_json
from ..formats.hf_config import read_hf_config
from .accuracy_gate import evaluate_gate
from .report import read_rows

ROUGE_KEYS = ("rouge1", "rouge2", "rougeL", "rougeLsum")
# gptSessionBenchmark's gpu_peak_mem(gb): the device's total − free memory, in units of 1e9 bytes
RECIPE_MEMORY_KIND = "gpu_device_used"


def ratio(value: float | None, recipe: float | None) -> float | None:
    return value / recipe if value is not None and recipe else None


def accuracy_row(tp: int, rouge_path: str, threshold: float, k: float) -> dict:
    rouge = read_json(verify_checksum(rouge_path))
    gate = evaluate_gate(rouge, threshold, k)
    sides = {side: {key: rouge[side][key] for key in ROUGE_KEYS} for side in ("engine", "hf") if rouge.get(side)}
    margin = {"rouge1_minus_threshold": gate["rouge1"] - threshold}
    if "mean_diff" in gate:
        margin.update({"mean_diff": gate["mean_diff"], "se_diff": gate["se_diff"], "n": gate["n"]})
    return {"tp": tp, "device": rouge.get("device"), "examples": len(rouge["engine"]["per_sample"]), **sides,
            "gate": {"passed": gate["passed"], "failures": gate["failures"], "threshold": threshold, "k": k, **margin},
            "recipe": {"engine_rouge1": seed_recipe.ROUGE.engine_rouge1, "hf_rouge1": seed_recipe.ROUGE.hf_rouge1},
            "engine_rouge1_ratio": ratio(rouge["engine"]["rouge1"], seed_recipe.ROUGE.engine_rouge1),
            "hf_rouge1_ratio": ratio(sides["hf"]["rouge1"], seed_recipe.ROUGE.hf_rouge1) if "hf" in sides else None}


def read_benchmark_rows(paths: list[str]) -> dict[tuple[int, int, int], dict]:
    rows = {}
    for path in paths:
        for row in read_rows(path):
            rows.setdefault((int(row["batch_size"]), int(row["input_len"]), int(row["output_len"])), row)
    return rows


def number(text: str) -> float | None:
    return float(text) if text not in (None, "") else None


def benchmark_row(case: seed_recipe.RecipeCase, row: dict | None) -> dict:
    recipe = {"latency_ms": case.latency_ms, "tokens_per_s": case.tokens_per_s, "peak_mem_gb": case.peak_mem_gb}
    out = {"tp": case.tp, "batch_size": case.batch_size, "input_len": case.input_len, "output_len": case.output_len,
           "recipe": recipe}
    if row is None:  # the DAG always makes the case; a file without it was written by something else
        raise ArtifactError(f"tp {case.tp}: no benchmark row for batch {case.batch_size}, in {case.input_len} / out "
                         f"{case.output_len}; remove the run's benchmark files and rerun")
    out.update({"status": row["status"], "device": row["device"], "dtype": row["dtype"],
                "engine_dtype": row["engine_dtype"], "backend": row["backend"],
                "tool": row.get("tool") or "trtflow"})
    if row["status"] != "ok":
        return out
    latency, tokens = number(row["latency_ms"]), number(row["tokens_per_s"])
    peak_mb, kind = number(row["peak_mem_mb"]), row["peak_mem_kind"]
    peak_gb = peak_mb * 2**20 / 1e9 if peak_mb is not None else None
    out.update({"latency_ms": latency, "tokens_per_s": tokens, "peak_mem_gb": peak_gb, "peak_mem_kind": kind,
                "latency_ratio": ratio(latency, case.latency_ms), "tokens_per_s_ratio": ratio(tokens, case.tokens_per_s),
                # memory compared only where it was measured as the recipe measured it
                "peak_mem_ratio": ratio(peak_gb, case.peak_mem_gb) if kind == RECIPE_MEMORY_KIND else None})
    return out


def shape_text(shape: dict) -> str:
    return (f"{shape['n_layer']} layers, {shape['n_embd']} wide, {shape['n_head']} heads, vocabulary "
            f"{shape['vocab_size']}") if shape else "shape unknown"


def differences(context: dict, accuracy: list[dict], speed: list[dict]) -> list[str]:
    """What this run does otherwise than the recipe, each as one line."""
    lines = []
    shape = context.get("shape") or {}
    if context["source"] == "demo" or seed_recipe.MODEL not in str(context["source_name"]):
        same = "gpt2-medium's shape" if shape == seed_recipe.SHAPE else shape_text(shape)
        lines.append(f"model: {context['source_name']} ({same}), not {seed_recipe.MODEL} "
                     f"({shape_text(seed_recipe.SHAPE)})")
    if context["dataset"] != "cnn_dailymail":
        lines.append(f"dataset: {context['dataset']} (synthetic, made by the workflow), not {seed_recipe.DATASET}")
    changed = [f"{key} {value} (recipe {seed_recipe.SUMMARIZE[key]})" for key, value in context["summarize"].items()
               if value != seed_recipe.SUMMARIZE[key]]
    if changed:
        lines.append("summarize settings: " + ", ".join(changed))
    if context["threshold"] != seed_recipe.ROUGE.threshold:
        lines.append(f"ROUGE-1 threshold {context['threshold']} (recipe {seed_recipe.ROUGE.threshold:g})")
    devices = sorted({row["device"] for row in speed} | {str(row["device"]) for row in accuracy if not speed})
    lines.append(f"device: {', '.join(devices)}, not {seed_recipe.DEVICE}")
    tools = sorted({row["tool"] for row in speed})
    lines.append(f"backend: {context['backend']}; benchmark measured by {', '.join(tools) or 'nothing'}, "
                 f"not {seed_recipe.BACKEND}")
    dtypes = sorted({f"{row['engine_dtype']} engine computed in {row['dtype']}" for row in speed})
    if dtypes and dtypes != [f"{seed_recipe.DTYPE} engine computed in {seed_recipe.DTYPE}"]:
        lines.append(f"dtype: {', '.join(dtypes)} (recipe {seed_recipe.DTYPE})")
    kinds = sorted({row["peak_mem_kind"] for row in speed if row.get("peak_mem_kind")} - {RECIPE_MEMORY_KIND})
    if kinds:
        lines.append(f"peak memory measured as {', '.join(kinds)}, not the device's used memory as gptSessionBenchmark "
                     "does: no memory ratio")
    run_tps = sorted({row["tp"] for row in accuracy})
    missing = [tp for tp in run_tps if not seed_recipe.cases_at(tp)]
    if missing:
        lines.append(f"the recipe has no benchmark at tp {', '.join(map(str, missing))}")
    unrun = sorted({case.tp for case in seed_recipe.CASES} - set(run_tps))
    if unrun:
        lines.append(f"the recipe's tp {', '.join(map(str, unrun))} not in this run (config `tp`: "
                     f"{', '.join(map(str, run_tps))}; a machine with fewer GPUs runs fewer)")
    return lines


def build_table(model: str, runs: list[dict], context: dict) -> dict:
    accuracy = [accuracy_row(run["tp"], run["rouge"], context["threshold"], context["k"]) for run in runs]
    speed = []
    for run in runs:
        rows = read_benchmark_rows(run["benchmarks"])
        for case in seed_recipe.cases_at(run["tp"]):
            speed.append(benchmark_row(case, rows.get((case.batch_size, case.input_len, case.output_len))))
    return {"model": model, "context": context,
            "recipe": {"model": seed_recipe.MODEL, "backend": seed_recipe.BACKEND, "device": seed_recipe.DEVICE,
                       "dataset": seed_recipe.DATASET, "dtype": seed_recipe.DTYPE, "summarize": seed_recipe.SUMMARIZE},
            "accuracy": accuracy, "speed": speed, "differences": differences(context, accuracy, speed)}


def cell(value, digits: int = 2) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def ratio_cell(value) -> str:
    return "–" if value is None else f"×{value:.2f}"


def markdown(table: dict) -> str:
    recipe = table["recipe"]
    lines = [f"# The recipe's table: {table['model']}", "",
             f"This run beside the recipe ({recipe['model']}, {recipe['backend']}, {recipe['dataset']}, "
             f"{recipe['device']}). Ratios are this run / the recipe. Made by trtflow from rouge.json and the "
             "benchmark files of each tp.", "",
             "## Accuracy", "",
             "| tp | side | ROUGE-1 | ROUGE-2 | ROUGE-L | ROUGE-Lsum | recipe ROUGE-1 | ratio |",
             "|---|---|---|---|---|---|---|---|"]
    for row in table["accuracy"]:
        for side, label in (("engine", "engine"), ("hf", "HF")):
            if side in row:
                lines.append(f"| {row['tp']} | {label} | " + " | ".join(cell(row[side][k]) for k in ROUGE_KEYS)
                             + f" | {cell(row['recipe'][side + '_rouge1'])} | {ratio_cell(row[side + '_rouge1_ratio'])} |")
    lines += ["", "| tp | gate | ROUGE-1 − threshold | engine − HF ROUGE-1 (mean ± SE, n) |", "|---|---|---|---|"]
    for row in table["accuracy"]:
        gate = row["gate"]
        paired = (f"{gate['mean_diff']:+.2f} ± {gate['se_diff']:.2f} ({gate['n']}; fails below −{gate['k']:g} SE)"
                  if "mean_diff" in gate else "no HF side")
        verdict = "passed" if gate["passed"] else "FAILED: " + "; ".join(gate["failures"])
        lines.append(f"| {row['tp']} | {verdict} | {gate['rouge1_minus_threshold']:+.2f} (threshold "
                     f"{gate['threshold']:g}) | {paired} |")
    lines += ["", "## Speed (the recipe's gptSessionBenchmark cases)", "",
              "| tp | batch | in | out | latency ms | recipe ms | ratio | tokens/s | recipe tokens/s | ratio "
              "| peak memory GB | recipe GB | ratio | measured by |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in table["speed"]:
        head = f"| {row['tp']} | {row['batch_size']} | {row['input_len']} | {row['output_len']} |"
        recipe_row = row["recipe"]
        if row["status"] != "ok":
            lines.append(f"{head} {row['status']} | {cell(recipe_row['latency_ms'])} | – | – | "
                         f"{cell(recipe_row['tokens_per_s'])} | – | – | {cell(recipe_row['peak_mem_gb'])} | – | "
                         f"{row['tool']} |")
            continue
        lines.append(f"{head} {cell(row['latency_ms'])} | {cell(recipe_row['latency_ms'])} | "
                     f"{ratio_cell(row['latency_ratio'])} | {cell(row['tokens_per_s'])} | "
                     f"{cell(recipe_row['tokens_per_s'])} | {ratio_cell(row['tokens_per_s_ratio'])} | "
                     f"{cell(row['peak_mem_gb'])} ({row['peak_mem_kind']}) | {cell(recipe_row['peak_mem_gb'])} | "
                     f"{ratio_cell(row['peak_mem_ratio'])} | {row['tool']} |")
    lines += ["", "## What differs from the recipe", ""] + [f"- {line}" for line in table["differences"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="The recipe's table for one model (seed_table.md and .json).")
    parser.add_argument("--model", required=True)
    parser.add_argument("--runs", required=True, help="JSON list of {tp, rouge, benchmarks}")
    parser.add_argument("--context", required=True, help="JSON object: this run's model, dataset, backend, gate")
    parser.add_argument("--hf-dir", default=None, help="the model's checkpoint folder (its shape)")
    parser.add_argument("--out-json", required=True)
    parser.add_argument("--out-md", required=True)
    args = parser.parse_args(argv)
    context = json.loads(args.context)
    if args.hf_dir:  # the checkpoint's shape, known once the model rule has made the folder
        verify_manifest(args.hf_dir)
        hf = read_hf_config(Path(args.hf_dir))
        context["shape"] = {key: hf[key] for key in seed_recipe.SHAPE}
    table = build_table(args.model, json.loads(args.runs), context)
    write_json(args.out_json, table, checksum=True)
    with atomic_file(args.out_md) as handle:
        handle.write(markdown(table))
    print(markdown(table))


if __name__ == "__main__":
    run_stage(main)
