"""Bad input, faults and hostile input of the third round (issue V): nothing of the user's lost, nothing silently
wrong, one line with the fix where a known mistake would have given a traceback."""

from __future__ import annotations

import copy
import json
import shutil

import pytest
import yaml
from conftest import ROOT, fit_tiny_model
from trtflow.config import ConfigError, validate

BASE = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())


@pytest.mark.parametrize("inside", ["resources/models/own/hf", "resources/own", "results/own"])
def test_a_local_checkpoint_where_the_workflow_writes_is_refused(tiny_gpt2, tmp_path, monkeypatch, inside):
    """Kept in resources/models/<name>/, a rerun with --forcerun download_model deletes the user's only copy."""
    monkeypatch.chdir(tmp_path)
    shutil.copytree(tiny_gpt2, tmp_path / inside)
    config = copy.deepcopy(BASE)
    config["models"]["own"] = {"source": "local", "path": inside}
    with pytest.raises(ConfigError, match=f"is inside {inside.split('/')[0]}/, which the workflow writes.*"
                                          "keep your checkpoint outside"):
        validate(fit_tiny_model(copy.deepcopy(config)))
    config["models"]["own"]["path"] = str(tiny_gpt2)  # outside: accepted
    validate(fit_tiny_model(config))


def test_braces_in_a_prompt_reach_the_engine_as_written(workflow_dir):
    """Snakemake fills {wildcards} in a string param: "{model}" became "demo" and "{output}" stopped the run."""
    prompts = ["Compare {model} at {tp} GPUs", "{output} and {x}", "plain"]
    config = yaml.safe_load((workflow_dir.path / "config" / "config.yaml").read_text())
    config["generate"]["input_text"] = prompts
    proc = workflow_dir.run("results/demo/tp1/generate.json", "-n", "-p", config=config)
    (command,) = [line for line in (proc.stdout + proc.stderr).splitlines() if "trtflow.stages.generate" in line]
    assert json.dumps(prompts) in command


def test_a_transposed_layer_weight_is_refused_before_conversion(tiny_gpt2, tmp_path):
    """mlp.c_fc.weight stored transposed has the same element count: it converted, built and generated
    " said said said…"; transformers refuses such a checkpoint, and so does the converter now."""
    from safetensors.torch import load_file, save_file
    from trtflow.formats import cmodel
    from trtflow.formats.hf import CheckpointError

    bad = tmp_path / "bad"
    shutil.copytree(tiny_gpt2, bad)
    tensors = load_file(bad / "model.safetensors")
    name = next(n for n in tensors if n.endswith("h.1.mlp.c_fc.weight"))
    tensors[name] = tensors[name].t().contiguous()
    save_file(tensors, bad / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match=r"h\.1\.mlp\.c_fc\.weight has shape \[256, 64\] where GPT-2 .* has "
                                              r"\[64, 256\] \(Conv1D layout"):
        cmodel.convert(bad, tmp_path / "c", 1, "float16", progress=False)
    assert not (tmp_path / "c").exists() or not any((tmp_path / "c").rglob("*.bin"))
