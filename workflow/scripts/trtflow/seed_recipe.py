"""The recipe trtflow automates, as its one table: the figures TensorRT-LLM v0.8.0's GPT example gave for
gpt2-medium, and the settings they were made with. results/{model}/seed_table.md sets a run's figures beside these.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RecipeCase:
    """One gptSessionBenchmark line of the recipe: `mpirun -n tp gptSessionBenchmark --model gpt …`."""

    tp: int
    batch_size: int
    input_len: int
    output_len: int
    latency_ms: float
    tokens_per_s: float
    peak_mem_gb: float | None  # gpu_peak_mem(gb): device-wide (total − free) / 1e9; not given for every case


@dataclass(frozen=True)
class RecipeRouge:
    """summarize.py --test_trt_llm --test_hf --batch_size 1 --check_accuracy (ROUGE-1 of each side)."""

    engine_rouge1: float
    hf_rouge1: float
    threshold: float


MODEL = "gpt2-medium"
SHAPE = {"n_layer": 24, "n_embd": 1024, "n_head": 16, "vocab_size": 50257}
BACKEND = "TensorRT-LLM v0.8.0 (build.py engine; summarize.py, gptSessionBenchmark)"
DEVICE = "a 24 GB GPU"
DATASET = "cnn_dailymail 3.0.0, test[0:20]"
DTYPE = "float16"
# summarize.py's settings as the recipe ran it (max_ite, batch_size, output_len, max_input_length)
SUMMARIZE = {"max_ite": 20, "batch_size": 1, "output_len": 100, "max_input_length": 923}
ROUGE = RecipeRouge(engine_rouge1=21.96, hf_rouge1=21.67, threshold=14.0)
CASES = (
    RecipeCase(tp=1, batch_size=1, input_len=60, output_len=20, latency_ms=39.47, tokens_per_s=506.69,
               peak_mem_gb=23.06),
    RecipeCase(tp=1, batch_size=1, input_len=60, output_len=100, latency_ms=195.73, tokens_per_s=510.92,
               peak_mem_gb=None),
    RecipeCase(tp=2, batch_size=1, input_len=60, output_len=20, latency_ms=50.90, tokens_per_s=392.91,
               peak_mem_gb=23.34),
)


def cases_at(tp: int) -> list[RecipeCase]:
    """The recipe's benchmark cases at one tp (none beyond the recipe's tp 1 and 2)."""
    return [case for case in CASES if case.tp == tp]
