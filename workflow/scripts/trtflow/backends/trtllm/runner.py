"""Run TensorRT-LLM engines behind trtflow's generator interface (tensorrt_llm.runtime.ModelRunnerCpp, or under
1.x ModelRunner for an engine without in-flight batching, as TensorRT-LLM's examples/run.py chooses).

Every rank (started by `trtflow.infra.launch -n <world size>`, mpirun as TensorRT-LLM expects) loads its own
engine file through the runner's from_dir(engine_dir, rank); generate/summarize/benchmark then call
`generate` exactly as they do for the torch backend, so ROUGE and timings are computed the same way.
The engine's PROVENANCE.json is checked first: an engine built by another TensorRT-LLM version or for
another GPU architecture is refused with what to rebuild.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from ...formats.artifact import read_json, verify_manifest
from ...formats.provenance import accelerator
from ...generation import EngineMismatchError, GenerationResult, Sampling, cut_at_end, enforce_limits
from ...infra.dist import DistInfo


def engine_layout(config: dict) -> dict:
    """World size, dtype and limits from a 0.8 (builder_config) or 1.x (pretrained/build_config) config.json."""
    if "builder_config" in config:
        b = config["builder_config"]
        return {"world_size": b["tensor_parallel"] * b.get("pipeline_parallel", 1), "dtype": b["precision"],
                "vocab_size": b["vocab_size"], "max_batch_size": b["max_batch_size"],
                "max_input_len": b["max_input_len"], "max_output_len": b["max_output_len"]}
    pretrained, build = config["pretrained_config"], config["build_config"]
    return {"world_size": pretrained["mapping"]["world_size"], "dtype": pretrained["dtype"],
            "vocab_size": pretrained["vocab_size"], "max_batch_size": build["max_batch_size"],
            "max_input_len": build["max_input_len"], "max_output_len": build["max_seq_len"] - build["max_input_len"]}


def check_provenance(engine_dir: Path, installed: str) -> None:
    record = read_json(engine_dir / "PROVENANCE.json")
    built_with = record.get("tensorrt_llm")
    if built_with != installed:
        raise EngineMismatchError(f"{engine_dir} was built with TensorRT-LLM {built_with} but {installed} is running; "
                                  "rebuild the engine in this environment (delete the folder and rerun)")
    built_on = (record.get("accelerator") or {}).get("sm")
    running_on = accelerator()["sm"]
    if built_on and running_on and built_on != running_on:
        raise EngineMismatchError(f"{engine_dir} was built for SM {built_on} but this GPU is SM {running_on}; "
                                  "TensorRT engines are tied to the GPU architecture: rebuild it on this GPU")


def supports_inflight_batching(config: dict) -> bool:
    """Whether TensorRT-LLM 1.x's ModelRunnerCpp (an Executor with in-flight batching) can load a transformer
    engine of this config.json: ModelConfig::supportsInflightBatching (cpp/include/tensorrt_llm/runtime/
    modelConfig.h) asks for the GPT attention plugin, packed input, and a paged KV cache or none."""
    build = config["build_config"]
    plugins = build.get("plugin_config") or {}
    return (bool(plugins.get("gpt_attention_plugin")) and bool(plugins.get("remove_input_padding"))
            and str(build.get("kv_cache_type", "CONTINUOUS")).upper() in ("PAGED", "DISABLED"))


def python_session(version: str, config: dict) -> bool:
    """1.x runs an engine without in-flight batching in its Python session (ModelRunner), as its examples/run.py
    does; 0.8's ModelRunnerCpp (GptSession) runs every engine."""
    return not version.startswith("0.") and not supports_inflight_batching(config)


def sampling_keywords(version: str, sampling: Sampling, min_new_tokens: int, in_python: bool = False) -> dict:
    """Sampling keywords under the names each runtime's `generate` acts on: 0.8's ModelRunnerCpp and 1.x's
    ModelRunner read them as SamplingConfig fields (`min_length`), 1.x's ModelRunnerCpp as executor
    SamplingConfig parameters (`min_tokens`); each drops a name it does not know without a word."""
    minimum = "min_length" if version.startswith("0.") or in_python else "min_tokens"
    return {"top_k": sampling.top_k, "top_p": sampling.top_p, "temperature": sampling.temperature,
            "num_beams": sampling.num_beams, "random_seed": sampling.random_seed, minimum: min_new_tokens}


