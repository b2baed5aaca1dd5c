"""The Hugging Face reference: transformers `generate`, behind `trtflow.generation.Generator`."""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from .flags import HF_ATTENTION
from .generation import EngineLimitError, GenerationResult, Sampling, cut_at_end
from .infra.dist import synchronize


class HFGenerator:
    """The Hugging Face reference: transformers `generate`, behind the same interface."""

    def __init__(self, hf_dir: str | Path, device: torch.device, token_ids: dict[str, int], dtype: str = "auto",
                 attention: str = HF_ATTENTION, cache: str | None = None):
        """`token_ids` ({"end_id", "pad_id"}) come from the tokenizer (`evaluation.tokenizer.token_ids`), as the
        engines' do. `attention`: transformers' attn_implementation, by default v0.8.0's (flags.HF_ATTENTION). Newer
        transformers default to "sdpa", which on the H200 took 7.6 s for the demo's 20 summaries in a fresh process
        against eager's 1.0 s (0.9 s once every cache length had been met once; benchmarks/hf_attention.py). `cache`:
        transformers' cache_implementation, None for its dynamic cache; "static" makes transformers compile its decode
        step on a GPU (its fast path, measured beside trtflow by benchmarks/gpu_speed.py)."""
        from transformers import AutoModelForCausalLM

        from .formats.hf import check_checkpoint

        check_checkpoint(hf_dir)
        if dtype == "auto":
            dtype = "float16" if device.type == "cuda" else "float32"
        self.device = device
        self.model = AutoModelForCausalLM.from_pretrained(
            hf_dir, dtype=getattr(torch, dtype), attn_implementation=attention).to(device).eval()
        config = json.loads((Path(hf_dir) / "config.json").read_text())
        self.end_id, self.pad_id = token_ids["end_id"], token_ids["pad_id"]
        self.compute_dtype = dtype
        self.attention = attention
        self.cache = cache
        self.vocab_size = config["vocab_size"]
        self.n_positions = config.get("n_positions", 1024)

    def check_limits(self, batch: list[list[int]], max_new_tokens: int) -> None:
        longest = max(len(p) for p in batch)
        if longest + max_new_tokens > self.n_positions:
            raise EngineLimitError(f"input {longest} + output {max_new_tokens} > n_positions {self.n_positions}")

    @torch.inference_mode()
    def forward_logits(self, prompt: list[int]) -> torch.Tensor:
        return self.model(torch.tensor([prompt], device=self.device)).logits[0].float()

    @torch.inference_mode()
    def generate(self, batch: list[list[int]], max_new_tokens: int, sampling: Sampling = Sampling(),
                 end_id: int | None = None, ignore_eos: bool = False) -> GenerationResult:
        end_id = self.end_id if end_id is None else end_id
        width = max(len(p) for p in batch)
        ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for b, prompt in enumerate(batch):  # left padding, as decoder-only generation needs
            ids[b, width - len(prompt):] = torch.tensor(prompt)
            mask[b, width - len(prompt):] = 1
        kwargs = dict(max_new_tokens=max_new_tokens, pad_token_id=self.pad_id, num_beams=sampling.num_beams,
                      eos_token_id=None if ignore_eos else end_id)
        if ignore_eos:
            kwargs["min_new_tokens"] = max_new_tokens
        if self.cache:
            kwargs["cache_implementation"] = self.cache
        if sampling.greedy:
            kwargs.update(do_sample=False)
        else:
            torch.manual_seed(sampling.random_seed)
            kwargs.update(do_sample=True, top_k=sampling.top_k, top_p=sampling.top_p or 1.0,
                          temperature=sampling.temperature)
        synchronize(self.device)
        started = time.perf_counter()
        out = self.model.generate(input_ids=ids.to(self.device), attention_mask=mask.to(self.device), **kwargs)
        synchronize(self.device)
        total_s = time.perf_counter() - started
        rows = out[:, width:].tolist()
        if not ignore_eos:
            rows = cut_at_end(rows, end_id)
        return GenerationResult(rows, float("nan"), total_s, {"compute_dtype": self.compute_dtype})
