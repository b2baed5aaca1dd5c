"""The GPU fast path: a static KV cache allocated once, the decode step replayed as a CUDA graph.

gpt-fast's three ideas: the cache is sized once at the engine's limits (max_batch_size ×
(max_input_len + max_output_len)), each decode step attends over that fixed span behind a mask (trtflow's
kernels, `decode: kernels`, over each row's filled slots), so every step has the same shapes; the step
(forward, greedy pick, bookkeeping) is captured once per batch size and replayed with no host sync inside the
loop. The `compile*` decode paths compile the step first (torch.compile / inductor) to fuse the small
element-wise kernels between the matmuls; `kernels` runs trtflow's Triton kernels up to their batch limit
(kernels.KernelStep) and compiles larger batches.

The context phase (packed prompts) is captured too, per set of prompt lengths, once that set has been
seen twice (a benchmark repeats its shapes; summarization rarely does, and then runs eagerly).
"""

from __future__ import annotations

from collections import OrderedDict

import torch

from ...flags import COMPILED_PATHS
from .kvcache import ContiguousKV
from .model import ParallelGPT2
from .state import DecodeState


class StaticDecoder:
    """`decode`: the engine's decode path (flags.DECODE_PATHS); `kernels`: the kernels' step where they run it."""

    def __init__(self, model: ParallelGPT2, max_batch: int, capacity: int, dtype: torch.dtype,
                 device: torch.device, decode: str = "cuda-graph", capture: bool = True, kernels=None):
        d = model.dims
        self.model, self.device, self.capacity = model, device, capacity
        self.cache = ContiguousKV(d.layers, max_batch, model.local_heads, capacity, model.head_dim, dtype, device)
        self._graphs: dict[int, tuple] = {}
        self._prefills: OrderedDict[tuple[int, ...], tuple] = OrderedDict()
        self._seen: dict[tuple[int, ...], int] = {}
        # Graphs only on a GPU, and only on one rank: a captured step with NCCL all-reduces hung at tp 2 on two
        # H100s (tests/test_gpu.py); there the static cache decodes uncaptured, as on a CPU.
        self.capture = capture and device.type == "cuda"
        self._pool = torch.cuda.graph_pool_handle() if self.capture else None
        # one stream for every warm-up and capture: cuBLAS keeps a workspace per stream it ran on (32 MiB each on
        # Hopper), so a fresh stream per capture grew the engine's memory by that much with each new shape
        self._side = torch.cuda.Stream(device) if self.capture else None
        self._multiply_sum = decode == "compile-gemv"
        self.kernels = kernels if self.capture else None
        # on CPU the same step runs eagerly; on a GPU torch.compile is set up when a step first needs it (importing
        # its compiler takes seconds, which an engine whose every batch runs trtflow's kernels never pays)
        self._compile_mode = decode if decode in COMPILED_PATHS and device.type == "cuda" else None
        self._compiled = None

    def _step_fn(self):
        """model.decode, compiled where the decode path asks for it."""
        if self._compile_mode is None:
            return self.model.decode
        if self._compiled is None:
            if self._compile_mode in ("compile-gemv", "compile-max-autotune"):
                import torch._inductor.config as inductor_config

                inductor_config.coordinate_descent_tuning = True
            # max-autotune: autotuned Triton GEMM templates for the skinny decode matmuls
            mode = "max-autotune-no-cudagraphs" if self._compile_mode == "compile-max-autotune" else None
            self._compiled = torch.compile(self.model.decode, mode=mode, dynamic=False)
        return self._compiled

    def uses_kernels(self, batch: int) -> bool:
        """Whether a decode step of `batch` rows runs trtflow's kernels (decode: kernels)."""
        if self.kernels is None:
            return False
        from .kernels import MAX_BATCH  # imports Triton: only where the kernels run

        return batch <= MAX_BATCH

    def _state(self, batch: int) -> DecodeState:
        best = None
        if self.uses_kernels(batch):
            from .kernels import argmax_slots

            best = argmax_slots(batch, self.device)
        return DecodeState.zeros(batch, self.capacity, self.device, best)

    def _step(self, s: DecodeState, cache: ContiguousKV) -> None:
        if self.uses_kernels(s.tokens.shape[0]):
            self.kernels.greedy(s, cache.kv)  # the same step and bookkeeping, as kernels
            return
        small = s.tokens.shape[0] <= 8  # multiply-and-sum matmuls only pay off for a few rows
        logits = self._step_fn()(s.tokens, s.positions, cache, self.capacity,
                                 multiply_sum=self._multiply_sum and small)
        token = logits.argmax(-1)
        token = torch.where(s.finished & s.stop_at_end, s.end_id, token)
        s.finished.logical_or_(token == s.end_id)
        s.out.index_copy_(1, s.step, token[:, None])
        s.tokens.copy_(token)
        s.positions.add_(1)
        s.step.add_(1)

    def _captured(self, run, warm_ups: int):
        """`run` warmed up (and compiled) `warm_ups` times outside the capture, then captured as one CUDA graph, all on
        the one side stream: (the graph, what the captured call returned)."""
        self._side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(self._side):
            for _ in range(warm_ups):
                run()
        torch.cuda.current_stream(self.device).wait_stream(self._side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool, stream=self._side):
            out = run()
        return graph, out

    def _graph(self, batch: int):
        """(graph, state, cache) for a batch size; on CPU the same step runs without capture."""
        if batch not in self._graphs and not self.capture:
            self._graphs[batch] = (None, self._state(batch), self.cache.rows(batch))
        if batch not in self._graphs:
            state, cache = self._state(batch), self.cache.rows(batch)
            graph, _ = self._captured(lambda: self._step(state, cache), warm_ups=3)
            self._graphs[batch] = (graph, state, cache)
        return self._graphs[batch]

    def prefill(self, batch_ids: list[list[int]], packed: bool, max_graphs: int = 16) -> torch.Tensor:
        """Fill the cache with the prompts; returns the first generated token of each (greedy)."""
        lengths = tuple(len(p) for p in batch_ids)
        cache = self.prefill_cache(len(lengths))
        flat = torch.tensor([t for p in batch_ids for t in p], device=self.device)
        self._seen[lengths] = self._seen.get(lengths, 0) + 1
        if not packed or not self.capture or (lengths not in self._prefills and self._seen[lengths] < 2):
            return self.model.context(list(flat.split(lengths)), cache, packed).argmax(-1)
        if lengths not in self._prefills:
            ids = torch.zeros_like(flat)

            def run():
                return self.model.context(list(ids.split(lengths)), cache, True).argmax(-1)

            graph, first = self._captured(run, warm_ups=1)
            self._prefills[lengths] = (graph, ids, first)
            if len(self._prefills) > max_graphs:
                self._prefills.popitem(last=False)
        graph, ids, first = self._prefills[lengths]
        ids.copy_(flat)
        graph.replay()
        return first.clone()

    def prefill_cache(self, batch: int) -> ContiguousKV:
        return self._graph(batch)[2]

    def decode(self, first: torch.Tensor, lengths: list[int], steps: int, end_id: int, stop_at_end: bool,
               check_every: int = 16) -> torch.Tensor:
        """Tokens after `first` for `steps` steps; returns [B, 1 + steps] (first token included)."""
        graph, s, cache = self._graph(first.shape[0])
        s.tokens.copy_(first)
        s.positions.copy_(torch.tensor(lengths, device=self.device))
        s.step.fill_(1)
        s.end_id.fill_(end_id)
        s.stop_at_end.fill_(stop_at_end)
        s.finished.copy_((first == end_id) & stop_at_end)
        s.out[:, 0] = first
        for index in range(steps):
            if stop_at_end and index % check_every == 0 and bool(s.finished.all()):
                break
            graph.replay() if graph is not None else self._step(s, cache)
        return s.out[:, : 1 + steps].clone()