def runner_options(version: str, flags: dict) -> dict:
    """from_dir keywords beyond engine_dir and rank. 1.x moved fp32 accumulation of context FMHA from the
    build to the runtime (trtllm-build has no flag for it), so it is passed here; 0.8 baked it into the engine."""
    if version.startswith("0.") or not flags.get("enable_context_fmha_fp32_acc"):
        return {}
    return {"enable_context_fmha_fp32_acc": True}


class TrtllmGenerator:
    def __init__(self, engine_dir: str | Path, dist: DistInfo):
        import tensorrt_llm
        from tensorrt_llm import runtime

        engine_dir = Path(engine_dir)
        verify_manifest(engine_dir)
        check_provenance(engine_dir, tensorrt_llm.__version__)
        record = read_json(engine_dir / "PROVENANCE.json")
        config = read_json(engine_dir / "config.json")
        layout = engine_layout(config)
        if layout["world_size"] != dist.world_size:
            raise EngineMismatchError(f"{engine_dir} was built for world size {layout['world_size']} but "
                                      f"{dist.world_size} rank(s) are running; launch with -n {layout['world_size']}")
        if "end_id" not in record:
            raise EngineMismatchError(f"{engine_dir}/PROVENANCE.json does not record the tokenizer's end and pad "
                                      "ids (an engine of an older trtflow): delete the folder and rerun")
        self.version = tensorrt_llm.__version__
        self.dist = dist
        self.device = dist.device
        self.vocab_size = layout["vocab_size"]
        self.compute_dtype = layout["dtype"]
        self.limits = {k: layout[k] for k in ("max_batch_size", "max_input_len", "max_output_len")}
        self.end_id, self.pad_id = record["end_id"], record["pad_id"]
        self.in_python = python_session(self.version, config)
        if self.in_python and dist.is_main:
            print(f"trtflow: {engine_dir.name} has no in-flight batching (GPT attention plugin, packed input and a "
                  "paged KV cache: build.use_inflight_batching), which TensorRT-LLM's C++ runner needs; running "
                  "it in the Python session (ModelRunner), as TensorRT-LLM's examples/run.py does", flush=True)
        self.runtime = "ModelRunner" if self.in_python else "ModelRunnerCpp"
        self.runner = getattr(runtime, self.runtime).from_dir(str(engine_dir), rank=dist.rank,
                                                              **runner_options(self.version, record.get("build", {})))

    def check_limits(self, batch: list[list[int]], max_new_tokens: int) -> None:
        enforce_limits(self.limits, batch, max_new_tokens)

    def generate(self, batch: list[list[int]], max_new_tokens: int, sampling: Sampling = Sampling(),
                 end_id: int | None = None, ignore_eos: bool = False) -> GenerationResult:
        """Every rank calls the runner; the outputs are read on rank 0 only, as run.py does (1.x's
        ModelRunnerCpp returns `[]` on the other ranks), so the others get no rows."""
        self.check_limits(batch, max_new_tokens)
        end_id = self.end_id if end_id is None else end_id
        started = time.perf_counter()
        out = self.runner.generate(
            [torch.tensor(p, dtype=torch.int32) for p in batch], max_new_tokens=max_new_tokens, end_id=end_id,
            pad_id=self.pad_id, output_sequence_lengths=True, return_dict=True,
            **sampling_keywords(self.version, sampling, max_new_tokens if ignore_eos else 1, self.in_python))
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        total_s = time.perf_counter() - started
        info = {"compute_dtype": self.compute_dtype, "runtime": self.runtime}
        if not self.dist.is_main:
            return GenerationResult([], float("nan"), total_s, info)
        ids, lengths = out["output_ids"], out["sequence_lengths"]
        rows = [ids[b][0][len(prompt): int(lengths[b][0])].tolist() for b, prompt in enumerate(batch)]
        if not ignore_eos:
            rows = cut_at_end(rows, end_id)
        return GenerationResult(rows, float("nan"), total_s, info)
