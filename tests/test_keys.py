"""What names an engine or converted folder: every setting that changes its bytes changes its key, and nothing else
does (the expected keys are not computed by the code under test: only compared before and after one change)."""

from __future__ import annotations

import copy
import json

import pytest
import yaml
from conftest import ROOT
from trtflow.config import ConfigError, validate
from trtflow.flags import build_key, convert_key

BASE = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())


def keys(edit=None, model: str = "demo", tp: int = 1) -> tuple[str, str]:
    config = copy.deepcopy(BASE)
    if edit:
        edit(config)
    config = validate(config)
    return convert_key(config, model), build_key(config, model, tp)


def setter(section: str, key: str, value):
    return lambda c: c[section].__setitem__(key, value)


BUILD_CHANGES = {  # every build flag, to a value that changes what the engine is
    "use_gpt_attention_plugin": "bfloat16", "use_gemm_plugin": "float16", "remove_input_padding": False,
    "enable_context_fmha": True, "enable_context_fmha_fp32_acc": True, "paged_kv_cache": True,
    "use_inflight_batching": True, "max_batch_size": 4, "max_input_len": 923, "max_output_len": 101,
    "decode": "compile-gemv", "use_weight_only": True,
}


def test_every_build_flag_is_covered_here():
    assert set(BUILD_CHANGES) | {"backend", "tokens_per_block", "weight_only_precision"} == set(BASE["build"])


@pytest.mark.parametrize("flag", list(BUILD_CHANGES))
def test_each_build_flag_changes_the_engine_key_only(flag):
    before, after = keys(), keys(setter("build", flag, BUILD_CHANGES[flag]))
    assert after[0] == before[0] and after[1] != before[1]


@pytest.mark.parametrize("name, edit, converted_too", [
    ("storage dtype", setter("convert", "storage_type", "bfloat16"), True),
    ("demo recipe", lambda c: c["models"]["demo"].update(recipe={"steps": 10}), True),
    ("backend", setter("build", "backend", "trtllm"), False),
    ("tokens_per_block of a paged cache", lambda c: c["build"].update(paged_kv_cache=True, tokens_per_block=64), False),
])
def test_settings_that_change_the_bytes_change_the_keys(name, edit, converted_too):
    before, after = keys(), keys(edit)
    assert after[1] != before[1], name
    assert (after[0] != before[0]) == converted_too, name


def test_tp_and_the_model_change_the_engine_key():
    assert keys(tp=1)[1] != keys(tp=2)[1]
    hub = keys(model="gpt2")
    assert hub != keys() and keys(lambda c: c["models"]["gpt2"].update(revision="v2"), model="gpt2") != hub


def test_weight_only_is_a_conversion_setting_of_the_12_flow_only():
    """1.x quantizes in convert_checkpoint.py (the checkpoint's quantization block); 0.8 and torch while building."""
    def trtllm(flow, **build):
        return lambda c: (c["build"].update(backend="trtllm", **build), c["trtllm"].update(flow=flow))

    for flow, converted_too in (("0.8", False), ("1.2", True)):
        plain, int8 = keys(trtllm(flow)), keys(trtllm(flow, use_weight_only=True))
        int4 = keys(trtllm(flow, use_weight_only=True, weight_only_precision="int4"))
        assert len({plain[1], int8[1], int4[1]}) == 3, flow  # three engines
        assert len({plain[0], int8[0], int4[0]}) == (3 if converted_too else 1), flow  # three conversions, or one


def test_the_trtllm_flow_changes_a_trtllm_engine_key_only():
    trtllm = setter("build", "backend", "trtllm")
    assert keys(trtllm)[1] != keys(lambda c: (trtllm(c), c["trtllm"].update(flow="1.2")))[1]


@pytest.mark.parametrize("name, edit", [
    ("generate", lambda c: c["generate"].update(max_output_len=5, input_text=["other"])),
    ("summarize", lambda c: c["summarize"].update(max_ite=3, rouge1_threshold=1, compare_hf=False)),
    ("benchmark", lambda c: c["benchmark"].update(batch_sizes=[2], num_runs=1)),
    ("trtllm under torch", lambda c: c["trtllm"].update(flow="1.2", examples_dir="/opt/x")),
    ("conversion threads", setter("convert", "processes", 1)),
    ("targets", lambda c: c.update(targets=["demo", "gpt2"])),
    ("tokens_per_block without a paged cache", setter("build", "tokens_per_block", 64)),
    ("weight_only_precision without use_weight_only", setter("build", "weight_only_precision", "int4")),
    ("a variant", lambda c: c.update(variants={"int8": {"build": {"use_weight_only": True}}})),
    ("another model", lambda c: c["models"].update(other={"source": "demo", "recipe": {"seed": 3}})),
])
def test_settings_that_do_not_change_the_bytes_leave_the_keys(name, edit):
    assert keys(edit) == keys(), name


