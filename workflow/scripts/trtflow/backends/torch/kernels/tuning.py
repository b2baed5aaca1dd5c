"""Block sizes for the linear kernels: the candidates, timing them as the decode step runs them, and the table an
engine keeps of what was chosen.

The engine rule tunes at build for every row tile up to its max_batch_size (`covering`; with weight-only int8 also
the context's row tile) and records the table in the engine; a job that opens the engine reads it back
(`TuningTable.from_json`) and so starts without timing anything. A shape never tuned falls back to Triton's
autotuner at its first launch.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import torch
import triton

from .launch import COMPILE_ONLY, MAX_BATCH, row_tile
from .split import chunk

# The candidates: those best or within a few percent of it for some linear in benchmarks/kernel_bench.py's sweeps,
# and narrow strips for small models. Each is compiled at build for every shape: fewer candidates, a shorter build.
ROW_BLOCKS = [triton.Config({"BLOCK_N": n, "BLOCK_K": k}, num_warps=w)  # one row: a reduction
              for n, k, w in ((1, 1024, 2), (1, 1024, 4), (2, 1024, 4), (4, 1024, 8), (4, 512, 2), (4, 512, 4),
                              (4, 512, 8), (16, 128, 4), (32, 128, 4), (64, 128, 8))]
DOT_BLOCKS = [triton.Config({"BLOCK_N": n, "BLOCK_K": k}, num_warps=w, num_stages=s)  # 2-64 rows: tl.dot tiles
              for n, k, w, s in ((16, 128, 4, 4), (16, 256, 4, 4), (16, 512, 8, 3), (32, 128, 4, 4), (64, 64, 4, 3),
                                 (64, 128, 8, 4))]
# 2-64 rows, K split (split.py): wider blocks, so fewer reads of x, on as many programs as the narrow ones
SPLIT_BLOCKS = [triton.Config({"BLOCK_N": n, "BLOCK_K": k, "SPLIT_K": split}, num_warps=w, num_stages=s)
                for n, k, w, s, split in ((32, 128, 4, 4, 4), (64, 64, 4, 3, 2), (64, 64, 4, 3, 4), (64, 128, 8, 4, 2),
                                          (64, 128, 8, 4, 8))]
BLOCKS = ROW_BLOCKS + DOT_BLOCKS + SPLIT_BLOCKS
_DOT = {id(config) for config in DOT_BLOCKS + SPLIT_BLOCKS}
DOT_TILE_LIMIT = 8192  # weight elements per strip on the tl.dot path (more spill registers)


def fitting(configs, named_args, **kwargs):
    """The candidates worth timing: those of the batch's path (ROW_BLOCKS for one row, DOT_BLOCKS and, for a kernel
    with a split-K workspace, SPLIT_BLOCKS above) whose strips are no wider than the input rounded up to 128, on the
    tl.dot path hold at most DOT_TILE_LIMIT weights, and split K only into chunks of at least a strip each.
    (Triton's early_config_prune signature: named_args has `ws_ptr` where the kernel can split.)"""
    width = kwargs["K"]
    widest = max(128, triton.next_power_of_2(width))
    dot = kwargs["BLOCK_M"] > 1
    splits = "ws_ptr" in named_args

    def fits(c):
        split = c.kwargs.get("SPLIT_K", 1)
        return ((id(c) in _DOT) == dot and c.kwargs["BLOCK_K"] <= widest
                and (not dot or c.kwargs["BLOCK_N"] * c.kwargs["BLOCK_K"] <= DOT_TILE_LIMIT)
                and (split == 1 or splits and (split - 1) * chunk(width, split, c.kwargs["BLOCK_K"]) < width))
    return [c for c in configs if fits(c)]


def candidates(batch: int, width: int, splits: bool = True) -> list[triton.Config]:
    """The candidates for `batch` rows over inputs `width` wide; `splits`: the kernel can split K (not the
    lm_head's argmax)."""
    return fitting(BLOCKS, {"ws_ptr": None} if splits else {}, BLOCK_M=row_tile(batch), K=width)


def candidates_of(linear: str, batch: int, width: int) -> list[triton.Config]:
    """The candidates for one of step.KernelStep.linears: the lm_head's argmax never splits K."""
    return candidates(batch, width, splits=linear != "lm_head")


def _options(config: triton.Config) -> dict:
    return {**config.kwargs, "num_warps": config.num_warps, "num_stages": config.num_stages}


def _entry(field: str, key, config: triton.Config, **extra) -> dict:
    return {field: list(key), **extra, "kwargs": config.kwargs, "num_warps": config.num_warps,
            "num_stages": config.num_stages}


def _config(entry: dict) -> triton.Config:
    return triton.Config(entry["kwargs"], num_warps=entry["num_warps"], num_stages=entry["num_stages"])


class TuningTable:
    """The block sizes one engine's linear kernels run with: per linear.shape_of key (row tile, N, K, dtypes) as
    `tune` chose them, and per kernel what the autotuner chose for shapes never tuned."""

    def __init__(self):
        self.chosen: dict[tuple, triton.Config] = {}
        self._autotuners: dict[str, triton.runtime.Autotuner] = {}
        self._recorded: dict[str, dict[tuple, triton.Config]] = {}  # autotuner choices read before its first use

    def has(self, key: tuple) -> bool:
        return key in self.chosen

    def kernel_for(self, kernel, autotune_key: list[str], key: tuple):
        """(what to launch, its block-size options): `kernel` with the chosen blocks, else its autotuner."""
        if key in self.chosen:
            return kernel, _options(self.chosen[key])
        return self._autotuner(kernel, autotune_key), {}

    def _autotuner(self, kernel, autotune_key: list[str]):
        name = kernel.fn.__name__
        if name not in self._autotuners:
            tuner = triton.autotune(configs=BLOCKS, key=autotune_key, pre_hook=_zero_row_sums,
                                    prune_configs_by={"early_config_prune": fitting})(kernel)
            tuner.cache.update(self._recorded.pop(name, {}))
            self._autotuners[name] = tuner
        return self._autotuners[name]

    def to_json(self) -> list[dict]:
        autotuned = {**self._recorded, **{name: tuner.cache for name, tuner in self._autotuners.items()}}
        return ([_entry("shape", key, config) for key, config in sorted(self.chosen.items(), key=str)]
                + [_entry("key", key, config, kernel=name) for name, cache in sorted(autotuned.items())
                   for key, config in sorted(cache.items(), key=str)])

    @classmethod
    def from_json(cls, recorded: list[dict]) -> TuningTable:
        """The table an engine recorded. Autotuner entries of engines built before the kernels were split (no
        `kernel`) are left out: those shapes are autotuned again at first use."""
        table = cls()
        for entry in recorded:
            if "shape" in entry:
                table.chosen[tuple(entry["shape"])] = _config(entry)
            elif "kernel" in entry:
                table._recorded.setdefault(entry["kernel"], {})[tuple(entry["key"])] = _config(entry)
        return table


def _zero_row_sums(kwargs: dict, reset_only: bool = False) -> None:
    """The autotuner's hook before each candidate's launch and after the last: a row_stats buffer the kernel writes
    is zeroed, since a candidate of wider blocks writes fewer parts and would leave a narrower one's behind for the
    layer norm that reads them all (operands.row_stats). Every other output is written whole by any candidate."""
    if kwargs.get("sums_out_ptr") is not None:
        kwargs["sums_out_ptr"].zero_()


def covering(batch_sizes: list[int]) -> list[int]:
    """Batch sizes whose tuning covers every batch up to the largest of `batch_sizes`: those given and the largest
    of each row tile below (a choice is per row tile), so that no job meets a batch tuned at none of them."""
    top = max(batch_sizes)
    tiles = {row_tile(b) for b in range(1, min(top, MAX_BATCH) + 1)}
    return sorted(set(batch_sizes) | {tile for tile in tiles if tile <= top})


def time_in_graph(launches, repeats: int = 20) -> float:
    """Microseconds per launch of `launches` (callables, say one per layer), captured once as one CUDA graph and
    replayed: as a decode step meets each kernel (after the previous kernel, on weights not in L2, with PDL)."""
    for launch in launches:  # compile, warm
        launch()
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for launch in launches:
            launch()
    for _ in range(3):
        graph.replay()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeats):
        graph.replay()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) * 1000 / repeats / len(launches)


