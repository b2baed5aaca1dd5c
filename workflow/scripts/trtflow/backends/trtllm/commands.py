"""The exact TensorRT-LLM build command lines for one normalised build config (reference/trtllm.md §2, §5.2, §6).

Flow "0.8": `examples/gpt/build.py --model_dir <c-model {tp}-gpu> --world_size tp …` (plugin config starts
from build.py's legacy all-off defaults, so only the flags given turn things on).
Flow "1.2": `trtllm-build --checkpoint_dir <trtllm-ckpt> …` (plugins default on there, so every flag is
passed explicitly, enable or disable).

Each builder returns the argv and the notes about flags the tool ignores, overrides or moves, so they are
reported instead of silently dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ...flags import BuildFlags


@dataclass
class BuildCommand:
    argv: list[str]
    expected_files: list[str]
    notes: list[str] = field(default_factory=list)


def engine_files_08(dtype: str, tp: int) -> list[str]:
    return [f"gpt_{dtype}_tp{tp}_rank{r}.engine" for r in range(tp)] + ["config.json"]


def engine_files_12(tp: int) -> list[str]:
    return [f"rank{r}.engine" for r in range(tp)] + ["config.json"]


def build_py(python: str, examples_dir: Path, cmodel_dir: Path, out_dir: Path, timing_cache: Path, tp: int,
             dtype: str, flags: BuildFlags, gpus_available: int) -> BuildCommand:
    argv = [python, str(examples_dir / "gpt" / "build.py"), "--model_dir", str(cmodel_dir), "--world_size", str(tp),
            "--output_dir", str(out_dir), "--timing_cache", str(timing_cache)]
    notes = [f"engine dtype {dtype} comes from the c-model's storage_dtype: build.py ignores --dtype and "
             "--hidden_act when --model_dir is given, so neither is passed"]
    if flags.use_inflight_batching:
        argv.append("--use_inflight_batching")
        notes.append("--use_inflight_batching turns on the GPT attention plugin, --remove_input_padding and "
                     "--paged_kv_cache inside build.py")
    if flags.use_gpt_attention_plugin:
        argv += ["--use_gpt_attention_plugin", flags.use_gpt_attention_plugin]
    if flags.use_gemm_plugin:
        argv += ["--use_gemm_plugin", flags.use_gemm_plugin]
    if flags.remove_input_padding and not flags.use_inflight_batching:
        argv.append("--remove_input_padding")
    if flags.enable_context_fmha:
        argv.append("--enable_context_fmha")
    if flags.enable_context_fmha_fp32_acc:
        argv.append("--enable_context_fmha_fp32_acc")
    if flags.paged_kv_cache and not flags.use_inflight_batching:
        argv.append("--paged_kv_cache")
    if flags.paged_kv_cache:
        argv += ["--tokens_per_block", str(flags.tokens_per_block)]
    if flags.use_weight_only:  # weight.py quantizes each rank's linears while building (QuantMode.use_weight_only)
        argv += ["--use_weight_only", "--weight_only_precision", flags.weight_only_precision]
    argv += ["--max_batch_size", str(flags.max_batch_size), "--max_input_len", str(flags.max_input_len),
             "--max_output_len", str(flags.max_output_len)]
    if tp > 1 and gpus_available >= tp:
        argv.append("--parallel_build")
    elif tp > 1:
        notes.append(f"--parallel_build not passed: {gpus_available} GPU(s) visible, {tp} needed (ranks build in turn)")
    for flag in ("cuda_graphs", "torch_compile"):
        if getattr(flags, flag):
            notes.append(f"{flag} is a torch-backend setting; build.py has no equivalent (use gptSessionBenchmark "
                         "--enable_cuda_graph at run time)")
    return BuildCommand(argv, engine_files_08(dtype, tp), notes + ignored_flag_notes(flags))


def ignored_flag_notes(flags: BuildFlags) -> list[str]:
    """Flags both tools accept and act on in no way with these settings: said in the build log, not refused.
    (tokens_per_block without a paged cache is dropped from the flags altogether: BuildFlags.from_config.)"""
    notes = []
    fmha = flags.enable_context_fmha or flags.enable_context_fmha_fp32_acc
    if fmha and not (flags.use_gpt_attention_plugin or flags.use_inflight_batching):
        notes.append("context FMHA runs inside the GPT attention plugin, which is off: the engine has no context "
                     "FMHA (the tool accepts the flag and ignores it)")
    return notes


def trtllm_build(program: str, checkpoint_dir: Path, out_dir: Path, timing_cache: Path, tp: int, flags: BuildFlags,
                 gpus_available: int) -> BuildCommand:
    def on_off(value: bool) -> str:
        return "enable" if value else "disable"

    argv = [program, "--checkpoint_dir", str(checkpoint_dir), "--output_dir", str(out_dir),
            "--gpt_attention_plugin", flags.use_gpt_attention_plugin or "disable",
            "--gemm_plugin", flags.use_gemm_plugin or "disable",
            "--remove_input_padding", on_off(flags.remove_input_padding),
            "--context_fmha", on_off(flags.enable_context_fmha or flags.enable_context_fmha_fp32_acc),
            "--kv_cache_type", "paged" if flags.paged_kv_cache else "continuous"]
    if flags.paged_kv_cache:
        argv += ["--tokens_per_block", str(flags.tokens_per_block)]
    argv += ["--max_batch_size", str(flags.max_batch_size), "--max_input_len", str(flags.max_input_len),
             "--max_seq_len", str(flags.max_input_len + flags.max_output_len),
             "--input_timing_cache", str(timing_cache), "--output_timing_cache", str(timing_cache),
             "--workers", str(max(1, min(tp, gpus_available)))]
    notes = ["engine dtype comes from the checkpoint (trtllm-build has no --dtype)"]
    if flags.enable_context_fmha_fp32_acc:
        notes.append("fp32 accumulation for context FMHA is a run-time flag in 1.x: run.py/summarize.py "
                     "--enable_context_fmha_fp32_acc")
    if flags.use_inflight_batching:
        notes.append("use_inflight_batching has no 1.x flag: the engine is in-flight-batching capable by default")
    if flags.use_weight_only:
        notes.append(f"weight-only {flags.weight_only_precision} has no trtllm-build flag in 1.x: it is the "
                     "checkpoint's quantization block (convert step), and trtllm-build quantizes the linears on load")
    return BuildCommand(argv, engine_files_12(tp), notes + ignored_flag_notes(flags))
