"""ROUGE exactly as summarize.py reports it via `evaluate.load("rouge")`, computed as rouge_score computes it.

evaluate's rouge module: RougeScorer(rouge1/rouge2/rougeL/rougeLsum, no stemmer), `score(reference,
prediction)` per sample, BootstrapAggregator, `mid.fmeasure`; summarize.py seeds numpy with 0 before
`compute()` and multiplies by 100. The plain mean and per-sample F-measures are returned as well.

The per-sample scorer is a transcription of rouge_score 0.1.2's rouge_scorer.py (`RougeScorer.score` without a
stemmer or sentence splitting, and its n-gram, LCS and summary-level LCS functions), on rouge_score's own
tokenizer and scoring modules: rouge_scorer.py imports nltk, whose package imports scipy.stats and scikit-learn
where they are installed (2.3 s of each scoring job on the lent H200). tests/test_evaluate.py holds it equal to
RougeScorer.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
from rouge_score import scoring, tokenize

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")


def _score(hits: int, predicted: int, target: int) -> scoring.Score:
    precision, recall = hits / predicted, hits / target
    return scoring.Score(precision=precision, recall=recall, fmeasure=scoring.fmeasure(precision, recall))


def _ngrams(tokens: list[str], n: int) -> Counter:
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def _ngram_score(target: list[str], prediction: list[str], n: int) -> scoring.Score:
    target_grams, prediction_grams = _ngrams(target, n), _ngrams(prediction, n)
    hits = sum(min(count, prediction_grams[gram]) for gram, count in target_grams.items())
    return _score(hits, max(sum(prediction_grams.values()), 1), max(sum(target_grams.values()), 1))


def _lcs_table(ref: list[str], can: list[str]) -> list[list[int]]:
    table = [[0] * (len(can) + 1) for _ in range(len(ref) + 1)]
    for i in range(1, len(ref) + 1):
        for j in range(1, len(can) + 1):
            table[i][j] = table[i - 1][j - 1] + 1 if ref[i - 1] == can[j - 1] else max(table[i - 1][j], table[i][j - 1])
    return table


def _lcs_indices(ref: list[str], can: list[str]) -> list[int]:
    """The indices into `ref` of one longest common subsequence: rouge_score's backtrack, with its tie-break."""
    table, i, j, indices = _lcs_table(ref, can), len(ref), len(can), []
    while i > 0 and j > 0:
        if ref[i - 1] == can[j - 1]:
            indices.insert(0, i - 1)
            i, j = i - 1, j - 1
        elif table[i][j - 1] > table[i - 1][j]:
            j -= 1
        else:
            i -= 1
    return indices


def _lcs_score(target: list[str], prediction: list[str]) -> scoring.Score:
    if not target or not prediction:
        return scoring.Score(precision=0, recall=0, fmeasure=0)
    return _score(_lcs_table(target, prediction)[-1][-1], len(prediction), len(target))


def _summary_lcs_score(target: list[list[str]], prediction: list[list[str]]) -> scoring.Score:
    """Summary-level LCS (rougeLsum) over sentences: the union of each target sentence's LCS with every predicted
    one, each token counted at most as often as both summaries hold it."""
    m, n = sum(map(len, target)), sum(map(len, prediction))
    if not target or not prediction or not m or not n:
        return scoring.Score(precision=0, recall=0, fmeasure=0)
    left_target, left_prediction = Counter(), Counter()
    for sentence in target:
        left_target.update(sentence)
    for sentence in prediction:
        left_prediction.update(sentence)
    hits = 0
    for sentence in target:
        union = sorted(set().union(*[_lcs_indices(sentence, other) for other in prediction]))
        for token in (sentence[i] for i in union):
            if left_prediction[token] > 0 and left_target[token] > 0:
                hits += 1
                left_prediction[token] -= 1
                left_target[token] -= 1
    return _score(hits, n, m)


def _scores(target: str, prediction: str) -> dict[str, scoring.Score]:
    """rouge_score's RougeScorer(ROUGE_TYPES, use_stemmer=False).score(target, prediction)."""
    target_tokens, prediction_tokens = tokenize.tokenize(target, None), tokenize.tokenize(prediction, None)

    def sentences(text: str) -> list[list[str]]:
        return [tokenize.tokenize(s, None) for s in text.split("\n") if len(s)]

    return {"rouge1": _ngram_score(target_tokens, prediction_tokens, 1),
            "rouge2": _ngram_score(target_tokens, prediction_tokens, 2),
            "rougeL": _lcs_score(target_tokens, prediction_tokens),
            "rougeLsum": _summary_lcs_score(sentences(target), sentences(prediction))}


def per_sample(predictions: list[str], references: list[str]) -> list[dict[str, float]]:
    return [{k: s.fmeasure * 100 for k, s in _scores(ref, pred).items()}
            for pred, ref in zip(predictions, references, strict=True)]


def aggregate(predictions: list[str], references: list[str], seed: int = 0) -> dict[str, float]:
    aggregator = scoring.BootstrapAggregator()
    for pred, ref in zip(predictions, references, strict=True):
        aggregator.add_scores(_scores(ref, pred))
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
