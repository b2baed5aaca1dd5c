"""Build flags as a type, and the content keys that name converted and engine folders.

`BuildFlags` is the config's `build:` section as it takes effect: build.py's implications applied
(in-flight batching turns on the attention plugin, padding removal and paged KV; fp32-accumulation
FMHA replaces plain FMHA), plugin dtypes explicit, and `tokens_per_block` only where a paged cache uses
it. It crosses every boundary as one canonical JSON object: rule param, stage CLI, the engine's
config.json and PROVENANCE.json; readers get the dataclass back with `from_json`.

Keys are short stable hashes of everything that changes a folder's bytes, so switching a setting back
finds the earlier folder again:
  convert key  the model's identity, the storage dtype and the converter's format version;
  build key    the convert key, the backend and its version, tp and the normalised flags.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

TORCH_BACKEND_VERSION = "torch-runtime-3"
CONVERTER_VERSION = 1
DTYPES = ("float16", "float32", "bfloat16")

# The torch backend's decode paths (config `build.decode`), each as the pair of build flags it stands for
# (cuda_graphs, torch_compile): the engine's key is made of the pair, so the spellings before `decode` (those two
# keys) name the same engines.
DECODE_PATHS: dict[str, tuple[bool, bool | str]] = {
    "eager": (False, False),  # the step as written, a KV cache per request
    "cuda-graph": (True, False),  # a static KV cache, the step replayed as a CUDA graph
    "compile": (True, True),  # that step compiled by torch.compile (inductor)
    "compile-max-autotune": (True, "max-autotune"),  # … with autotuned Triton GEMM templates
    "compile-gemv": (True, "gemv"),  # … with the matmuls written as multiply-and-sum (few rows)
    "kernels": (True, "triton"),  # trtflow's Triton kernels up to 64 rows (fp16/bf16/int8, tp 1), compiled above
}
COMPILED_PATHS = ("compile", "compile-max-autotune", "compile-gemv", "kernels")
# GPU architectures (compute capability) where `kernels` was measured the fastest decode path and its greedy tokens
# equal to HF's (H100 and H200: docs/benchmarks); elsewhere `auto` takes the CUDA graph.
KERNEL_ARCHS = ("9.0",)


def auto_decode(config: dict, tp: int) -> str:
    """What `build.decode: auto` runs at `tp` on the jobs' GPUs (config `gpu_arch`, settled at DAG time): eager
    without a GPU, with a paged cache (which always decodes eagerly) and for the trtllm backend (not its setting);
    the static cache at tp > 1 (uncaptured there); trtflow's kernels for fp16/bf16 on a KERNEL_ARCHS GPU; else the
    CUDA graph."""
    build, arch = config["build"], config.get("gpu_arch", "none")
    if build["backend"] != "torch" or arch in ("none", "auto") or build["paged_kv_cache"]:
        return "eager"
    if tp > 1:
        return "cuda-graph"
    if config["convert"]["storage_type"] in ("float16", "bfloat16") and arch in KERNEL_ARCHS:
        return "kernels"
    return "cuda-graph"


def decode_of(config: dict, tp: int) -> str:
    """The decode path an engine at `tp` is built with: `build.decode`, `auto` resolved."""
    decode = config["build"]["decode"]
    return auto_decode(config, tp) if decode == "auto" else decode


def decode_path(cuda_graphs: bool, torch_compile: bool | str) -> str:
    """The decode path a pair of the older flags runs (torch_compile without cuda_graphs never did anything)."""
    if not cuda_graphs:
        return "eager"
    return next(name for name, pair in DECODE_PATHS.items() if pair == (True, torch_compile))


@dataclass(frozen=True)
class RuntimeOptions:
    """What the build flags mean to the torch runtime."""

    fused_attention: bool  # the attention plugin's counterpart: scaled_dot_product_attention
    packed: bool  # remove_input_padding: prompts as one token stream
    paged: bool
    tokens_per_block: int | None
    decode: str  # a name of DECODE_PATHS


@dataclass(frozen=True)
class BuildFlags:
    backend: str
    use_gpt_attention_plugin: str | None
    use_gemm_plugin: str | None
    remove_input_padding: bool
    enable_context_fmha: bool
    enable_context_fmha_fp32_acc: bool
    paged_kv_cache: bool
    use_inflight_batching: bool
    tokens_per_block: int | None
    max_batch_size: int
    max_input_len: int
    max_output_len: int
    cuda_graphs: bool
    torch_compile: bool | str
    use_weight_only: bool
    weight_only_precision: str | None

    @classmethod
    def from_config(cls, build: dict, engine_dtype: str) -> BuildFlags:
        """The flags of a validated `build:` section as they take effect for an engine of `engine_dtype`."""
        flags = dict(build)
        if flags.get("decode") == "auto":
            raise ValueError("decode: auto is resolved per tp on the jobs' machine: flags.build_flags(config, tp)")
        if "decode" in flags:  # else the older pair itself
            flags["cuda_graphs"], flags["torch_compile"] = DECODE_PATHS[flags.pop("decode")]
        for plugin in ("use_gpt_attention_plugin", "use_gemm_plugin"):
            if flags[plugin] in (False, None):
                flags[plugin] = None
            elif flags[plugin] is True:
                flags[plugin] = engine_dtype
        if flags["use_inflight_batching"]:
            flags["use_gpt_attention_plugin"] = flags["use_gpt_attention_plugin"] or "float16"
            flags["remove_input_padding"] = True
            flags["paged_kv_cache"] = True
        if flags["enable_context_fmha_fp32_acc"]:
            flags["enable_context_fmha"] = False
        if not flags["paged_kv_cache"]:
            flags["tokens_per_block"] = None
        if not flags["use_weight_only"]:
            flags["weight_only_precision"] = None  # build.py reads it only with --use_weight_only
        return cls.from_json(flags)

    @classmethod
    def from_json(cls, obj: dict) -> BuildFlags:
        names = {f.name for f in fields(cls)}
        unknown, missing = set(obj) - names, names - set(obj)
        if unknown or missing:
            raise ValueError(f"build flags do not match this trtflow: unknown {sorted(unknown)}, missing {sorted(missing)}")
        return cls(**obj)

    def to_json(self) -> dict[str, Any]:
        return dict(sorted(asdict(self).items()))

    def canonical(self) -> str:
        return canonical(self.to_json())

    @property
    def decode(self) -> str:
        return decode_path(self.cuda_graphs, self.torch_compile)

    @property
    def limits(self) -> dict[str, int]:
        return {"max_batch_size": self.max_batch_size, "max_input_len": self.max_input_len,
                "max_output_len": self.max_output_len}

    def compiles_at_build(self, tp: int) -> bool:
        """Whether the engine rule compiles for the GPU, and so holds `tp` GPUs: TensorRT always; the torch
        backend when torch_compile applies to a captured decode step (tp 1, CUDA graphs, contiguous cache)."""
        if self.backend == "trtllm":
            return True
        return bool(self.torch_compile) and self.cuda_graphs and not self.paged_kv_cache and tp == 1

    def runtime(self) -> RuntimeOptions:
        return RuntimeOptions(fused_attention=bool(self.use_gpt_attention_plugin), packed=self.remove_input_padding,
                              paged=self.paged_kv_cache, tokens_per_block=self.tokens_per_block,
                              decode=self.decode)


def canonical(obj: Any) -> str:
    """One canonical string for a group of settings passed to a rule as a single param."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def digest(obj: Any) -> str:
    """The 10 hex digits that name a keyed folder or file: sha256 of the canonical JSON."""
    return hashlib.sha256(canonical(obj).encode()).hexdigest()[:10]


