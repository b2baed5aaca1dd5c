"""Plots of a benchmark CSV, and one self-contained HTML page with every model, tp and build side by side.

The page embeds its plots as data URIs and loads nothing from the network.
"""

from __future__ import annotations

import argparse
import base64
import csv
import html
import json
from pathlib import Path

from ..errors import run_stage
from ..formats.artifact import atomic_file, verify_checksum


def read_rows(path: str | Path) -> list[dict]:
    with open(verify_checksum(path), encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def plot_benchmark(csv_path: str | Path, png_path: str | Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in read_rows(csv_path) if r["status"] == "ok"]
    fig, (ax_lat, ax_tps) = plt.subplots(1, 2, figsize=(10, 4))
    pairs = sorted({(int(r["input_len"]), int(r["output_len"])) for r in rows})
    for input_len, output_len in pairs:
        sel = sorted((r for r in rows if (int(r["input_len"]), int(r["output_len"])) == (input_len, output_len)),
                     key=lambda r: int(r["batch_size"]))
        sizes = [int(r["batch_size"]) for r in sel]
        label = f"in {input_len} / out {output_len}"
        ax_lat.plot(sizes, [float(r["latency_ms"]) for r in sel], marker="o", label=label)
        ax_tps.plot(sizes, [float(r["tokens_per_s"]) for r in sel], marker="o", label=label)
    title = f"{rows[0]['model']} tp{rows[0]['tp']} ({rows[0]['device']})" if rows else "no configuration ran"
    for ax, ylabel in ((ax_lat, "latency (ms)"), (ax_tps, "tokens / s")):
        ax.set_xlabel("batch size")
        ax.set_ylabel(ylabel)
        ax.set_xscale("log", base=2)
        ax.grid(True, alpha=0.3)
        if pairs:
            ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_file(png_path, "wb", checksum=True) as handle:
        fig.savefig(handle, format="png", dpi=100)
    plt.close(fig)


def _table(headers: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _fmt(value, digits: int = 2) -> str:
    try:
        return f"{float(value):.{digits}f}"
    except (TypeError, ValueError):
        return "–" if value in (None, "") else str(value)


STYLE = """body{font-family:system-ui,sans-serif;margin:2em;color:#222}h1{margin-bottom:0}
table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f0f0f0}td:first-child,th:first-child{text-align:left}.pass{color:#080}.fail{color:#b00}
img{max-width:100%;border:1px solid #ddd}.muted{color:#777}"""


def build_report(runs: list[dict], out: str | Path) -> None:
    """runs: [{model, tp, rouge, gate, benchmark, plot}] with file paths (gate may be absent)."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>trtflow report</title>"
             f"<style>{STYLE}</style></head><body><h1>trtflow report</h1>"
             "<p class='muted'>Accuracy (ROUGE, summarize.py method) and speed (gptSessionBenchmark method) "
             "for every model, tensor-parallel degree and build.</p><h2>Accuracy</h2>"]
    accuracy = []
    for run in runs:
        rouge = json.loads(verify_checksum(run["rouge"]).read_text())
        engine, hf = rouge["engine"], rouge.get("hf") or {}
        gate = json.loads(verify_checksum(run["gate"]).read_text()) if run.get("gate") else None
        verdict = "passed" if gate and gate["passed"] else "not passed"
        accuracy.append([run["model"], run["tp"], rouge.get("build_key"), _fmt(engine["rouge1"]), _fmt(hf.get("rouge1")),
                         _fmt(engine["rouge2"]), _fmt(hf.get("rouge2")), _fmt(engine["rougeL"]), _fmt(hf.get("rougeL")),
                         _fmt(engine["rougeLsum"]), _fmt(hf.get("rougeLsum")), _fmt(engine["total_latency_s"]),
                         _fmt(hf.get("total_latency_s")), verdict])
    parts.append(_table(["model", "tp", "build key", "R-1 engine", "R-1 HF", "R-2 engine", "R-2 HF", "R-L engine",
                         "R-L HF", "R-Lsum engine", "R-Lsum HF", "latency engine (s)", "latency HF (s)", "gate"],
                        accuracy))
    parts.append("<h2>Speed</h2>")
    for run in runs:
        rows = read_rows(run["benchmark"])
        parts.append(f"<h3>{html.escape(run['model'])} tp{run['tp']}</h3>")
        parts.append(_table(["batch", "in", "out", "status", "latency ms", "p90 ms", "TTFT ms", "TPOT ms", "tokens/s",
                             "peak mem MB"],
                            [[r["batch_size"], r["input_len"], r["output_len"], r["status"], _fmt(r["latency_ms"]),
                              _fmt(r["p90_ms"]), _fmt(r["ttft_ms"]), _fmt(r["tpot_ms"]), _fmt(r["tokens_per_s"], 1),
                              _fmt(r["peak_mem_mb"], 0)] for r in rows]))
        if run.get("plot"):
            data = base64.b64encode(verify_checksum(run["plot"]).read_bytes()).decode()
            parts.append(f"<img alt='benchmark plot {html.escape(run['model'])} tp{run['tp']}' "
                         f"src='data:image/png;base64,{data}'>")
    parts.append("</body></html>")
    with atomic_file(out) as handle:
        handle.write("\n".join(parts))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Benchmark plots and the HTML report.")
    sub = parser.add_subparsers(dest="command", required=True)
    plot = sub.add_parser("plot")
    plot.add_argument("--csv", required=True)
    plot.add_argument("--out", required=True)
    page = sub.add_parser("html")
    page.add_argument("--runs", required=True, help="JSON list of {model, tp, rouge, gate, benchmark, plot}")
    page.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    if args.command == "plot":
        plot_benchmark(args.csv, args.out)
    else:
        build_report(json.loads(args.runs), args.out)


if __name__ == "__main__":
    run_stage(main)