@contextmanager
def compiling_in_parallel():
    """Inside, the linear launches only compile their kernel, on a pool of threads (Triton's AsyncCompileMode); on
    leaving, every kernel is compiled. `tune` compiles all its candidates this way before timing them (one by one
    they were most of a build from an empty Triton cache: decisions.md). Before Triton 3.4, nothing ahead."""
    try:
        from triton.runtime._async_compile import AsyncCompileMode
    except ImportError:
        yield
        return
    with ThreadPoolExecutor(len(os.sched_getaffinity(0))) as pool, AsyncCompileMode(pool):  # the job's cores
        token = COMPILE_ONLY.set(True)
        try:
            yield
        finally:
            COMPILE_ONLY.reset(token)


def time_step(step, batch: int, caches: list[torch.Tensor], repeats: int = 20) -> float:
    """Microseconds per greedy step of `step` (a step.KernelStep) over `batch` rows of `caches` (one contiguous
    [batch, 2, heads, capacity, head_dim] per layer), captured as one CUDA graph with the state reset each step."""
    from ..state import DecodeState
    from .operands import argmax_slots

    device = caches[0].device
    state = DecodeState.zeros(batch, step.capacity, device, argmax_slots(batch, device))
    span = min(step.capacity - 1, 64)  # each row attends over this many filled slots

    def one_step():
        state.positions.fill_(span)
        state.step.zero_()
        step.greedy(state, caches)

    return time_in_graph([one_step], repeats)


