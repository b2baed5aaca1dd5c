"""docs/benchmarks/current.csv: the figures that hold now, one row per system, device, model, weights and case.

Benchmark scripts write rows in these columns (`gpu_speed.py --current FILE`); `merge` puts a run's rows in place
of the rows with the same key and keeps the rest; `recipe` writes the published figures of TensorRT-LLM v0.8.0's
GPT example; `seed-table` writes the ROUGE-1 of a run's engine and of Hugging Face from a seed_table.json;
`tables` writes the tables README.md and docs/benchmarks/README.md show between `<!-- current.csv: NAME -->` and
`<!-- end -->` (`--check`: fail where they differ from the CSV).

    python3 benchmarks/current.py merge OUT/current.csv [--systems NAME …] [--previous-main] [--into CSV]
    python3 benchmarks/current.py recipe
    python3 benchmarks/current.py seed-table OUT/demo/seed_table.json --device "NVIDIA H200" --commit HASH
    python3 benchmarks/current.py tables
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CURRENT = ROOT / "docs" / "benchmarks" / "current.csv"
COLUMNS = ["system", "device", "model", "weights", "tp", "batch_size", "input_len", "output_len", "latency_ms",
           "tokens_per_s", "ttft_ms", "tpot_ms", "peak_mem_mb", "rouge1", "date", "commit", "measured_by"]
KEY = ("system", "device", "model", "weights", "tp", "batch_size", "input_len", "output_len")
RECIPE_SYSTEM = "TensorRT-LLM v0.8.0 (published)"
PREVIOUS_MAIN = " (previous main)"  # after trtflow's systems in rows of the commit before, measured beside it


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


def run_rows(path: Path, systems: list[str] | None, previous_main: bool) -> list[dict]:
    """A run's rows to merge: only those of `systems` where given; with previous_main, trtflow's systems renamed
    "NAME (previous main)" (the commit before the one measured beside it, in the same command)."""
    rows = [row for row in read(path) if systems is None or row["system"] in systems]
    if previous_main:
        rows = [{**row, "system": row["system"] + PREVIOUS_MAIN} if row["system"].startswith("trtflow") else row
                for row in rows]
    return rows


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
                "output_len": summarize["output_len"], "model": f"{seed_recipe.MODEL}, {seed_recipe.DATASET}",
                "measured_by": "the GPT example's README (summarize.py)"}
    rows += [{**accuracy, "rouge1": seed_recipe.ROUGE.engine_rouge1},
             {**accuracy, "system": "Hugging Face (published)", "rouge1": seed_recipe.ROUGE.hf_rouge1}]
    return rows


def seed_table_rows(path: Path, device: str, commit: str, date: str) -> list[dict]:
    """ROUGE-1 of each tp's engine and of Hugging Face, as results/{model}/seed_table.json holds them."""
    table = json.loads(path.read_text())
    context = table["context"]
    summarize = context["summarize"]
    base = {"device": device, "model": f"{context['source_name']}, {context['dataset']} dataset",
            "weights": context["storage_type"], "batch_size": summarize["batch_size"],
            "input_len": summarize["max_input_length"], "output_len": summarize["output_len"], "date": date,
            "commit": commit, "measured_by": "results/{model}/seed_table.json of a default run"}
    rows = []
    for entry in table["accuracy"]:
        rows.append({**base, "system": f"trtflow, {context['backend'].split(',')[0]} backend", "tp": entry["tp"],
                     "rouge1": entry["engine"]["rouge1"]})
        if entry.get("hf"):
            rows.append({**base, "system": "Hugging Face generate", "tp": entry["tp"], "rouge1": entry["hf"]["rouge1"]})
    return rows


# The first screen's comparison: (column title, system, device) for gpt2-medium's shape; the recipe's own figures
# come from another GPU and are marked so.
SPEED_COLUMNS = [("trtflow", "trtflow-cudagraph-triton", "NVIDIA H200"),
                 ("trtflow, previous main", "trtflow-cudagraph-triton" + PREVIOUS_MAIN, "NVIDIA H200"),
                 ("HF `generate`", "hf-transformers-generate", "NVIDIA H200"),
                 ("HF static cache, compiled", "hf-transformers-static-compiled", "NVIDIA H200"),
                 ("memory-bandwidth floor", "floor (weights and KV cache read once a step)", "NVIDIA H200"),
                 ("TensorRT-LLM v0.8.0, published (another GPU)", RECIPE_SYSTEM, None)]
SPEED_CASES = [(1, 60, 20), (1, 60, 100), (8, 60, 100), (64, 128, 100)]
# The int8 weight-only rows: the cases shown and each column's system for them (a column without one shows "–").
INT8_CASES = [(1, 60, 100), (64, 128, 100)]
INT8_SYSTEMS = {"trtflow-cudagraph-triton": "trtflow-cudagraph-triton-int8wo",
                "trtflow-cudagraph-triton" + PREVIOUS_MAIN: "trtflow-cudagraph-triton-int8wo" + PREVIOUS_MAIN,
                "hf-transformers-static-compiled": "hf-transformers-static-compiled-torchao-int8wo",
                "floor (weights and KV cache read once a step)": "floor (weights and KV cache read once a step)"}
DOCS = [ROOT / "README.md", ROOT / "docs" / "benchmarks" / "README.md"]


