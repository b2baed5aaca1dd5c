"""TEST DOUBLE for tensorrt_llm.runtime.ModelRunnerCpp, one class per line of TensorRT-LLM:

- 0.8: `tensorrt_llm/runtime/model_runner_cpp.py` at tag v0.8.0 (GptSession). `generate` takes
  SamplingConfig fields as keywords (`min_length`, `random_seed` …); every tensor-parallel rank gets the
  outputs.
- 1.x: the same file on NVIDIA/TensorRT-LLM's 1.0-1.2 line (Executor, commit 03832911). `from_dir` is
  keyword-only after engine_dir and takes run-time knobs such as `enable_context_fmha_fp32_acc`;
  `generate` takes `min_tokens`, `end_id`, `pad_id`; ranks other than 0 cannot enqueue requests and get `[]`.
  Loading an engine without in-flight batching fails as the executor does (TrtGptModelInflightBatching; the
  condition is ModelConfig::supportsInflightBatching, cpp/include/tensorrt_llm/runtime/modelConfig.h).
- 1.x ModelRunner, the Python session: `tensorrt_llm/runtime/model_runner.py` and `runtime/generation.py`
  (SamplingConfig and its `update`) at commit 2340c776. `from_dir` is keyword-only after engine_dir;
  `generate` takes SamplingConfig's fields (`min_length`); every tensor-parallel rank decodes and gets the
  outputs. TensorRT-LLM's examples/run.py takes it for engines the C++ runner cannot load.

Where the real `generate` hands unknown keywords to SamplingConfig and silently ignores those it does not
know, this double names every keyword it knows and has no **kwargs: a keyword the real runner would drop
is a TypeError here, so a setting lost at this boundary fails the tests instead of passing unseen.

No model runs. Each row is the prompt, then tokens counting up from the prompt's last one (modulo the
engine's vocabulary), stopping at end_id once the minimum length is reached; rows are padded with end_id to
the engine's max sequence length, as both runtimes return them. Calls are recorded into
$TRTFLOW_DOUBLE_RECORD.
"""

import json
import os
import time
from pathlib import Path

import torch

from . import __version__


def _record(kind, payload):
    folder = os.environ.get("TRTFLOW_DOUBLE_RECORD")
    if folder:
        name = f"{kind}-{os.getpid()}-{time.monotonic_ns()}.json"
        Path(folder, name).write_text(json.dumps({"version": __version__, **payload}, default=str))


def _mpi_rank():
    """The rank as TensorRT-LLM reads it, from MPI (mpi4py's COMM_WORLD; a process no MPI launcher started is a
    world of one): Open MPI's or a PMI launcher's (srun) variables, never torchrun's RANK."""
    for name in ("OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK"):
        if name in os.environ:
            return int(os.environ[name])
    return 0


def _mpi_size():
    for name in ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE"):
        if name in os.environ:
            return int(os.environ[name])
    return 1


def _check_world(engine):
    """The runtime's world comes from MPI and must hold the engine's ranks (v0.8.0 worldConfig.cpp: mpiSize ==
    tp * pp; 1.x WorldConfig::mpi)."""
    if _mpi_size() != engine.world_size:
        raise RuntimeError(f"[TensorRT-LLM][ERROR] Assertion failed: mpiSize == tp * pp ({_mpi_size()} MPI "
                           f"rank(s), the engine's tp * pp is {engine.world_size})")


