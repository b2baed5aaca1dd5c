"""Generators: token ids in, token ids out. One interface for the torch engine and Hugging Face.

The harnesses (generate, summarize, benchmark) only call `generate`, so ROUGE and timings are computed
the same way for every backend and for the reference.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..artifact import ArtifactError, read_json, verify_manifest
from .dist import DistInfo, broadcast
from .kvcache import ContiguousKV, PagedKV
from .model import ModelDims, ParallelGPT2


class EngineLimitError(ValueError):
    """A request that does not fit the engine's build limits (max batch / input / output)."""


class EngineMismatchError(RuntimeError):
    """An engine folder this runtime cannot run (other backend, format, world size or files)."""


@dataclass(frozen=True)
class Sampling:
    """run.py's sampling flags; top_k 1 (the default) is greedy."""

    top_k: int = 1
    top_p: float = 0.0
    temperature: float = 1.0
    num_beams: int = 1
    random_seed: int = 0

    @property
    def greedy(self) -> bool:
        return self.top_k == 1 or self.temperature == 0


@dataclass
class GenerationResult:
    output_ids: list[list[int]]  # generated tokens only, stopped before end_id
    context_s: float  # prompt phase until the first token exists
    total_s: float
    info: dict = field(default_factory=dict)


def enforce_limits(limits: dict, batch: list[list[int]], max_new_tokens: int) -> None:
    """Refuse a request beyond the engine's build limits (max_batch_size / max_input_len / max_output_len)."""
    if not batch or any(len(p) == 0 for p in batch):
        raise EngineLimitError("every prompt needs at least one token")
    for value, key, what in ((len(batch), "max_batch_size", "batch size"),
                             (max(len(p) for p in batch), "max_input_len", "input length"),
                             (max_new_tokens, "max_output_len", "output length")):
        if value > limits[key]:
            raise EngineLimitError(f"{what} {value} > the engine's {key} {limits[key]}; rebuild with a larger "
                                   f"build.{key}" + ("" if key != "max_input_len" else ", or truncate the input"))


def cut_at_end(rows: list[list[int]], end_id: int) -> list[list[int]]:
    """Each row up to (not including) its first end_id."""
    return [row[: row.index(end_id)] if end_id in row else row for row in rows]


