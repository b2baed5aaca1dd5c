"""Bad input, faults and hostile input: nothing of the user's lost, nothing silently
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


@pytest.mark.parametrize("content, problem", [
    (b"version https://git-lfs.github.com/spec/v1\noid sha256:4e1243bd22c66e76c2ba9eddc1f91394e57f9f83\n"
     b"size 1520013706\n", "is a git-lfs pointer, not the weights .*git lfs pull"),
    (b"<!DOCTYPE html><html><body>Repository not found</body></html>\n" * 3,
     r"is not a safetensors file \(its header claims \d+ bytes of a \d+-byte file\)"),
])
def test_a_text_file_saved_as_the_weights_is_one_line(tiny_gpt2, tmp_path, content, problem):
    """A `git clone` without git-lfs, or an HTML error page saved under the name, gave a MemoryError."""
    from trtflow.formats.hf import CheckpointError, open_checkpoint

    bad = tmp_path / "bad"
    shutil.copytree(tiny_gpt2, bad)
    (bad / "model.safetensors").write_bytes(content)
    with pytest.raises(CheckpointError, match=problem):
        open_checkpoint(bad)


def test_safetensors_offsets_that_do_not_match_the_shape_are_one_line(tiny_gpt2, tmp_path):
    import struct

    from trtflow.formats.hf import CheckpointError, open_checkpoint

    bad = tmp_path / "bad"
    shutil.copytree(tiny_gpt2, bad)
    raw = (bad / "model.safetensors").read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + length])
    name = next(n for n in header if n.endswith("h.0.ln_1.weight"))
    header[name]["shape"] = [header[name]["shape"][0] // 2]  # the bytes of 64 values read as 32
    text = json.dumps(header, separators=(",", ":")).encode().ljust(length)
    assert len(text) == length
    (bad / "model.safetensors").write_bytes(raw[:8] + text + raw[8 + length:])
    with pytest.raises(CheckpointError, match=r"h\.0\.ln_1\.weight has offsets .* but its shape \[32\] in F32 "
                                              r"needs 128"):
        open_checkpoint(bad)


LLAMA = {"model_type": "llama", "hidden_size": 64, "num_attention_heads": 4}


@pytest.mark.parametrize("config_json, problem", [
    (json.dumps(LLAMA), "has model_type 'llama'; trtflow converts GPT-2 checkpoints only"),
    ('{"model_type": "gpt2", "n_head": 4,', "is not valid JSON"),
    (None, "n_head is '4'; GPT-2's config.json gives it as a whole number"),  # a string n_head
    (0, "n_head is 0; GPT-2's config.json gives it as a whole number ≥ 1"),
    (3, "n_embd 64 is not a multiple of n_head 3"),
])
def test_a_bad_local_config_json_is_refused_while_planning(tiny_gpt2, tmp_path, config_json, problem):
    """dag.py read a local checkpoint's config.json with bare json.loads: a Llama config, invalid JSON or a string
    n_head crashed while planning, and n_head 0 passed convert and build and died in generate."""
    from trtflow.dag import check_config

    mine = tmp_path / "mine"
    shutil.copytree(tiny_gpt2, mine)
    if not isinstance(config_json, str):
        hf = json.loads((tiny_gpt2 / "config.json").read_text())
        hf["n_head"] = "4" if config_json is None else config_json
        config_json = json.dumps(hf)
    (mine / "config.json").write_text(config_json)
    config = fit_tiny_model(copy.deepcopy(BASE))
    config["models"]["mine"] = {"source": "local", "path": str(mine)}
    with pytest.raises(ConfigError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        check_config(config, ROOT / "workflow" / "schemas" / "config.schema.yaml")


def test_a_mistyped_launcher_is_one_line(tmp_path):
    """TRTFLOW_LAUNCHER=srn gave os.execv's FileNotFoundError traceback."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "TRTFLOW_LAUNCHER": "srn --mpi=pmix", "PYTHONPATH": str(ROOT / "workflow" / "scripts")}
    proc = subprocess.run([sys.executable, "-m", "trtflow.infra.launch", "-n", "2", "trtflow.stages.generate"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "launcher 'srn --mpi=pmix' (TRTFLOW_LAUNCHER or --launcher): 'srn' is not a program here" in proc.stderr


def test_left_truncation_encodes_a_tail_and_equals_the_whole_texts_last_tokens(demo_resources):
    """summarize.py's left truncation: the last max_input_length tokens of the whole article. Encoding only a tail of
    it must give the same ids (a 50 MB article took 9.5 GB and 8 minutes encoded whole)."""
    import random

    from trtflow.evaluation.tokenizer import FastTokenizer, TransformersTokenizer, encode

    rows = [json.loads(line) for line in (demo_resources / "datasets/demo/test.jsonl").read_text().splitlines()]
    rng = random.Random(0)
    pieces = [word for row in rows for word in row["article"].split(" ")]
    spacers = [" ", " ", " ", "  ", "\n", " \n ", "\t", "   ", " 's ", "—", " 1234 ", " café ", "!!", " \u00a0"]
    texts = ["".join(rng.choice(pieces) + rng.choice(spacers) for _ in range(count))
             for count in (3000, 5000, 9000) for _ in range(3)]
    for tokenizer in (FastTokenizer(demo_resources / "models/demo/hf"),
                      TransformersTokenizer(demo_resources / "models/demo/hf")):
        for text in texts:
            whole = tokenizer.encode(text, add_special_tokens=False)
            for length in (1, 7, 100, 923):
                assert encode(tokenizer, text, length) == whole[-length:], (length, text[-200:])


@pytest.mark.parametrize("safetensors", [True, False])
def test_a_sharded_checkpoint_converts_to_the_same_bytes(tmp_path, safetensors):
    """save_pretrained writes model-0000x-of-0000N.safetensors (or pytorch_model-…bin) with an index for larger
    models: "has no weights" before. The c-model from the shards equals the one from the whole file."""
    import filecmp

    import torch
    from conftest import make_gpt2
    from transformers import GPT2LMHeadModel
    from trtflow.formats import cmodel

    whole = make_gpt2(tmp_path / "whole")
    sharded = tmp_path / "sharded"
    model = GPT2LMHeadModel.from_pretrained(whole, dtype=torch.float32)
    if safetensors:
        model.save_pretrained(sharded, max_shard_size="100KB")
        index = "model.safetensors.index.json"
    else:  # as transformers 4 wrote .bin shards (5 writes safetensors only): state-dict pieces and their index
        shutil.copytree(whole, sharded, ignore=shutil.ignore_patterns("model.safetensors"))
        state = {k: v.contiguous() for k, v in model.state_dict().items() if k != "lm_head.weight"}
        names = sorted(state)
        parts = [names[i::3] for i in range(3)]
        index, weight_map = "pytorch_model.bin.index.json", {}
        for number, part in enumerate(parts, 1):
            filename = f"pytorch_model-{number:05d}-of-00003.bin"
            torch.save({k: state[k] for k in part}, sharded / filename)
            weight_map.update(dict.fromkeys(part, filename))
        (sharded / index).write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    assert (sharded / index).is_file() and len(set(json.loads((sharded / index).read_text())["weight_map"].values())) > 2
    a = cmodel.convert(whole, tmp_path / "a", 2, "float16", progress=False)
    b = cmodel.convert(sharded, tmp_path / "b", 2, "float16", progress=False)
    bins = sorted(p.name for p in a.glob("*.bin"))
    assert bins and bins == sorted(p.name for p in b.glob("*.bin"))
    assert all(filecmp.cmp(a / name, b / name, shallow=False) for name in bins)


def test_a_model_named_like_the_report_is_refused():
    from trtflow import paths
    from trtflow.config import RESULT_FILES

    assert paths.REPORT.removeprefix(paths.RESULTS + "/") in RESULT_FILES
    config = copy.deepcopy(BASE)
    config["models"]["report.html"] = {"source": "demo"}
    with pytest.raises(ConfigError, match="results/report.html is the workflow's own file"):
        validate(config)


def test_a_known_error_is_one_line_and_its_traceback_only_when_asked(monkeypatch, capsys):
    """README: a stage's known failure ends its log with `error: …`; TRTFLOW_TRACEBACK=1 adds the traceback."""
    from trtflow.errors import KnownError, run_stage

    def failing():
        raise KnownError("the checkpoint is damaged; fix: fetch it again")

    monkeypatch.delenv("TRTFLOW_TRACEBACK", raising=False)
    with pytest.raises(SystemExit) as stopped:
        run_stage(failing)
    assert stopped.value.code == "error: the checkpoint is damaged; fix: fetch it again"
    assert "Traceback" not in capsys.readouterr().err
    monkeypatch.setenv("TRTFLOW_TRACEBACK", "1")
    with pytest.raises(SystemExit):
        run_stage(failing)
    assert "Traceback (most recent call last)" in capsys.readouterr().err


def test_provenance_records_the_device_the_host_and_the_commit():
    """README: every PROVENANCE.json says where and from what an artifact was made."""
    import socket
    import subprocess

    from trtflow.formats.provenance import provenance

    record = provenance({"kind": "engine"})
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    assert record["kind"] == "engine" and record["host"] == socket.gethostname()
    assert record["git_commit"] == head and len(head) == 40
    assert record["accelerator"]["device"] in ("cpu", "cuda") and record["versions"]["torch"]
