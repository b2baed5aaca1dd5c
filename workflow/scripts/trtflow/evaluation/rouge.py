"""ROUGE exactly as summarize.py reports it via `evaluate.load("rouge")`, computed with rouge_score.

evaluate's rouge module: RougeScorer(rouge1/rouge2/rougeL/rougeLsum, no stemmer), `score(reference,
prediction)` per sample, BootstrapAggregator, `mid.fmeasure`; summarize.py seeds numpy with 0 before
`compute()` and multiplies by 100. The plain mean and per-sample F-measures are returned as well.
"""

from __future__ import annotations

import numpy as np

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")


def per_sample(predictions: list[str], references: list[str]) -> list[dict[str, float]]:
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=False)
    return [{k: s.fmeasure * 100 for k, s in scorer.score(ref, pred).items()}
            for pred, ref in zip(predictions, references, strict=True)]


def aggregate(predictions: list[str], references: list[str], seed: int = 0) -> dict[str, float]:
    from rouge_score import rouge_scorer, scoring

    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=False)
    aggregator = scoring.BootstrapAggregator()
    for pred, ref in zip(predictions, references, strict=True):
        aggregator.add_scores(scorer.score(ref, pred))
    np.random.seed(seed)
    result = aggregator.aggregate()
    return {k: float(result[k].mid.fmeasure * 100) for k in ROUGE_TYPES}


def score(predictions: list[str], references: list[str]) -> dict:
    samples = per_sample(predictions, references)
    return {
        **aggregate(predictions, references),
        "mean": {k: float(np.mean([s[k] for s in samples])) for k in ROUGE_TYPES},
        "per_sample": samples,
    }
