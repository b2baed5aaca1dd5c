"""Bad input answered before any job runs, naming the key and the fix."""

from __future__ import annotations

import json
import shlex
import shutil

import pytest
from conftest import changed, fit_tiny_model
from trtflow.config import ConfigError, validate
from trtflow.dag import generate_args, known_model_config


def local_model(path) -> callable:
    return lambda c: c["models"].update(mine={"source": "local", "path": str(path)})


CASES = {
    # the late failures of the issue
    "recipe value of the wrong type": (lambda c: c["models"]["demo"].update(recipe={"n_layer": "two"}),
                                       "`models.demo.recipe.n_layer` = 'two': must be an integer", "write a number"),
    "summarize batch above the engine's": (lambda c: c["summarize"].update(batch_size=16),
                                           "`summarize.batch_size` = 16: exceeds the engine's build.max_batch_size 8",
                                           "lower summarize.batch_size to 8"),
    "summarize input above the engine's": (lambda c: c["summarize"].update(max_input_length=2000),
                                           "exceeds the engine's build.max_input_len 924", "or raise build.max_input_len"),
    "generate output above the engine's": (lambda c: c["generate"].update(max_output_len=200),
                                           "`generate.max_output_len` = 200", "raise build.max_output_len"),
    "negative threshold": (lambda c: c["summarize"].update(rouge1_threshold=-1),
                           "`summarize.rouge1_threshold` = -1", "use a value >= 0"),
    "duplicate targets": (lambda c: c.update(targets=["demo", "demo"]), "model `demo` is listed twice",
                          "list each model once"),
    # flag sets TensorRT-LLM refuses only while building
    "packed input without the attention plugin": (lambda c: c["build"].update(use_gpt_attention_plugin=None),
                                                   "`build.remove_input_padding` = True: packed input",
                                                   "or build.remove_input_padding: false"),
    "paged KV without the attention plugin": (lambda c: c["build"].update(use_gpt_attention_plugin=None,
                                                                          remove_input_padding=False,
                                                                          paged_kv_cache=True),
                                              "`build.paged_kv_cache` = True: a paged KV cache needs the GPT attention",
                                              "or build.paged_kv_cache: false"),
    # more of the same kind
    "recipe heads not dividing the width": (lambda c: c["models"]["demo"].update(recipe={"n_head": 3}),
                                            "n_embd 128 is not a multiple of n_head", "pick n_head dividing n_embd"),
    "recipe with zero steps": (lambda c: c["models"]["demo"].update(recipe={"steps": 0}),
                               "`models.demo.recipe.steps` = 0: must be positive", "use e.g. 600"),
    "recipe with a boolean": (lambda c: c["models"]["demo"].update(recipe={"n_layer": True}),
                              "must be an integer", "write a number"),
    "recipe on a device it has no way to train on": (lambda c: c["models"]["demo"].update(recipe={"device": "tpu"}),
                                                     "`models.demo.recipe.device` = 'tpu': not a training device",
                                                     "use one of auto, cpu, cuda"),
    "summarize output above the engine's": (lambda c: c["summarize"].update(output_len=101),
                                            "`summarize.output_len` = 101", "lower summarize.output_len to 100"),
    "threshold above 100": (lambda c: c["summarize"].update(rouge1_threshold=140), "`summarize.rouge1_threshold` = 140",
                            "<= 100"),
    "no default target": (lambda c: c.update(targets=[]), "`targets` = []: no model to build by default", "list one of"),
    "empty prompt": (lambda c: c["generate"].update(input_text=["fine", "  "]), "`generate.input_text.1`",
                     "write a prompt"),
    "a path on a hub model": (lambda c: c["models"]["gpt2"].update(path="/models/gpt2"),
                              "`models.gpt2.path`", "remove path, or set source: local"),
    "a repo_id on the demo model": (lambda c: c["models"]["demo"].update(repo_id="openai-community/gpt2"),
                                    "only `hf` models take `repo_id`", "remove repo_id, or set source: hf"),
    "no download pattern": (lambda c: c["models"]["gpt2"].update(include=[]), "`models.gpt2.include` = []",
                            "at least 1 item"),
    "string where a number belongs": (lambda c: c["benchmark"].update(warm_up="two"), "`benchmark.warm_up` = 'two'",
                                      "type integer"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_refused_at_validation_with_key_and_fix(case):
    edit, problem, fix = CASES[case]
    with pytest.raises(ConfigError) as refused:
        validate(changed(edit))
    assert problem in str(refused.value) and fix in str(refused.value), str(refused.value)


def test_local_paths_are_checked_before_any_job(tmp_path, tiny_gpt2):
    for path, problem in ((tmp_path / "nowhere", "does not exist"), (tiny_gpt2 / "config.json", "is a file"),
                          (tmp_path, "has no config.json")):
        with pytest.raises(ConfigError, match=f"`models.mine.path` = .*: {problem}"):
            validate(changed(local_model(path)))
    validate(fit_tiny_model(changed(local_model(tiny_gpt2))))


def test_a_local_model_is_judged_by_its_source_config_before_the_import(tiny_gpt2, tmp_path, monkeypatch):
    """Accepted before the import means accepted after it: both read the same config.json."""
    monkeypatch.chdir(tmp_path)
    config = validate(fit_tiny_model(changed(local_model(tiny_gpt2))))
    before = known_model_config(config, "mine")
    assert before[0]["n_head"] == 4 and before[1] == str(tiny_gpt2 / "config.json")
    shutil.copytree(tiny_gpt2, tmp_path / "resources/models/mine/hf")
    assert known_model_config(config, "mine")[0] == before[0]


@pytest.mark.parametrize("prompt", ["-starts with a dash", "--out /etc/passwd", "two\nlines", "it's \"quoted\"",
                                    "$(touch /tmp/pwned) `id`"])
def test_prompts_reach_the_stage_exactly_as_written(prompt):
    from trtflow.stages.generate import parse_args

    argv = shlex.split(generate_args({"input_text": [prompt, "plain"], "max_output_len": 5}))
    args = parse_args([*argv, "--engine-dir", "e", "--tokenizer-dir", "t", "--out", "o.json"])
    assert args.input_text == [prompt, "plain"] and args.out == "o.json"


def test_a_file_where_results_belongs_is_one_line_before_any_job(workflow_dir):
    (workflow_dir.path / "results").write_text("not a folder")
    proc = workflow_dir.run("-n", check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "results is a file, but the workflow writes a folder there" in output
    assert "Traceback" not in output


def test_re_saving_a_local_checkpoint_imports_it_again(tiny_gpt2, workflow_dir, tmp_path):
    """A broken import once asked the user to re-save the checkpoint, and then ignored that they did."""
    source = tmp_path / "mine"
    shutil.copytree(tiny_gpt2, source)
    config = fit_tiny_model(changed(local_model(source)))
    workflow_dir.run("resources/models/mine/hf", config=config)
    assert workflow_dir.planned_jobs("resources/models/mine/hf") == []
    data = json.loads((source / "config.json").read_text())
    (source / "config.json").write_text(json.dumps(data, indent=4))  # re-saved: same model, new file
    assert [rule for rule, _ in workflow_dir.planned_jobs("resources/models/mine/hf")] == ["download_model"]


def test_hf_side_of_an_absurd_n_embd_is_one_line_not_a_petabyte_allocation(tiny_gpt2, tmp_path):
    """V: config.json claiming n_embd 2**24 over small weights made transformers allocate 1.6 PB for HF's side."""
    import torch
    from trtflow.formats.hf_config import CheckpointError
    from trtflow.hf_reference import HFGenerator

    hf = shutil.copytree(tiny_gpt2, tmp_path / "hf")
    config = json.loads((hf / "config.json").read_text())
    config.update(n_embd=2**24, n_head=4)
    (hf / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="the weights and config.json disagree"):  # before any allocation
        HFGenerator(hf, torch.device("cpu"), {"end_id": 0, "pad_id": 0})