class _Engine:
    """What both runtimes read from the engine folder's config.json."""

    def __init__(self, engine_dir):
        config = json.loads((Path(engine_dir) / "config.json").read_text())
        if "builder_config" in config:  # 0.8 layout
            b = config["builder_config"]
            self.world_size = b["tensor_parallel"]
            self.vocab_size, self.max_batch_size, self.max_input_len = b["vocab_size"], b["max_batch_size"], \
                b["max_input_len"]
            self.max_seq_len = b["max_input_len"] + b["max_output_len"]
        else:
            pretrained, build = config["pretrained_config"], config["build_config"]
            self.world_size = pretrained["mapping"]["world_size"]
            self.vocab_size, self.max_batch_size, self.max_input_len = pretrained["vocab_size"], \
                build["max_batch_size"], build["max_input_len"]
            self.max_seq_len = build["max_seq_len"]
            plugins = build.get("plugin_config") or {}
            self.kv_cache_type = str(build.get("kv_cache_type", "CONTINUOUS")).upper()
            # ModelConfig::supportsInflightBatching for a transformer
            self.inflight_batching = (bool(plugins.get("gpt_attention_plugin"))
                                      and bool(plugins.get("remove_input_padding"))
                                      and self.kv_cache_type in ("PAGED", "DISABLED"))
        self.files = sorted(p.name for p in Path(engine_dir).glob("*.engine"))

    def check_inputs(self, batch, max_new_tokens):
        if len(batch) > self.max_batch_size:
            raise RuntimeError(f"Input batch size ({len(batch)}) exceeds the engine or specified limit "
                               f"({self.max_batch_size})")
        longest = max(len(ids) for ids in batch)
        if longest > self.max_input_len:
            raise RuntimeError(f"Maximum input length ({longest}) exceeds the engine or specified limit "
                               f"({self.max_input_len})")
        if longest + max_new_tokens > self.max_seq_len:
            raise RuntimeError(f"Maximum input length ({longest}) + maximum new tokens ({max_new_tokens}) exceeds "
                               f"the engine or specified limit ({self.max_seq_len})")

    def run(self, batch, max_new_tokens, end_id, minimum):
        rows = []
        for ids in batch:
            ids = [int(t) for t in ids]
            out, token = [], ids[-1]
            while len(out) < max_new_tokens:
                token = (token + 1) % self.vocab_size
                if token == end_id and len(out) >= minimum:
                    break
                out.append(token)
            rows.append(ids + out)
        lengths = torch.tensor([[len(r)] for r in rows], dtype=torch.int32)
        padded = torch.tensor([[r + [end_id] * (self.max_seq_len - len(r))] for r in rows], dtype=torch.int32)
        return padded, lengths


def _loaded(engine_dir, rank, recorded):
    """Both runtimes' load: the engine folder, the rank and world from MPI, and the call's record (a dict beyond
    the folder, rank and files) to write once the load has passed its checks."""
    engine = _Engine(engine_dir)
    assert rank == _mpi_rank()
    _check_world(engine)
    return engine, lambda: _record("runner", {"engine_dir": engine_dir, "rank": rank, "engine_files": engine.files,
                                              **recorded})


def _returned(ids, lengths, return_dict, output_sequence_lengths):
    """Both runtimes: the ids tensor, or a dict with sequence_lengths only when asked for."""
    if not return_dict:
        return ids
    return {"output_ids": ids, **({"sequence_lengths": lengths} if output_sequence_lengths else {})}


class _RunnerV08:
    def __init__(self, engine, rank):
        self.engine, self.rank = engine, rank

    @classmethod
    def from_dir(cls, engine_dir, lora_dir=None, rank=0, max_batch_size=None, max_input_len=None,
                 max_output_len=None, max_beam_width=None, max_attention_window_size=None, sink_token_length=None,
                 debug_mode=False, lora_ckpt_source="hf"):
        engine, record = _loaded(engine_dir, rank, {"legacy": True})
        record()
        return cls(engine, rank)

    def generate(self, batch_input_ids, sampling_config=None, prompt_table_path=None, prompt_tasks=None,
                 lora_uids=None, streaming=False, stopping_criteria=None, logits_processor=None, *,
                 end_id=None, pad_id=None, max_new_tokens=20, num_beams=1, max_attention_window_size=None,
                 sink_token_length=None, output_sequence_lengths=False, return_dict=False, stop_words_list=None,
                 bad_words_list=None, temperature=1.0, top_k=1, top_p=0.0, top_p_decay=None, top_p_min=None,
                 top_p_reset_ids=None, length_penalty=1.0, repetition_penalty=1.0, min_length=1,
                 presence_penalty=0.0, frequency_penalty=0.0, use_beam_hyps=True, beam_search_diversity_rate=0.0,
                 random_seed=None, output_cum_log_probs=False, output_log_probs=False):
        if streaming:
            raise RuntimeError("Streaming is not supported in C++ session.")
        self.engine.check_inputs(batch_input_ids, max_new_tokens)
        _record("generate", {"rank": self.rank, "batch": len(batch_input_ids), "max_new_tokens": max_new_tokens,
                             "end_id": end_id, "pad_id": pad_id, "min_length": min_length, "top_k": top_k,
                             "top_p": top_p, "temperature": temperature, "num_beams": num_beams,
                             "random_seed": random_seed})
        ids, lengths = self.engine.run(batch_input_ids, max_new_tokens, end_id, min_length)
        return _returned(ids, lengths, return_dict, output_sequence_lengths)


