"""docs/benchmarks/current.csv: the figures that hold now, one row per system, device, model, weights and case.

Benchmark scripts write rows in these columns (`gpu_speed.py --current FILE`); `merge` puts a run's rows in place
of the rows with the same key and keeps the rest; `recipe` writes the published figures of TensorRT-LLM v0.8.0's
GPT example; `seed-table` writes the ROUGE-1 of a run's engine and of Hugging Face from a seed_table.json.

    python3 benchmarks/current.py merge OUT/current.csv
    python3 benchmarks/current.py recipe
    python3 benchmarks/current.py seed-table OUT/demo/seed_table.json --device "NVIDIA H200" --commit HASH
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CURRENT = ROOT / "docs" / "benchmarks" / "current.csv"
COLUMNS = ["system", "device", "model", "weights", "tp", "batch_size", "input_len", "output_len", "latency_ms",
           "tokens_per_s", "ttft_ms", "tpot_ms", "peak_mem_mb", "rouge1", "date", "commit", "measured_by"]
KEY = ("system", "device", "model", "weights", "tp", "batch_size", "input_len", "output_len")
RECIPE_SYSTEM = "TensorRT-LLM v0.8.0 (published)"


def shown(value) -> str:
    """Floats to four decimals, None and NaN as empty cells."""
    if value is None or (isinstance(value, float) and value != value):
        return ""
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def read(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def write(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({column: shown(row.get(column)) for column in COLUMNS})


def merge(new: list[dict], path: Path = CURRENT) -> None:
    """The new rows replace the rows of the same key; the order is the old file's, new keys at the end."""
    key = lambda row: tuple(str(row.get(column, "")) for column in KEY)  # noqa: E731
    fresh = {key(row): row for row in new}
    kept = [fresh.pop(key(row), row) for row in read(path)]
    write(path, kept + list(fresh.values()))
    print(f"{path}: {len(new)} rows from this run, {len(kept) + len(fresh)} in all")


def recipe_rows() -> list[dict]:
    sys.path.insert(0, str(ROOT / "workflow" / "scripts"))
    from trtflow import seed_recipe

    base = {"system": RECIPE_SYSTEM, "device": seed_recipe.DEVICE, "model": seed_recipe.MODEL,
            "weights": seed_recipe.DTYPE, "measured_by": "the GPT example's README (gptSessionBenchmark)"}
    rows = [{**base, "tp": case.tp, "batch_size": case.batch_size, "input_len": case.input_len,
             "output_len": case.output_len, "latency_ms": case.latency_ms, "tokens_per_s": case.tokens_per_s,
             "peak_mem_mb": case.peak_mem_gb * 1e9 / 2**20 if case.peak_mem_gb is not None else None}
            for case in seed_recipe.CASES]
    summarize = seed_recipe.SUMMARIZE
    accuracy = {**base, "tp": 1, "batch_size": summarize["batch_size"], "input_len": summarize["max_input_length"],
                "output_len": summarize["output_len"], "measured_by": "the GPT example's README (summarize.py)"}
    rows += [{**accuracy, "rouge1": seed_recipe.ROUGE.engine_rouge1},
             {**accuracy, "system": "Hugging Face (published)", "rouge1": seed_recipe.ROUGE.hf_rouge1}]
    return rows


def seed_table_rows(path: Path, device: str, commit: str, date: str) -> list[dict]:
    """ROUGE-1 of each tp's engine and of Hugging Face, as results/{model}/seed_table.json holds them."""
    table = json.loads(path.read_text())
    context = table["context"]
    summarize = context["summarize"]
    base = {"device": device, "model": f"{table['model']} ({context['source_name']})",
            "weights": context["storage_type"], "batch_size": summarize["batch_size"],
            "input_len": summarize["max_input_length"], "output_len": summarize["output_len"], "date": date,
            "commit": commit, "measured_by": "benchmarks/seed_table_gpu.sh (results/{model}/seed_table.json)"}
    rows = []
    for entry in table["accuracy"]:
        rows.append({**base, "system": f"trtflow {context['backend']}", "tp": entry["tp"],
                     "rouge1": entry["engine"]["rouge1"]})
        if entry.get("hf"):
            rows.append({**base, "system": "Hugging Face generate", "tp": entry["tp"], "rouge1": entry["hf"]["rouge1"]})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    merged = commands.add_parser("merge", help="a run's current.csv rows into docs/benchmarks/current.csv")
    merged.add_argument("csv", type=Path)
    commands.add_parser("recipe", help="the recipe's published figures")
    seed = commands.add_parser("seed-table", help="ROUGE-1 rows from a seed_table.json")
    seed.add_argument("json", type=Path)
    seed.add_argument("--device", required=True)
    seed.add_argument("--commit", required=True)
    seed.add_argument("--date", default=datetime.date.today().isoformat())
    args = parser.parse_args()
    if args.command == "merge":
        merge(read(args.csv))
    elif args.command == "recipe":
        merge(recipe_rows())
    else:
        merge(seed_table_rows(args.json, args.device, args.commit, args.date))


if __name__ == "__main__":
    main()
