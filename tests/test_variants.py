"""Build variants (config `variants:`): validated like the base, keyed by content, scheduled exactly."""

from __future__ import annotations

import copy
from collections import Counter
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, engine_key, validated
from trtflow import paths
from trtflow.config import ConfigError, variant_config
from trtflow.flags import build_key

BASE = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())


def with_variants(tp=(1,), **variants) -> dict:
    config = copy.deepcopy(BASE)
    config["tp"] = list(tp)
    config["variants"] = variants
    return config


def variant_files(variant: str, tp: int = 1, roles=("rouge",)) -> list[str]:
    return [paths.variant_outputs("demo", tp, variant)[role] for role in roles]


def variant_key(config: dict, variant: str, tp: int = 1) -> str:
    return build_key(variant_config(validated(config), variant), "demo", tp)


def job_counts(jobs) -> Counter:
    return Counter(rule for rule, _ in jobs)


def test_two_variants_differing_in_one_build_flag_share_one_conversion(workflow_dir):
    config = with_variants(packed={"build": {"use_weight_only": True}},
                           padded={"build": {"use_weight_only": True, "remove_input_padding": False}})
    jobs = workflow_dir.planned_jobs(*variant_files("packed"), *variant_files("padded"), config=config)
    assert job_counts(jobs) == Counter(demo_dataset=1, demo_model=1, convert_cmodel=1, build_engine=2, hf_summarize=1,
                                       summarize_variant=2)
    built = {w["build_key"] for rule, w in jobs if rule == "build_engine"}
    assert built == {variant_key(config, name) for name in ("packed", "padded")}


def test_a_variant_equal_to_the_base_reuses_the_base_engine(workflow_dir):
    config = with_variants(same={"build": {"remove_input_padding": True}})  # the base's own value
    jobs = workflow_dir.planned_jobs(paths.run_outputs("demo", 1)["rouge"], *variant_files("same"), config=config)
    assert [w["build_key"] for rule, w in jobs if rule == "build_engine"] == [engine_key(config, 1)]
    assert job_counts(jobs)["summarize"] == job_counts(jobs)["summarize_variant"] == 1


def test_every_variant_file_is_a_target(workflow_dir):
    config = with_variants(tp=(1, 2), int8={"build": {"use_weight_only": True}})
    roles = ("generate", "rouge", "gate", "benchmark")
    jobs = workflow_dir.planned_jobs(*variant_files("int8", 1, roles), *variant_files("int8", 2, roles),
                                     paths.VARIANTS_REPORT.format(model="demo"), config=config)
    # at tp 1 and 2: a conversion, the base's and the variant's engines, the base's rouge and benchmark (the page
    # shows them) and every variant file; once: the model, the dataset, HF's summaries and the page
    expected = Counter(demo_dataset=1, demo_model=1, hf_summarize=1, variants_report=1, convert_cmodel=2,
                       build_engine=4, summarize=2, benchmark=2, generate_variant=2, summarize_variant=2,
                       accuracy_gate_variant=2, benchmark_variant=2)
    assert job_counts(jobs) == expected


@pytest.mark.parametrize("variants, message", [
    ({"bad": {"build": {"use_gpt_attention_plugin": None}}},
     r"variant `bad` \(variants.bad over the base config\): config key `build.remove_input_padding` = True: packed "
     r"input \(no padding\) needs the GPT attention plugin"),
    ({"typo": {"build": {"remove_input_paddin": False}}},
     r"variant `typo` .*`build.remove_input_paddin` = False: unknown key"),
    ({"int4": {"build": {"use_weight_only": True, "weight_only_precision": "int4"}}},
     r"variant `int4` .*the torch backend has no int4 weight-only matmul"),
    ({"small": {"build": {"max_output_len": 10}}},
     r"variant `small` .*`summarize.output_len` = 100: exceeds the engine's build.max_output_len 10"),
    ({"base": {"build": {"use_weight_only": True}}}, r"`variants.base` = 'base': .*`base` names the config itself"),
    ({"a/b": {"build": {}}}, r"`variants.a/b` = 'a/b': a variant name becomes a folder name"),
    ({"trt": {"build": {"backend": "trtllm"}}}, r"`variants.trt.build.backend` = 'trtllm': variants share the base"),
    ({"conv": {"generate": {"max_output_len": 5}}}, r"`variants.conv.generate` .*unknown key"),
])
def test_a_bad_variant_is_refused_before_any_job_naming_the_variant(variants, message):
    with pytest.raises(ConfigError, match=message):
        validated(with_variants(**variants))


def test_variant_overrides_from_the_command_line_get_the_schemas_types(workflow_dir):
    """`--config variants=…` hands nested values over as strings; the variant's engine is the typed one's."""
    config = with_variants()
    typed = with_variants(int8={"build": {"use_weight_only": True, "max_batch_size": 4}})
    jobs = workflow_dir.run(*variant_files("int8"), "-n", "--quiet", "progress", "--config",
                            'variants={"int8": {"build": {"use_weight_only": "true", "max_batch_size": "4"}}}',
                            config=config)
    assert variant_key(typed, "int8") in jobs.stdout + jobs.stderr


def test_prune_keeps_every_variants_engine_and_conversion(tmp_path):
    from trtflow.flags import convert_key
    from trtflow.stages.prune import stale_folders

    config = validated(with_variants(int8={"build": {"use_weight_only": True}}, fp32={"convert": {"storage_type":
                                                                                                  "float32"}}))
    results = tmp_path / "results"
    wanted = [paths.under(str(results), paths.ENGINE, model="demo", tp=1, build_key=build_key(c, "demo", 1))
              for c in (config, variant_config(config, "int8"), variant_config(config, "fp32"))]
    wanted += [paths.under(str(results), paths.CMODEL_ROOT, model="demo", convert_key=convert_key(c, "demo"))
               for c in (config, variant_config(config, "fp32"))]
    stale = paths.under(str(results), paths.ENGINE, model="demo", tp=1, build_key="0123456789")
    for folder in [*wanted, stale]:
        Path(folder).mkdir(parents=True)
    assert len(set(wanted)) == 5 and stale_folders(results, config) == [Path(stale)]


@pytest.mark.parametrize("flow, conversions", [("0.8", Counter(convert_cmodel=1)),
                                               ("1.2", Counter(convert_trtllm_checkpoint=2))])
def test_weight_only_is_a_conversion_only_where_tensorrt_llm_makes_it_one(workflow_dir, flow, conversions):
    """1.x quantizes in convert_checkpoint.py, so there the int8 variant has a checkpoint of its own; v0.8.0's
    build.py quantizes while building, so there both engines are built from one c-model."""
    config = with_variants(int8={"build": {"use_weight_only": True}})
    config["build"]["backend"] = "trtllm"
    config["trtllm"] = {"flow": flow, "examples_dir": "/opt/TensorRT-LLM/examples"}
    jobs = workflow_dir.planned_jobs(paths.run_outputs("demo", 1)["rouge"], *variant_files("int8"), config=config)
    counts = job_counts(jobs)
    assert Counter({r: n for r, n in counts.items() if r.startswith("convert")}) == conversions
    assert counts["build_engine"] == 2
