"""The torch backend's generator: runs a torch engine folder on this rank behind `trtflow.generation.Generator`."""

from __future__ import annotations

import functools
import time
from pathlib import Path

import torch

from ...flags import BuildFlags
from ...formats.artifact import ArtifactError, read_json, verify_manifest
from ...generation import (
    EngineLimitError,
    EngineMismatchError,
    GenerationResult,
    Sampling,
    cut_at_end,
    dtype_name,
    enforce_limits,
)
from ...gpt2 import ModelDims
from ...infra.dist import DistInfo, broadcast, synchronize
from . import compiled
from .engine_format import FORMAT_VERSION
from .kvcache import ContiguousKV, PagedKV
from .model import ParallelGPT2
from .weights import GPT2Weights


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
        if config.get("format_version") != FORMAT_VERSION:
            raise EngineMismatchError(f"{engine_dir} has engine format {config.get('format_version')}, this runtime "
                                      f"reads {FORMAT_VERSION}; delete the folder and rebuild the engine")
        if config["world_size"] != dist.world_size:
            raise EngineMismatchError(
                f"{engine_dir} was built for world size {config['world_size']} but {dist.world_size} rank(s) "
                f"are running: started by hand, launch with -n {config['world_size']}; in the workflow the folder "
                f"holds another tp's engine: delete {engine_dir} and rerun")
        rank_file = engine_dir / f"rank{dist.rank}.safetensors"
        if not rank_file.is_file():
            raise ArtifactError(f"{rank_file} is missing; delete {engine_dir} and rebuild the engine")
        from safetensors.torch import load_file

        self.config = config
        self.flags = BuildFlags.from_json(config["build"])
        self.dist = dist
        self.device = dist.device
        self.dims = ModelDims.from_json(config["model"])
        self.vocab_size = self.dims.vocab_size
        self.local_heads = self.dims.heads // dist.world_size
        stored = getattr(torch, config["dtype"])
        # Half-precision GEMMs on CPU are slow and not what anyone deploys: compute in fp32 there.
        self.compute_dtype = stored if self.device.type == "cuda" else torch.float32
        # Weight-only int8 linears stay int8 (widened inside each matmul); everything else in the compute dtype.
        tensors = {k: v.to(self.device) if v.dtype == torch.int8 else v.to(self.device, self.compute_dtype)
                   for k, v in load_file(rank_file).items()}
        weights = GPT2Weights.from_engine(tensors, self.dims.eps)
        del tensors
        runtime = self.flags.runtime()
        self.packed = runtime.packed
        self.paged = runtime.paged
        self.tokens_per_block = runtime.tokens_per_block
        self.limits = self.flags.limits
        self.end_id, self.pad_id = config["end_id"], config["pad_id"]
        if "compiled" in config:  # the decode step compiled by the engine rule, for this machine only
            compiled.load(engine_dir, config["compiled"])
        static = runtime.decode != "eager" and not self.paged  # on CPU: the same static cache, no capture
        capacity = self.limits["max_input_len"] + self.limits["max_output_len"]
        # trtflow's kernels (decode: kernels): on one GPU, where they take the model; the context's int8 linears and
        # its lm_head run them too (ParallelGPT2's context_linear)
        self.tuning, context_linear = None, None
        if static and runtime.decode == "kernels" and self.device.type == "cuda":
            from . import kernels

            if kernels.applies(self.dims, dist.world_size, self.compute_dtype, 1):
                self.tuning = kernels.TuningTable.from_json(config.get("compiled", {}).get("kernels") or [])
                context_linear = functools.partial(kernels.context_linear, tuning=self.tuning)
        self.model = ParallelGPT2(self.dims, self.local_heads, dist.world_size, weights, runtime.fused_attention,
                                  context_linear)
        self.static = None
        if static:
            from .graphs import StaticDecoder

            step = None
            if self.tuning is not None:
                step = kernels.KernelStep(self.model, self.tuning, self.limits["max_batch_size"], capacity)
            self.static = StaticDecoder(self.model, self.limits["max_batch_size"], capacity, self.compute_dtype,
                                        self.device, decode=runtime.decode, capture=dist.world_size == 1,
                                        kernels=step)

    def check_limits(self, batch: list[list[int]], max_new_tokens: int) -> None:
        enforce_limits(self.limits, batch, max_new_tokens)

    def _cache(self, lengths: list[int], max_new_tokens: int):
        args = (self.dims.layers,)
        heads, head_dim = self.local_heads, self.dims.head_dim
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
        synchronize(self.device)
        started = time.perf_counter()
        cache = self._cache(lengths, max_new_tokens)
        prompts = [torch.tensor(p, device=self.device) for p in batch]
        logits = self.model.context(prompts, cache, self.packed)
        token = self._next(logits, sampling, generator)
        synchronize(self.device)
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
        synchronize(self.device)
        total_s = time.perf_counter() - started
        out = torch.stack(produced, dim=1).tolist()
        if not ignore_eos:
            out = cut_at_end(out, end_id)
        return GenerationResult(out, context_s, total_s, {"compute_dtype": dtype_name(self.compute_dtype)})

    def _generate_static(self, batch, max_new_tokens, end_id, ignore_eos) -> GenerationResult:
        self.static.prefill_cache(len(batch))  # captures this batch size's decode graph on first use
        synchronize(self.device)
        started = time.perf_counter()
        first = self.static.prefill(batch, self.packed)
        synchronize(self.device)
        context_s = time.perf_counter() - started
        out = self.static.decode(first, [len(p) for p in batch], max_new_tokens - 1, end_id, not ignore_eos)
        rows = out.tolist()  # the one host sync of the decode loop
        total_s = time.perf_counter() - started
        if not ignore_eos:
            rows = cut_at_end(rows, end_id)
        return GenerationResult(rows, context_s, total_s, {"compute_dtype": dtype_name(self.compute_dtype),
                                                           "cuda_graphs": True})

    def _next(self, logits: torch.Tensor, sampling: Sampling, generator) -> torch.Tensor:
        token = sample(logits, sampling, generator)
        if not sampling.greedy:  # ranks sample independently; take rank 0's draw
            token = broadcast(token.contiguous())
        return token
