"""Bad configuration is refused by the real workflow (`snakemake -n`) before any job, with the fix named."""

from __future__ import annotations

import copy

import pytest
import yaml
from conftest import ROOT, SCHEMA, engine_key

BASE = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())


def with_changes(**changes) -> dict:
    config = copy.deepcopy(BASE)
    for dotted, value in changes.items():
        node = config
        *parents, last = dotted.split("__")
        for key in parents:
            node = node.setdefault(key, {})
        if value is DELETE:
            node.pop(last)
        else:
            node[last] = value
    return config


DELETE = object()

CASES = {
    "unknown model source": (with_changes(models__demo__source="s3"), "`models.demo.source` = 's3'",
                             "use one of 'demo', 'hf', 'local'"),
    "hf without repo_id": (with_changes(models__gpt2__repo_id=DELETE), "`models.gpt2.repo_id`", "set repo_id"),
    "model name escaping its folder": (with_changes(models__evil={"source": "demo"}, **{"models__../x": {"source": "demo"}}),
                                       "`models.../x`", "letters, digits"),
    "revision with a slash": (with_changes(models__gpt2__revision="../../etc"), "`models.gpt2.revision`",
                              "use a branch, tag or commit sha"),
    "revision with a quote": (with_changes(models__gpt2__revision="main'; rm -rf ~"), "`models.gpt2.revision`",
                              "must not contain"),
    "tp below one": (with_changes(tp=[0, 1]), "`tp` = 0", "use 1, 2, 4"),
    "tp not dividing the heads": (with_changes(tp=[1, 3]), "`tp` = 3", "divides the head count: 1, 2, 4"),
    "unknown build flag": (with_changes(build__use_magic_plugin=True), "`build.use_magic_plugin`", "allowed keys here"),
    "FMHA and FMHA fp32 acc together": (with_changes(build__enable_context_fmha=True,
                                                     build__enable_context_fmha_fp32_acc=True),
                                        "mutually exclusive", "turn one of them off"),
    "tokens_per_block not a power of two for build.py": (with_changes(build__backend="trtllm", trtllm__flow="0.8",
                                                                     build__paged_kv_cache=True,
                                                                     build__tokens_per_block=100),
                                            "`build.tokens_per_block` = 100", "use 32, 64, 128"),
    "lengths beyond n_positions": (with_changes(build__max_input_len=1000), "exceeds model `demo`'s n_positions 1024",
                                   "lower build.max_input_len"),
    "wrong type": (with_changes(tp="two"), "`tp` = 'two'", "type array"),
    "empty tp list": (with_changes(tp=[]), "`tp` = []", "at least 1 item"),
    "duplicate tp": (with_changes(tp=[1, 2, 2]), "tp 2 is listed twice", "list each degree once"),
    "negative length": (with_changes(build__max_output_len=-5), "`build.max_output_len` = -5", "use a value >= 1"),
    "unknown dataset": (with_changes(summarize__dataset="xsum"), "`summarize.dataset` = 'xsum'",
                        "'demo', 'cnn_dailymail'"),
    "target that is not a model": (with_changes(targets=["demo", "gpt3"]), "`targets` = 'gpt3'", "use one of demo"),
    "unknown demo recipe setting": (with_changes(models__demo__recipe={"layers": 3}), "`models.demo.recipe.layers`",
                                    "n_layer"),
    "local model without a path": (with_changes(models__mine={"source": "local"}), "`models.mine.path`",
                                   "set path to a folder"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_config_is_refused_with_the_key_and_the_fix(case, tmp_path, monkeypatch):
    """The checks the Snakefile runs on every config (trtflow.dag.check_config), called in-process."""
    from trtflow.config import ConfigError
    from trtflow.dag import check_config

    config, problem, fix = CASES[case]
    monkeypatch.chdir(tmp_path)  # a fresh workdir: no fetched checkpoint there
    with pytest.raises(ConfigError) as refused:
        check_config(copy.deepcopy(config), SCHEMA)
    assert problem in str(refused.value) and fix in str(refused.value)


# One of each kind through real snakemake: a schema error, a cross-field rule, a model dimension.
@pytest.mark.parametrize("case", ["wrong type", "FMHA and FMHA fp32 acc together", "lengths beyond n_positions"])
def test_snakemake_refuses_a_bad_config_before_any_job(case, workflow_dir):
    config, problem, fix = CASES[case]
    proc = workflow_dir.run("-n", config=config, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output[-2000:]
    assert "invalid configuration" in output and problem in output and fix in output, output[-2000:]
    assert "Building DAG of jobs" not in output  # refused while the config was read, before any job was planned


def test_default_config_plans_the_whole_demo(workflow_dir):
    rules = [rule for rule, _ in workflow_dir.planned_jobs()]
    assert sorted(set(rules)) == ["accuracy_gate", "benchmark", "benchmark_plot", "build_engine", "convert_cmodel",
                                  "demo_dataset", "demo_model", "generate", "hf_summarize", "report_html", "seed_table",
                                  "summarize"]
    assert rules.count("summarize") == 2 and rules.count("hf_summarize") == 1  # HF once, for every tp
    # the default benchmark grid holds the recipe's cases: the seed table reads benchmark.csv, runs no benchmark


def test_head_count_of_a_fetched_checkpoint_is_checked(workflow_dir):
    import json

    hf = workflow_dir.path / "resources" / "models" / "gpt2" / "hf"
    hf.mkdir(parents=True)
    (hf / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_head": 6, "n_positions": 1024, "n_embd": 768,
                                                  "n_layer": 2, "vocab_size": 50257}))
    proc = workflow_dir.run("-n", config=with_changes(tp=[1, 4]), check=False)
    assert proc.returncode != 0
    output = proc.stdout + proc.stderr
    assert "model `gpt2` has 6 attention heads" in output and "1, 2, 3, 6" in output, output


CONTROL = {"newline": "\n", "tab": "\t", "carriage return": "\r", "bell": "\x07", "escape": "\x1b", "nul": "\x00"}


@pytest.mark.parametrize("char", list(CONTROL.values()), ids=list(CONTROL))
@pytest.mark.parametrize("where", ["model name", "repo_id", "revision"])
def test_control_characters_in_names_are_refused(where, char):
    """A name ending in a newline once passed (`$` matches before it) and split the job's shell command."""
    from trtflow.config import ConfigError, validate

    config = copy.deepcopy(BASE)
    if where == "model name":
        config["models"][f"nl{char}"] = {"source": "demo"}
        key = "`models.nl"
    elif where == "repo_id":
        config["models"]["gpt2"]["repo_id"] = f"openai-community/gpt2-medium{char}"
        key = "`models.gpt2.repo_id`"
    else:
        config["models"]["gpt2"]["revision"] = f"main{char}"
        key = "`models.gpt2.revision`"
    with pytest.raises(ConfigError) as refused:
        validate(config)
    assert key in str(refused.value) and "\n" not in str(refused.value).split(" = ")[0]


def test_a_model_name_with_a_newline_never_reaches_a_job(workflow_dir):
    proc = workflow_dir.run("-n", config=with_changes(**{"models__nl\n": {"source": "demo"}}), check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "config key `models.nl\\n`" in output, output[-2000:]
    assert not (workflow_dir.path / "resources").exists()


def test_command_line_overrides_arrive_with_the_schema_types(workflow_dir):
    """`--config` hands nested values over as strings; they must mean what the same YAML would mean."""
    jobs = workflow_dir.planned_jobs("--config", "tp=[1,4]", 'build={"remove_input_padding": false, "max_batch_size": 16, '
                                     '"use_gpt_attention_plugin": null}', "benchmark={\"batch_sizes\": [1, 2]}")
    expected = with_changes(tp=[1, 4], build__remove_input_padding=False, build__max_batch_size=16,
                            build__use_gpt_attention_plugin=None)
    builds = {(w["tp"], w["build_key"]) for rule, w in jobs if rule == "build_engine"}
    assert builds == {(str(tp), engine_key(expected, tp)) for tp in (1, 4)}


def test_a_float_where_an_integer_belongs_is_refused(workflow_dir):
    for args, config in ((("--config", "tp=[1.0]"), None), ((), with_changes(tp=[1.0]))):
        proc = workflow_dir.run("-n", *args, config=config, check=False)
        output = proc.stdout + proc.stderr
        assert proc.returncode != 0 and "config key `tp`" in output and "1.0" in output, output[-2000:]


def test_each_job_asks_for_the_gpus_and_ranks_it_runs(workflow_dir):
    """What the Slurm executor (and the local scheduler) get: gpu = tp for engine jobs; tp > 1 also tasks = tp, one
    task per GPU and srun; tp 1 none of those (the executor rejects single-task MPI jobs); torch builds no GPU."""
    jobs = workflow_dir.planned_job_details()
    mpi_keys = {"tasks", "tasks_per_gpu", "mpi"}
    seen = set()
    for rule, wildcards, resources in jobs:
        tp = int(wildcards.get("tp", 0))
        if rule in ("generate", "summarize", "benchmark"):
            seen.add((rule, tp))
            assert resources["gpu"] == str(tp), (rule, resources)
            if tp > 1:
                assert {k: resources[k] for k in mpi_keys} == {"tasks": str(tp), "tasks_per_gpu": "1", "mpi": "srun"}
            else:
                assert not mpi_keys & set(resources), (rule, resources)
        elif rule == "build_engine":
            assert resources.get("gpu") == "0" and not mpi_keys & set(resources)
        elif rule == "hf_summarize":  # one process on one GPU
            assert resources.get("gpu") == "1" and not mpi_keys & set(resources)
        else:
            assert "gpu" not in resources or resources["gpu"] == "0", (rule, resources)
    assert seen == {(rule, tp) for rule in ("generate", "summarize", "benchmark") for tp in (1, 2)}


def test_the_engine_rule_holds_gpus_only_when_it_compiles(workflow_dir):
    """torch_compile with CUDA graphs compiles the captured decode step at build (tp 1): that build needs the
    GPU; at tp 2 (no capture), or without torch_compile, the torch build is a CPU re-layout."""
    config = with_changes(build__decode="compile-gemv")
    builds = {w["tp"]: r.get("gpu") for rule, w, r in workflow_dir.planned_job_details(config=config)
              if rule == "build_engine"}
    assert builds == {"1": "1", "2": "0"}


@pytest.mark.parametrize("target, message", [
    ("results/nope/tp1/rouge.json", "this config has no model `nope` (models: demo, gpt2); add it under `models:`"),
    ("results/demo/tp0/rouge.json", "`tp0` is no tensor-parallel degree; a run folder is tp1, tp2"),
    ("results/demo/tp01/benchmark.csv", "`tp01` is no tensor-parallel degree"),
])
def test_a_target_no_rule_makes_is_refused_with_the_fix_before_any_job(target, message, workflow_dir):
    """V: an unknown model or a tp0 target was Snakemake's MissingRuleException, which names no fix."""
    proc = workflow_dir.run(target, "-n", check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0 and message in output and "MissingRuleException" not in output, output[-2000:]
    assert "Job stats" not in output