def case_cell(rows: list[dict], system: str | None, device: str | None, weights: str,
              case: tuple[int, int, int]) -> str:
    """Batch 1: the latency in ms; larger batches: tokens/s; "–" where no row holds it."""
    batch, input_len, output_len = case
    column = "latency_ms" if batch == 1 else "tokens_per_s"
    for row in rows:
        if (row["system"], row["weights"], row["tp"], row["batch_size"], row["input_len"], row["output_len"]) == (
                system, weights, "1", str(batch), str(input_len), str(output_len)) and \
                (device is None or row["device"] == device) and row[column]:
            figure = float(row[column])
            if batch > 1:
                return f"{figure:,.0f}"
            return f"{figure:,.1f}" if figure >= 100 else f"{figure:.2f}"
    return "–"


def speed_table(rows: list[dict]) -> list[str]:
    """trtflow against the previous main (once current.csv holds its rows), HF, HF's fast path, the floor and the
    recipe, per case; fp16 and then int8 weight-only."""
    measured = {row["system"] for row in rows}
    columns = [c for c in SPEED_COLUMNS if not c[1].endswith(PREVIOUS_MAIN) or c[1] in measured]
    lines = ["| gpt2-medium shape, tp 1 | " + " | ".join(title for title, _, _ in columns) + " |",
             "|---" * (len(columns) + 1) + "|"]
    for name, weights, cases, system_of in (("fp16", "float16", SPEED_CASES, lambda system: system),
                                            ("int8 weight-only", "int8 weight-only", INT8_CASES, INT8_SYSTEMS.get)):
        for batch, input_len, output_len in cases:
            label = f"{name}, batch {batch}, in {input_len} / out {output_len} ({'ms' if batch == 1 else 'tokens/s'})"
            cells = [case_cell(rows, system_of(system), device, weights, (batch, input_len, output_len))
                     for _, system, device in columns]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def rouge_table(rows: list[dict]) -> list[str]:
    """ROUGE-1 of each engine beside Hugging Face's on the same model, data and device."""
    sides: dict[tuple, dict] = {}
    for row in filter(lambda row: row["rouge1"], rows):
        side = "hf" if row["system"].startswith("Hugging Face") else "engine"
        sides.setdefault((row["model"], row["device"], row["tp"]), {})[side] = row
    lines = ["| engine | tp | model and data | device | ROUGE-1 of the engine | of Hugging Face |",
             "|---|---|---|---|---|---|"]
    for (model, device, tp), pair in sides.items():
        cells = [f"{float(pair[side]['rouge1']):.2f}" if side in pair else "–" for side in ("engine", "hf")]
        name = pair["engine"]["system"] if "engine" in pair else "–"
        lines.append(f"| {name} | {tp} | {model} | {device} | {cells[0]} | {cells[1]} |")
    return lines


FIGURES = ("latency_ms", "tokens_per_s", "ttft_ms", "tpot_ms", "peak_mem_mb", "rouge1")
ALL_COLUMNS = ["system", "device", "weights", "tp", "batch_size", "input_len", "output_len", *FIGURES, "date", "commit"]


def all_rows_table(rows: list[dict]) -> list[str]:
    """Every row of current.csv, its figures to two decimals."""
    lines = ["| " + " | ".join(ALL_COLUMNS) + " |", "|---" * len(ALL_COLUMNS) + "|"]
    for row in rows:
        cells = [f"{float(row[c]):,.2f}" if c in FIGURES and row[c] else row[c] for c in ALL_COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


TABLES = {"speed": speed_table, "rouge": rouge_table, "all": all_rows_table}
BLOCK = re.compile(r"(<!-- current.csv: (\w+) -->\n)(.*?)(<!-- end -->)", re.S)


def render(text: str, rows: list[dict]) -> str:
    return BLOCK.sub(lambda m: m.group(1) + "\n".join(TABLES[m.group(2)](rows)) + "\n" + m.group(4), text)


def tables(check: bool) -> int:
    """Write (or with check, compare) every current.csv block of the docs; 1 where a doc differs."""
    rows, stale = read(CURRENT), []
    for doc in DOCS:
        text = doc.read_text()
        fresh = render(text, rows)
        if fresh != text:
            stale.append(doc)
            if not check:
                doc.write_text(fresh)
    if check and stale:
        print(f"{', '.join(map(str, stale))}: tables differ from {CURRENT}; run python3 benchmarks/current.py tables")
    return int(check and bool(stale))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    merged = commands.add_parser("merge", help="a run's current.csv rows into docs/benchmarks/current.csv")
    merged.add_argument("csv", type=Path)
    merged.add_argument("--systems", nargs="+", help="merge only these systems' rows")
    merged.add_argument("--into", type=Path, default=CURRENT, help="the CSV to merge into (default: %(default)s)")
    merged.add_argument("--previous-main", action="store_true",
                        help="the rows of the previous main, measured in the same command: trtflow's systems get "
                             f"'{PREVIOUS_MAIN.strip()}' after their names")
    commands.add_parser("recipe", help="the recipe's published figures")
    seed = commands.add_parser("seed-table", help="ROUGE-1 rows from a seed_table.json")
    seed.add_argument("json", type=Path)
    seed.add_argument("--device", required=True)
    seed.add_argument("--commit", required=True)
    seed.add_argument("--date", default=datetime.date.today().isoformat())
    shown_tables = commands.add_parser("tables", help="the docs' tables from current.csv")
    shown_tables.add_argument("--check", action="store_true", help="only say whether they are current")
    args = parser.parse_args()
    if args.command == "merge":
        merge(run_rows(args.csv, args.systems, args.previous_main), args.into)
    elif args.command == "recipe":
        merge(recipe_rows())
    elif args.command == "seed-table":
        merge(seed_table_rows(args.json, args.device, args.commit, args.date))
    else:
        sys.exit(tables(args.check))


if __name__ == "__main__":
    main()