def model_identity(spec: dict) -> dict:
    """What identifies a model's checkpoint bytes, known before anything is downloaded."""
    if spec["source"] == "hf":
        return {"source": "hf", "repo_id": spec["repo_id"], "revision": spec.get("revision", "main")}
    if spec["source"] == "local":
        return {"source": "local", "path": str(Path(spec["path"]).expanduser().resolve())}
    return {"source": "demo", "recipe": dict(sorted((spec.get("recipe") or {}).items()))}


def compiler_versions() -> str:
    """torch and Triton as installed (package metadata: torch is not imported at DAG time). A torch engine
    with torch_compile holds kernels they made, so an upgrade must give it a new key."""
    from .formats.provenance import package_version

    return "+".join(f"{package}-{package_version(package)}" for package in ("torch", "triton")
                    if package_version(package))


def trtllm_identity(config: dict) -> str:
    """What a TensorRT engine is tied to beyond its flags: the flow, the TensorRT-LLM and TensorRT installed where
    the DAG is planned (package metadata; absent where the planner has none), and the jobs' GPU architecture
    (`gpu_arch`, settled at start): an engine for another GPU or TensorRT is another folder."""
    from .formats.provenance import package_version

    installed = [f"{name}-{version}" for name in ("tensorrt_llm", "tensorrt") if (version := package_version(name))]
    return "+".join([f"tensorrt_llm-{config['trtllm']['flow']}", *installed, f"sm-{config['gpu_arch']}"])


