"""The HF reference's time on summarize's workload, per transformers attention implementation:

    PYTHONPATH=workflow/scripts python3 benchmarks/hf_attention.py --hf-model-dir resources/models/demo/hf \
        --dataset-file resources/datasets/demo/test.jsonl --out DIR

One process, one model load per implementation, each timed twice in turn (eager, sdpa, eager, sdpa) through
evaluation.summaries.run_side, exactly as stages.hf_summarize runs it (its untimed warm-up first; latency covers
tokenize + generate + decode). Writes hf_attention.csv: attention, round, device, dtype, seconds, output tokens,
ms per token, and whether the texts equal the first round's of eager.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow" / "scripts"))

from trtflow.evaluation.datasets import read_dataset  # noqa: E402
from trtflow.evaluation.summaries import SummarySettings, run_side  # noqa: E402
from trtflow.evaluation.tokenizer import load_tokenizer, token_ids  # noqa: E402
from trtflow.hf_reference import HFGenerator  # noqa: E402
from trtflow.infra.dist import init_distributed  # noqa: E402

ATTENTIONS = ("eager", "sdpa")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hf-model-dir", required=True)
    parser.add_argument("--dataset-file", required=True)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    rows_in = read_dataset(args.dataset_file)
    settings = SummarySettings(max_ite=20, batch_size=1, output_len=100, max_input_length=923)
    device = init_distributed().device
    tokenizer = load_tokenizer(args.hf_model_dir)
    generators = {name: HFGenerator(args.hf_model_dir, device, token_ids(args.hf_model_dir, tokenizer),
                                    attention=name) for name in ATTENTIONS}
    rows, first = [], None
    for round_ in range(1, args.rounds + 1):
        for name, hf in generators.items():
            side = run_side(hf, tokenizer, rows_in, settings, name, True)
            first = first or side["texts"]
            rows.append({"attention": name, "round": round_, "device": str(device), "dtype": hf.compute_dtype,
                         "seconds": f"{side['total_latency_s']:.3f}", "output_tokens": side["output_tokens"],
                         "ms_per_token": f"{1000 * side['total_latency_s'] / side['output_tokens']:.2f}",
                         "texts_equal_eager": side["texts"] == first})
            print(" ".join(f"{k} {v}" for k, v in rows[-1].items()), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with (out / "hf_attention.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


if __name__ == "__main__":
    main()
