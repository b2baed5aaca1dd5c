"""One model's builds side by side: the config itself and each of its `variants`, at every tp.

What a TensorRT-LLM user asks of a flag ("what does int8 cost me in ROUGE, and what does it buy in latency?"):
per run, ROUGE-1/2/L of the engine and of Hugging Face with the accuracy gate's verdict and margins (the gate's
own rule, applied here to rouge.json so that a failing variant is shown, not hidden behind a failed job),
batch-1 latency, TTFT and TPOT, tokens/s at the largest batch, peak memory, the engine's size on disk, and one
plot of accuracy against speed. One self-contained page, loading nothing from the network.
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import json
from pathlib import Path

from ..errors import run_stage
from ..formats.artifact import atomic_file, size_on_disk, verify_checksum
from .accuracy_gate import evaluate_gate
from .report import STYLE, fmt, html_table, read_rows


def speed_point(rows: list[dict]) -> dict:
    """The benchmark figures the page compares: batch 1 at the longest (output, input) pair measured at batch
    1, and tokens/s at the largest batch size measured for that pair."""
    ok = [r for r in rows if r["status"] == "ok"]
    single = [r for r in ok if int(r["batch_size"]) == 1]
    if not single:
        return {}
    bs1 = max(single, key=lambda r: (int(r["output_len"]), int(r["input_len"])))
    pair = (bs1["input_len"], bs1["output_len"])
    widest = max((r for r in ok if (r["input_len"], r["output_len"]) == pair), key=lambda r: int(r["batch_size"]))
    return {"pair": f"in {pair[0]} / out {pair[1]}", "latency_ms": float(bs1["latency_ms"]),
            "ttft_ms": float(bs1["ttft_ms"]), "tpot_ms": float(bs1["tpot_ms"]),
            "largest_batch": int(widest["batch_size"]), "tokens_per_s": float(widest["tokens_per_s"]),
            "peak_mem_mb": max(float(r["peak_mem_mb"]) for r in ok), "peak_mem_kind": bs1["peak_mem_kind"],
            "device": bs1["device"]}


def summarize_run(run: dict, threshold: float, k: float) -> dict:
    """One row of the page from the run's files: rouge.json, benchmark.csv (both checksum-verified), the engine."""
    rouge = json.loads(verify_checksum(run["rouge"]).read_text())
    gate = evaluate_gate(rouge, threshold, k)
    row = {"variant": run["variant"], "tp": run["tp"], "overrides": run["overrides"], "build_key": rouge["build_key"],
           "engine": {m: rouge["engine"][m] for m in ("rouge1", "rouge2", "rougeL")},
           "hf": {m: (rouge.get("hf") or {}).get(m) for m in ("rouge1", "rouge2", "rougeL")},
           "gate_passed": gate["passed"], "gate_failures": gate["failures"],
           "threshold_margin": gate["rouge1"] - threshold,
           "engine_bytes": size_on_disk(Path(run["engine"])), **speed_point(read_rows(run["benchmark"]))}
    if "mean_diff" in gate:  # engine − HF and how far it stays above the gate's −k·SE bound
        row.update(mean_diff=gate["mean_diff"], se_diff=gate["se_diff"], hf_margin=gate["mean_diff"] + k * gate["se_diff"])
    return row


def overrides_text(overrides: dict) -> str:
    items = [f"{key}: {json.dumps(value)}" for section in overrides.values() for key, value in section.items()]
    return ", ".join(items) or "(the config itself)"


def plot_png(rows: list[dict], model: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    for row in (r for r in rows if "latency_ms" in r):
        marker = "o" if row["gate_passed"] else "x"
        ax.scatter(row["latency_ms"], row["engine"]["rouge1"], marker=marker, s=60)
        # every other variant labelled below its points: variants of equal accuracy often sit side by side
        below = variants.index(row["variant"]) % 2
        ax.annotate(f"{row['variant']} tp{row['tp']}", (row["latency_ms"], row["engine"]["rouge1"]),
                    textcoords="offset points", xytext=(6, -14 if below else 8), fontsize=9)
    pair = next((r["pair"] for r in rows if "pair" in r), "")
    ax.set_xlabel(f"batch-1 latency, {pair} (ms)")
    ax.set_ylabel("ROUGE-1 (engine)")
    ax.set_title(f"{model}: accuracy against speed (x: gate not passed)")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


HEADERS = ["variant", "tp", "build key", "overrides", "R-1 engine", "R-1 HF", "R-2 engine", "R-2 HF", "R-L engine",
           "R-L HF", "gate", "R-1 − threshold", "engine − HF (± SE)", "bs-1 latency ms", "TTFT ms", "TPOT ms",
           "largest batch", "tokens/s", "peak mem MB", "engine MB"]


def table_row(row: dict) -> list:
    diff = (f"{row['mean_diff']:+.2f} ± {row['se_diff']:.2f}" if "mean_diff" in row else "–")
    return [row["variant"], row["tp"], row["build_key"], overrides_text(row["overrides"]),
            fmt(row["engine"]["rouge1"]), fmt(row["hf"]["rouge1"]), fmt(row["engine"]["rouge2"]),
            fmt(row["hf"]["rouge2"]), fmt(row["engine"]["rougeL"]), fmt(row["hf"]["rougeL"]),
            "passed" if row["gate_passed"] else "FAILED", f"{row['threshold_margin']:+.2f}", diff,
            fmt(row.get("latency_ms")), fmt(row.get("ttft_ms")), fmt(row.get("tpot_ms")),
            row.get("largest_batch", "–"), fmt(row.get("tokens_per_s"), 1), fmt(row.get("peak_mem_mb"), 0),
            fmt(row["engine_bytes"] / 2**20, 1)]


def build_page(model: str, runs: list[dict], threshold: float, k: float, out: str | Path) -> list[dict]:
    rows = [summarize_run(run, threshold, k) for run in runs]
    devices = sorted({r["device"] for r in rows if "device" in r})
    pair = next((r["pair"] for r in rows if "pair" in r), "–")
    failures = [f"{r['variant']} tp{r['tp']}: " + "; ".join(r["gate_failures"]) for r in rows if not r["gate_passed"]]
    image = base64.b64encode(plot_png(rows, model)).decode()
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>trtflow variants: {html.escape(model)}</title>"
             f"<style>{STYLE}</style></head><body><h1>{html.escape(model)}: builds side by side</h1>",
             f"<p class='muted'>Gate: ROUGE-1 ≥ {threshold:g} and engine − HF ≥ −{k:g} SE (as accuracy.ok). Speed: "
             f"batch 1 at {html.escape(pair)}, tokens/s at the largest batch measured for it; device "
             f"{html.escape(', '.join(devices) or '?')}. Engine MB: every file of the engine folder.</p>",
             html_table(HEADERS, [table_row(r) for r in rows]),
             f"<img alt='accuracy against speed' src='data:image/png;base64,{image}'>"]
    if failures:
        parts.append("<h2>Not passed</h2><ul>" + "".join(f"<li>{html.escape(f)}</li>" for f in failures) + "</ul>")
    parts.append("</body></html>")
    with atomic_file(out) as handle:
        handle.write("\n".join(parts))
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A model's build variants side by side, as one HTML page.")
    parser.add_argument("--model", required=True)
    parser.add_argument("--runs", required=True, help="JSON list of {variant, tp, rouge, benchmark, engine, overrides}")
    parser.add_argument("--threshold", type=float, required=True)
    parser.add_argument("--k", type=float, required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    build_page(args.model, json.loads(args.runs), args.threshold, args.k, args.out)


if __name__ == "__main__":
    run_stage(main)