def backend_version(config: dict, tp: int) -> str:
    if config["build"]["backend"] == "trtllm":
        return trtllm_identity(config)
    if DECODE_PATHS[decode_of(config, tp)][1]:
        return f"{TORCH_BACKEND_VERSION}+{compiler_versions()}"
    return TORCH_BACKEND_VERSION


def build_flags(config: dict, tp: int) -> BuildFlags:
    """The flags of the engine at `tp`, `decode: auto` resolved (so the key says what runs)."""
    return BuildFlags.from_config({**config["build"], "decode": decode_of(config, tp)},
                                  config["convert"]["storage_type"])


def checkpoint_quantization(config: dict) -> str | None:
    """The weight-only precision a TensorRT-LLM 1.2 checkpoint is converted for: in 1.x weight-only quantization
    is a convert_checkpoint.py setting (its `quantization` block), not a trtllm-build flag. None for every other
    backend and flow, which quantize (if at all) while building the engine."""
    build = config["build"]
    if build["backend"] == "trtllm" and config["trtllm"]["flow"] == "1.2" and build["use_weight_only"]:
        return build["weight_only_precision"]
    return None


def convert_key(config: dict, model: str) -> str:
    """Names the converted folders of `model` (c-model and 1.2 checkpoint) for the current conversion settings."""
    identity = {"converter": CONVERTER_VERSION, "model": model_identity(config["models"][model]),
                "storage_type": config["convert"]["storage_type"]}
    if precision := checkpoint_quantization(config):
        identity["weight_only_precision"] = precision
    return digest(identity)


# transformers' attention for the HF reference (hf_reference.HFGenerator): GPT-2's eager attention, what transformers
# 4.36.1, TensorRT-LLM v0.8.0's pin, ran it with (GPT-2 got SDPA in mid-2024, huggingface/transformers#31172)
HF_ATTENTION = "eager"


def hf_summary_key(config: dict, model: str) -> str:
    """Names the HF summary of `model`: what its texts depend on (the checkpoint, the dataset, the summarize
    settings that shape the run and the reference's attention), never an engine setting."""
    summarize = config["summarize"]
    return digest({"model": model_identity(config["models"][model]), "dataset": summarize["dataset"],
                    **{k: summarize[k] for k in ("max_ite", "batch_size", "output_len", "max_input_length")},
                    "attention": HF_ATTENTION})


def build_key(config: dict, model: str, tp: int) -> str:
    """Names the engine folder of `model` at `tp` for the current config."""
    return digest({"backend": config["build"]["backend"], "backend_version": backend_version(config, tp),
                    "build": build_flags(config, tp).to_json(), "convert": convert_key(config, model), "tp": int(tp)})