@torch.inference_mode()
def tune(step, batch: int, caches: list[torch.Tensor] | None = None) -> dict[str, tuple[float, triton.Config]]:
    """Choose the block sizes of `step`'s linears (a step.KernelStep) at `batch` rows into its tuning table. Every
    fitting candidate is compiled, then timed as the step runs it: each linear over all layers' own weights in one
    CUDA graph (Triton's autotuner times one launch at a time and misranked these microsecond kernels). With
    `caches` (the engine's static cache, `batch` rows), the candidates are then ranked again by the whole greedy
    step they give, one linear at a time: alone in a graph, a kernel of few programs overlaps its own next launch
    under PDL and looks faster than it runs in the step (decisions.md). Returns each linear's (µs per launch alone,
    choice)."""
    from .linear import shape_of

    table = step.tuning
    plans = {name: (shape_of(batch, weight, x), launches, candidates_of(name, batch, weight.shape[1]))
             for name, (weight, x, launches) in step.linears(batch).items()}
    with compiling_in_parallel():
        for key, launches, configs in plans.values():
            for config in configs:
                table.chosen[key] = config
                launches[0]()  # every layer's launch is the same kernel
    alone, chosen = {}, {}  # per linear: (µs per launch alone, config) of every candidate this GPU runs; the choice
    for name, (key, launches, configs) in plans.items():
        alone[name] = []
        for config in configs:
            table.chosen[key] = config
            try:
                alone[name].append((time_in_graph(launches, repeats=10), config))
            except triton.runtime.errors.OutOfResources:  # more shared memory than this GPU has
                continue
        chosen[name] = min(alone[name], key=lambda entry: entry[0])
        table.chosen[key] = chosen[name][1]
    if caches is not None:
        for name, (key, _, _) in plans.items():
            in_step = []
            for entry in alone[name]:
                table.chosen[key] = entry[1]
                in_step.append((time_step(step, batch, caches), entry))
            chosen[name] = min(in_step, key=lambda pair: pair[0])[1]
            table.chosen[key] = chosen[name][1]
    return chosen