class _RunnerV1:
    def __init__(self, engine, rank):
        self.engine, self.rank = engine, rank

    @classmethod
    def from_dir(cls, engine_dir, *, lora_dir=None, rank=0, max_batch_size=None, max_input_len=None,
                 max_output_len=None, max_beam_width=None, max_attention_window_size=None, sink_token_length=None,
                 kv_cache_free_gpu_memory_fraction=None, cross_kv_cache_fraction=None, medusa_choices=None,
                 eagle_choices=None, eagle_posterior_threshold=None, eagle_use_dynamic_tree=False,
                 eagle_dynamic_tree_max_top_k=None, lookahead_config=None, debug_mode=False, lora_ckpt_source="hf",
                 use_gpu_direct_storage=False, gpu_weights_percent=1, max_tokens_in_paged_kv_cache=None,
                 kv_cache_enable_block_reuse=False, enable_chunked_context=False, is_enc_dec=False,
                 multi_block_mode=True, enable_context_fmha_fp32_acc=None, cuda_graph_mode=None,
                 logits_processor_map=None, device_ids=None, is_orchestrator_mode=False, use_runtime_defaults=True,
                 gather_generation_logits=False, use_variable_beam_width_search=False, mm_embedding_offloading=False):
        engine, record = _loaded(engine_dir, rank, {"legacy": False, "runtime": "ModelRunnerCpp",
                                                    "enable_context_fmha_fp32_acc": enable_context_fmha_fp32_acc})
        if not engine.inflight_batching:  # the executor's model, TrtGptModelInflightBatching, refuses it
            raise RuntimeError("[TensorRT-LLM][ERROR] Assertion failed: TrtGptModelInflightBatching requires GPT "
                               "attention/Mamba Conv 1d plugin with packed input and paged KV cache.")
        record()
        return cls(engine, rank)

    def generate(self, batch_input_ids, position_ids=None, encoder_input_ids=None, encoder_input_features=None,
                 encoder_output_lengths=None, cross_attention_masks=None, mrope_params=None, sampling_config=None,
                 lora_uids=None, lookahead_config=None, streaming=False, stopping_criteria=None,
                 logits_processor_names=None, max_new_tokens=1, end_id=None, pad_id=None, bad_words_list=None,
                 stop_words_list=None, return_dict=False, output_sequence_lengths=False,
                 output_generation_logits=False, output_log_probs=False, output_cum_log_probs=False,
                 prompt_table=None, prompt_tasks=None, input_token_extra_ids=None, return_all_generated_tokens=False,
                 language_adapter_uids=None, mm_embedding_offloading=False, *, num_beams=1, top_k=None, top_p=None,
                 top_p_min=None, top_p_reset_ids=None, top_p_decay=None, temperature=None, min_tokens=None,
                 beam_search_diversity_rate=None, repetition_penalty=None, presence_penalty=None,
                 frequency_penalty=None, length_penalty=None, early_stopping=None, no_repeat_ngram_size=None,
                 random_seed=None, num_return_sequences=None, min_p=None, beam_width_array=None):
        if stopping_criteria is not None:
            raise RuntimeError("Stopping criteria is not supported in C++ session.")
        if self.rank != 0:  # only rank 0 can enqueue requests; the others serve its executor and get nothing
            _record("generate", {"rank": self.rank, "returned": "[]"})
            return []
        self.engine.check_inputs(batch_input_ids, max_new_tokens)
        _record("generate", {"rank": self.rank, "batch": len(batch_input_ids), "max_new_tokens": max_new_tokens,
                             "end_id": end_id, "pad_id": pad_id, "min_tokens": min_tokens, "top_k": top_k,
                             "top_p": top_p, "temperature": temperature, "num_beams": num_beams,
                             "random_seed": random_seed})
        ids, lengths = self.engine.run(batch_input_ids, max_new_tokens, end_id, min_tokens or 0)
        return _returned(ids, lengths, return_dict, output_sequence_lengths)


