"""Build an engine with the backend its flags name; open any engine folder as this rank's `Generator`.

The stages reach the backends only through here.
"""

from __future__ import annotations

from pathlib import Path

from .flags import BuildFlags
from .formats.artifact import ArtifactError, read_json
from .generation import EngineMismatchError, Generator
from .infra.dist import DistInfo


def build_engine(source_dir: str | Path, out_dir: str | Path, flags: BuildFlags, build_key: str,
                 trtllm_settings: dict, token_ids: dict[str, int], compile_batch_sizes: list[int] | None = None) -> Path:
    """`token_ids` ({"end_id", "pad_id"}, from the model's tokenizer) are recorded in the engine folder, so
    every run of it stops and pads as the tokenizer says. `compile_batch_sizes`: the batch sizes the jobs
    will run, for a torch engine that compiles its decode step at build."""
    if flags.backend == "torch":
        from .backends.torch.build import build

        return build(source_dir, out_dir, flags, build_key, token_ids, compile_batch_sizes)
    from .backends.trtllm.build import build

    return build(source_dir, out_dir, flags, build_key, trtllm_settings, token_ids)


def trtllm_version() -> str:
    """The version of the TensorRT-LLM this Python can import; TrtllmUnavailable, with the provisioning
    steps, where there is none."""
    from .backends.trtllm.build import installed_version

    return installed_version()


def benchmark_with_tool(tool: str, engine_dir: str, build_key: str, settings: dict, hf_dir: str | None, model: str,
                        cases: list[tuple[int, int, int]], warm_up: int, num_runs: int, duration: float):
    """A trtllm engine measured by TensorRT-LLM's own tool (gptSessionBenchmark or trtllm-bench): its layout, and
    what was measured for each (batch, input, output) case (backends/trtllm/bench.py)."""
    from .backends.trtllm.bench import measure

    check_engine_key(engine_dir, build_key)
    return measure(tool, engine_dir, settings, hf_dir, model, cases, warm_up, num_runs, duration)


def engine_backend(engine_dir: str | Path) -> str:
    config_path = Path(engine_dir) / "config.json"
    if not config_path.is_file():
        raise ArtifactError(f"{config_path} is missing: {engine_dir} is not an engine folder; rebuild it")
    config = read_json(config_path)
    if "backend" in config:
        return config["backend"]
    return "trtllm"  # TensorRT-LLM writes builder_config/plugin_config (0.8) or version/build_config (1.x)


def check_engine_key(engine_dir: str | Path, build_key: str) -> None:
    """The engine in the folder must be the one the request names: an engine of other flags copied or moved
    into this folder would otherwise run and report the folder's key."""
    engine_dir = Path(engine_dir)
    recorded = read_json(engine_dir / "PROVENANCE.json").get("build_key") \
        if (engine_dir / "PROVENANCE.json").is_file() else None
    if recorded != build_key:
        raise EngineMismatchError(f"{engine_dir} holds the engine of build key {recorded}, not {build_key} (it was "
                                  f"copied or moved there): delete {engine_dir} and rerun; the workflow rebuilds it")


def open_engine(engine_dir: str | Path, dist: DistInfo, build_key: str | None = None) -> Generator:
    """This rank's generator for the engine in `engine_dir`; with `build_key`, only if it is that engine."""
    if build_key is not None:
        check_engine_key(engine_dir, build_key)
    backend = engine_backend(engine_dir)
    if backend == "torch":
        from .backends.torch.generator import TorchEngineGenerator

        return TorchEngineGenerator(engine_dir, dist)
    if backend != "trtllm":
        raise EngineMismatchError(f"{engine_dir}/config.json names backend {backend!r}, which trtflow cannot run")
    try:
        import tensorrt_llm  # noqa: F401
    except ImportError as err:
        raise EngineMismatchError(
            f"{engine_dir} is a TensorRT-LLM engine (config.json has no trtflow `backend`), and tensorrt_llm is not "
            "installed here: run this step in the TensorRT-LLM environment (README, 'Running on a GPU box with "
            "TensorRT-LLM'), or set build.backend: torch and rebuild") from err
    from .backends.trtllm.runner import TrtllmGenerator

    return TrtllmGenerator(engine_dir, dist)
