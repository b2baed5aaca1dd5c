"""The accuracy gate: engine ROUGE-1 above a threshold, and not worse than HF beyond noise.

Fails when engine ROUGE-1 < threshold (summarize.py --check_accuracy, default 14), or when the mean
paired per-sample difference (engine − HF ROUGE-1) is below −k standard errors (default k = 3).
rouge.json is a separate artifact, so the numbers survive a failed gate.
"""

from __future__ import annotations

import argparse
import math
import sys

from ..errors import run_stage
from ..formats.artifact import read_json, verify_checksum, write_json


def evaluate_gate(rouge: dict, threshold: float, k: float) -> dict:
    engine = rouge["engine"]
    verdict = {"rouge1": engine["rouge1"], "threshold": threshold, "k": k, "failures": []}
    if engine["rouge1"] < threshold:
        verdict["failures"].append(f"engine ROUGE-1 {engine['rouge1']:.2f} is below the threshold {threshold}")
    hf = rouge.get("hf")
    if hf:
        diffs = [e["rouge1"] - h["rouge1"] for e, h in zip(engine["per_sample"], hf["per_sample"], strict=True)]
        n = len(diffs)
        mean = sum(diffs) / n
        se = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1) / n) if n > 1 else 0.0
        verdict.update({"hf_rouge1": hf["rouge1"], "mean_diff": mean, "se_diff": se, "n": n})
        if mean < -k * se or (se == 0 and mean < 0):
            verdict["failures"].append(
                f"engine is worse than Hugging Face: mean paired ROUGE-1 difference {mean:.2f} < -{k} x SE "
                f"({se:.2f}) over {n} samples")
    verdict["passed"] = not verdict["failures"]
    return verdict


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Pass or fail an engine on its rouge.json.")
    parser.add_argument("--rouge", required=True)
    parser.add_argument("--threshold", type=float, default=14.0)
    parser.add_argument("--k", type=float, default=3.0)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    verdict = evaluate_gate(read_json(verify_checksum(args.rouge)), args.threshold, args.k)
    if not verdict["passed"]:
        sys.exit(f"accuracy gate FAILED for {args.rouge}: " + "; ".join(verdict["failures"]) +
                 ". The scores stay in rouge.json; check the build flags and the c-model, then rerun.")
    write_json(args.out, verdict, checksum=True)
    print(f"accuracy gate passed: ROUGE-1 {verdict['rouge1']:.2f}")


if __name__ == "__main__":
    run_stage(main)