class _PythonRunnerV1:
    def __init__(self, engine, rank):
        self.engine, self.rank = engine, rank

    @classmethod
    def from_dir(cls, engine_dir, *, max_output_len=None, lora_dir=None, rank=0, debug_mode=False,
                 lora_ckpt_source="hf", medusa_choices=None, stream=None, gpu_weights_percent=1,
                 enable_context_fmha_fp32_acc=None, multi_block_mode=None,
                 fail_fast_on_attention_window_too_large=False):
        engine, record = _loaded(engine_dir, rank, {"legacy": False, "runtime": "ModelRunner",
                                                    "enable_context_fmha_fp32_acc": enable_context_fmha_fp32_acc})
        if engine.kv_cache_type == "DISABLED":
            assert max_output_len == 1 or max_output_len is None, \
                "Disabled KV cache is intended for context phase only now."
        record()
        return cls(engine, rank)

    def generate(self, batch_input_ids, position_ids=None, sampling_config=None, prompt_table=None,
                 prompt_tasks=None, lora_uids=None, streaming=False, output_generation_logits=False,
                 stopping_criteria=None, logits_processor=None, medusa_choices=None, encoder_max_input_length=None,
                 encoder_input_features=None, encoder_output_lengths=None, cross_attention_masks=None, *,
                 end_id=None, pad_id=None, max_new_tokens=20, num_beams=1, max_attention_window_size=None,
                 sink_token_length=None, output_sequence_lengths=False, return_dict=False, stop_words_list=None,
                 bad_words_list=None, temperature=1.0, top_k=1, top_p=0.0, top_p_decay=None, top_p_min=None,
                 top_p_reset_ids=None, length_penalty=1.0, repetition_penalty=1.0, min_length=1,
                 presence_penalty=0.0, frequency_penalty=0.0, use_beam_hyps=True, beam_search_diversity_rate=0.0,
                 random_seed=None, output_cum_log_probs=False, output_log_probs=False):
        # the keywords above are SamplingConfig's fields, which its `update` sets (it drops other names)
        self.engine.check_inputs(batch_input_ids, max_new_tokens)
        if self.engine.kv_cache_type == "DISABLED" and max_new_tokens > 1:
            raise RuntimeError("Disabled KV cache is intended for context phase only now.")
        assert end_id is not None, "end_id cannot be none"
        assert pad_id is not None, "pad_id cannot be none"
        _record("generate", {"rank": self.rank, "batch": len(batch_input_ids), "max_new_tokens": max_new_tokens,
                             "end_id": end_id, "pad_id": pad_id, "min_length": min_length, "top_k": top_k,
                             "top_p": top_p, "temperature": temperature, "num_beams": num_beams,
                             "random_seed": random_seed, "runtime": "ModelRunner"})
        ids, lengths = self.engine.run(batch_input_ids, max_new_tokens, end_id, min_length)
        return _returned(ids, lengths, return_dict, output_sequence_lengths)


ModelRunnerCpp = _RunnerV08 if __version__.startswith("0.") else _RunnerV1
if not __version__.startswith("0."):
    ModelRunner = _PythonRunnerV1