def sample(logits: torch.Tensor, sampling: Sampling, generator: torch.Generator | None) -> torch.Tensor:
    if sampling.greedy:
        return logits.argmax(-1)
    logits = logits / max(sampling.temperature, 1e-6)
    if sampling.top_k > 1:
        kth = logits.topk(min(sampling.top_k, logits.shape[-1]), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if 0.0 < sampling.top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        drop = cumulative - sorted_logits.softmax(-1) > sampling.top_p
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    return torch.multinomial(logits.softmax(-1), 1, generator=generator)[:, 0]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class TorchEngineGenerator:
    """Runs a torch-backend engine folder on this rank."""

    def __init__(self, engine_dir: str | Path, dist: DistInfo, verify: bool = True):
        engine_dir = Path(engine_dir)
        if verify:
            verify_manifest(engine_dir)
        config = read_json(engine_dir / "config.json")
        if config.get("backend") != "torch":
            raise EngineMismatchError(
                f"{engine_dir}/config.json is a {config.get('backend') or 'TensorRT-LLM'} engine, not a torch-backend "
                "one; set build.backend to match, or rebuild the engine")
        from ..engine.torch_engine import FORMAT_VERSION

        if config.get("format_version") != FORMAT_VERSION:
            raise EngineMismatchError(f"{engine_dir} has engine format {config.get('format_version')}, this runtime "
                                      f"reads {FORMAT_VERSION}; delete the folder and rebuild the engine")
        if config["world_size"] != dist.world_size:
            raise EngineMismatchError(
                f"{engine_dir} was built for world size {config['world_size']} but {dist.world_size} rank(s) "
                f"are running; launch with -n {config['world_size']}")
        rank_file = engine_dir / f"rank{dist.rank}.safetensors"
        if not rank_file.is_file():
            raise ArtifactError(f"{rank_file} is missing; delete {engine_dir} and rebuild the engine")
        from safetensors.torch import load_file

        self.config = config
        self.dist = dist
        self.device = dist.device
        self.dims = ModelDims.from_json(config["model"])
        stored = getattr(torch, config["dtype"])
        # Half-precision GEMMs on CPU are slow and not what anyone deploys: compute in fp32 there.
        self.compute_dtype = stored if self.device.type == "cuda" else torch.float32
        weights = {k: v.to(self.device, self.compute_dtype) for k, v in load_file(rank_file).items()}
        runtime = config["runtime"]
        self.model = ParallelGPT2(self.dims, config["world_size"], weights, runtime["attention"] == "sdpa")
        self.packed = runtime["remove_input_padding"]
        self.paged = runtime["kv_cache"] == "paged"
        self.tokens_per_block = runtime["tokens_per_block"]
        self.limits = {k: config["build"][k] for k in ("max_batch_size", "max_input_len", "max_output_len")}
        self.end_id, self.pad_id = config["end_id"], config["pad_id"]
        self.static = None
        if runtime["cuda_graphs"] and not self.paged:  # on CPU: the same static cache, no capture
            from .graphs import StaticDecoder

            capacity = self.limits["max_input_len"] + self.limits["max_output_len"]
            self.static = StaticDecoder(self.model, self.limits["max_batch_size"], capacity, self.compute_dtype,
                                        self.device, compile_step=runtime.get("torch_compile", False))

    def check_limits(self, batch: list[list[int]], max_new_tokens: int) -> None:
        enforce_limits(self.limits, batch, max_new_tokens)

    def _cache(self, lengths: list[int], max_new_tokens: int):
        d = self.dims
        args = (d.layers,)
        heads, head_dim = d.heads // self.dist.world_size, d.hidden // d.heads
        if self.paged:
            return PagedKV(*args, [n + max_new_tokens for n in lengths], heads, self.tokens_per_block, head_dim,
                           self.compute_dtype, self.device)
        return ContiguousKV(*args, len(lengths), heads, max(lengths) + max_new_tokens, head_dim,
                            self.compute_dtype, self.device)

    @torch.inference_mode()
    def forward_logits(self, prompt: list[int]) -> torch.Tensor:
        """Logits for every position of one prompt (for correctness checks against HF)."""
        cache = self._cache([len(prompt)], 1)
        tokens = torch.tensor(prompt, device=self.device)
        return self.model.context([tokens], cache, self.packed, all_logits=True)[0]

    @torch.inference_mode()
    def generate(self, batch: list[list[int]], max_new_tokens: int, sampling: Sampling = Sampling(),
                 end_id: int | None = None, ignore_eos: bool = False) -> GenerationResult:
        if sampling.num_beams > 1:
            raise EngineLimitError("num_beams > 1: beam search is not implemented by the torch backend; use "
                                   "num_beams 1 (greedy or sampling)")
        self.check_limits(batch, max_new_tokens)
        end_id = self.end_id if end_id is None else end_id
        generator = None if sampling.greedy else torch.Generator(self.device).manual_seed(sampling.random_seed)
        lengths = [len(p) for p in batch]
        if self.static is not None and sampling.greedy:
            return self._generate_static(batch, max_new_tokens, end_id, ignore_eos)
        _sync(self.device)
        started = time.perf_counter()
        cache = self._cache(lengths, max_new_tokens)
        prompts = [torch.tensor(p, device=self.device) for p in batch]
        logits = self.model.context(prompts, cache, self.packed)
        token = self._next(logits, sampling, generator)
        _sync(self.device)
        context_s = time.perf_counter() - started
        positions = torch.tensor(lengths, device=self.device)
        produced = [token]
        finished = token == end_id
        for _ in range(max_new_tokens - 1):
            if not ignore_eos and bool(finished.all()):
                break
            span = max(lengths) + len(produced)
            logits = self.model.decode(token, positions, cache, span)
            positions = positions + 1
            token = self._next(logits, sampling, generator)
            if not ignore_eos:
                token = torch.where(finished, torch.full_like(token, end_id), token)
                finished = finished | (token == end_id)
            produced.append(token)
        _sync(self.device)
        total_s = time.perf_counter() - started
        out = torch.stack(produced, dim=1).tolist()
        if not ignore_eos:
            out = cut_at_end(out, end_id)
        return GenerationResult(out, context_s, total_s, {"compute_dtype": str(self.compute_dtype)})

    def _generate_static(self, batch, max_new_tokens, end_id, ignore_eos) -> GenerationResult:
        self.static.prefill_cache(len(batch))  # captures this batch size's decode graph on first use
        _sync(self.device)
        started = time.perf_counter()
        first = self.static.prefill(batch, self.packed)
        _sync(self.device)
        context_s = time.perf_counter() - started
        out = self.static.decode(first, [len(p) for p in batch], max_new_tokens - 1, end_id, not ignore_eos)
        rows = out.tolist()  # the one host sync of the decode loop
        total_s = time.perf_counter() - started
        if not ignore_eos:
            rows = cut_at_end(rows, end_id)
        return GenerationResult(rows, context_s, total_s, {"compute_dtype": str(self.compute_dtype),
                                                           "cuda_graphs": True})

    def _next(self, logits: torch.Tensor, sampling: Sampling, generator) -> torch.Tensor:
        token = sample(logits, sampling, generator)
        if not sampling.greedy:  # ranks sample independently; take rank 0's draw
            token = broadcast(token.contiguous())
        return token


class HFGenerator:
    """The Hugging Face reference: transformers `generate`, behind the same interface."""

    def __init__(self, hf_dir: str | Path, device: torch.device, dtype: str = "auto"):
        from transformers import AutoModelForCausalLM

        if dtype == "auto":
            dtype = "float16" if device.type == "cuda" else "float32"
        self.device = device
        self.model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=getattr(torch, dtype)).to(device).eval()
        config = json.loads((Path(hf_dir) / "config.json").read_text())
        self.end_id = config.get("eos_token_id", 50256)
        self.pad_id = config.get("pad_token_id") or self.end_id
        self.dtype = dtype
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
        if sampling.greedy:
            kwargs.update(do_sample=False)
        else:
            torch.manual_seed(sampling.random_seed)
            kwargs.update(do_sample=True, top_k=sampling.top_k, top_p=sampling.top_p or 1.0,
                          temperature=sampling.temperature)
        _sync(self.device)
        started = time.perf_counter()
        out = self.model.generate(input_ids=ids.to(self.device), attention_mask=mask.to(self.device), **kwargs)
        _sync(self.device)
        total_s = time.perf_counter() - started
        rows = out[:, width:].tolist()
        if not ignore_eos:
            rows = cut_at_end(rows, end_id)
        return GenerationResult(rows, float("nan"), total_s, {"compute_dtype": self.dtype})
