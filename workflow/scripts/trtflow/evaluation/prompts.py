"""Prompt text exactly as TensorRT-LLM v0.8.0 summarize.py builds it."""

TLDR = " TL;DR: "


def summarize_prompt(article: str) -> str:
    """`article + ' TL;DR: '`, stripped, with `" n't"` folded into `"n't"` (summarize.py's preprocessing)."""
    return (article + TLDR).strip().replace(" n't", "n't")