def test_a_torch_or_triton_upgrade_changes_a_compiled_engine_key_only(monkeypatch):
    """A torch engine with a compiled decode path holds kernels its torch and Triton made: another version, another key."""
    from trtflow import flags

    compiled = setter("build", "decode", "compile-gemv")
    before = keys(compiled), keys()
    monkeypatch.setattr(flags, "compiler_versions", lambda: "torch-9.9.9+triton-9.9.9")
    assert keys(compiled)[1] != before[0][1] and keys()[1] == before[1][1]


def test_a_trtllm_engine_for_another_gpu_or_tensorrt_is_another_folder(monkeypatch):
    """The GPU architecture the jobs run on (gpu_arch, settled at start) and the TensorRT-LLM and TensorRT the
    planner sees installed name a trtllm engine; a torch engine whose decode is named is not tied to them."""
    from trtflow.formats import provenance

    trtllm = setter("build", "backend", "trtllm")
    eager = setter("build", "decode", "eager")
    on = {arch: keys(lambda c, a=arch: (trtllm(c), c.update(gpu_arch=a)))[1] for arch in ("9.0", "8.0", "none")}
    assert len(set(on.values())) == 3
    assert keys(lambda c: (eager(c), c.update(gpu_arch="9.0"))) == keys(lambda c: (eager(c), c.update(gpu_arch="8.0")))
    versions = {"tensorrt_llm": "1.2.0", "tensorrt": "10.13.0"}
    monkeypatch.setattr(provenance, "package_version", versions.get)
    installed = keys(trtllm)[1]
    versions["tensorrt"] = "10.14.1"
    assert len({installed, keys(trtllm)[1], keys()[1]}) == 3 and keys() == keys(lambda c: None)


# The build keys the previous main (262a5cf) gave config/config.yaml with these older decode flags, compiler
# versions set to "torch-X+triton-Y": each `decode` name and its older spelling must name the same engines.
OLDER_KEYS = {  # decode: (cuda_graphs, torch_compile), (demo tp 1 key, gpt2 tp 2 key)
    "eager": ((False, False), ("394b4bb334", "8076ca8675")),
    "cuda-graph": ((True, False), ("ca0456b6cc", "dcc8fa8751")),
    "compile": ((True, True), ("e9d5001e39", "a6bc48cada")),
    "compile-max-autotune": ((True, "max-autotune"), ("d20334fd93", "796fcfbf01")),
    "compile-gemv": ((True, "gemv"), ("e86956d26f", "9c62af2487")),
    "kernels": ((True, "triton"), ("ccca32ce9a", "7423439ff7")),
}


@pytest.mark.parametrize("decode", list(OLDER_KEYS))
def test_each_decode_path_and_its_older_spelling_keep_the_engine_keys_of_before(decode, monkeypatch, capsys):
    from trtflow import flags

    monkeypatch.setattr(flags, "compiler_versions", lambda: "torch-X+triton-Y")
    (cuda_graphs, torch_compile), expected = OLDER_KEYS[decode]

    def spelled(build_edit):
        config = json.loads(json.dumps(BASE))
        config["build"].pop("decode", None)
        build_edit(config["build"])
        config = validate(config)
        return config["build"]["decode"], (build_key(config, "demo", 1), build_key(config, "gpt2", 2))

    assert spelled(lambda b: b.update(decode=decode)) == (decode, expected)
    assert capsys.readouterr().err == ""
    assert spelled(lambda b: b.update(cuda_graphs=cuda_graphs, torch_compile=torch_compile)) == (decode, expected)
    assert f"is spelled build.decode: {decode} now (the same engine" in capsys.readouterr().err


def test_a_decode_path_that_contradicts_the_older_keys_is_refused():
    config = json.loads(json.dumps(BASE))
    config["build"].update(decode="eager", cuda_graphs=True, torch_compile="triton")
    with pytest.raises(ConfigError, match="contradicts the older build keys .* which mean decode: kernels"):
        validate(config)
