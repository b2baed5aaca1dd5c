"""Bad inputs get early, clear errors; killed jobs leave nothing that looks complete and rerun cleanly."""

from __future__ import annotations

import copy
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from conftest import ROOT, SNAKEMAKE, Workflow, cmodel_dir, copy_workflow, fit_tiny_model, make_gpt2
from trtflow.engines import open_engine
from trtflow.evaluation.datasets import DatasetError, read_dataset
from trtflow.formats import cmodel
from trtflow.formats.artifact import ArtifactError, verify_manifest
from trtflow.formats.hf import CheckpointError, open_checkpoint
from trtflow.generation import EngineMismatchError
from trtflow.infra.dist import init_distributed
from trtflow.stages import download_model as hub
from trtflow.tp import SplitError

# ------------------------------------------------------------------ checkpoints


def test_checkpoint_without_config_json(tiny_gpt2, tmp_path):
    bad = tmp_path / "no-config"
    shutil.copytree(tiny_gpt2, bad)
    (bad / "config.json").unlink()
    with pytest.raises(CheckpointError, match=r"no-config/config.json is missing.*save_pretrained"):
        hub.copy_local(bad, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_bin_that_is_not_a_state_dict(tmp_path):
    torch.save([1, 2, 3], tmp_path / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match=r"pytorch_model.bin is not a state dict of tensors \(found list\)"):
        open_checkpoint(tmp_path)


def test_vocab_size_that_disagrees_with_the_embedding(tiny_gpt2, tmp_path):
    bad = tmp_path / "vocab"
    shutil.copytree(tiny_gpt2, bad)
    config = json.loads((bad / "config.json").read_text())
    config["vocab_size"] = 999
    (bad / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"wte.weight has shape \[1000, 64\] but config.json says \[999, 64\]"):
        cmodel.convert(bad, tmp_path / "c", 1, progress=False)


def test_head_count_not_divisible_by_tp(tiny_gpt2, tmp_path):
    with pytest.raises(SplitError, match="has 4 attention heads, which 3 does not divide; use a tp that divides the "
                       "head count: 1, 2, 4"):
        cmodel.convert(tiny_gpt2, tmp_path / "c", 3, progress=False)


def test_no_free_disk_is_refused_before_writing(tiny_gpt2, tmp_path, monkeypatch):
    import trtflow.formats.artifact as artifact

    monkeypatch.setattr(artifact.shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9, 1000))
    with pytest.raises(ArtifactError, match=r"not enough free disk for .*/c/1-gpu: it needs about 1 MiB and .* has 0 MiB"):
        cmodel.convert(tiny_gpt2, tmp_path / "c", 1, "float32", progress=False)
    assert not (tmp_path / "c" / "1-gpu").exists() and temps(tmp_path / "c") == []


def test_hub_unreachable_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    with pytest.raises(hub.HubError, match=r"HF_HUB_OFFLINE=1.*HF_ENDPOINT.*source: local.*demo"):
        hub.fetch_hf("openai-community/gpt2-medium", "main", ["*.json"], tmp_path / "out")
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------ datasets


def test_dataset_row_missing_a_field(tmp_path):
    (tmp_path / "test.jsonl").write_text(json.dumps({"article": "a"}) + "\n")
    with pytest.raises(DatasetError, match=r"test.jsonl:1 lacks the text field\(s\) highlights"):
        read_dataset(tmp_path / "test.jsonl")


def test_empty_dataset(tmp_path):
    (tmp_path / "test.jsonl").write_text("\n")
    with pytest.raises(DatasetError, match="holds no examples"):
        read_dataset(tmp_path / "test.jsonl")


def test_dataset_that_is_not_utf8(tmp_path):
    (tmp_path / "test.jsonl").write_bytes(b'{"article": "caf\xe9", "highlights": "x"}\n')
    with pytest.raises(DatasetError, match="is not UTF-8 text"):
        read_dataset(tmp_path / "test.jsonl")


@pytest.mark.slow  # needs the trained demo tokenizer
def test_long_article_is_truncated_from_the_left_like_summarize_py(demo_resources):
    from trtflow.evaluation.prompts import summarize_prompt
    from trtflow.evaluation.tokenizer import encode, load_tokenizer

    tokenizer = load_tokenizer(demo_resources / "models/demo/hf")
    article = " ".join(read_dataset(demo_resources / "datasets/demo/test.jsonl")[0]["article"] for _ in range(40))
    full = tokenizer.encode(summarize_prompt(article), add_special_tokens=False)
    assert len(full) > 923
    ids = encode(tokenizer, summarize_prompt(article), 923)
    assert ids == full[-923:]  # the TL;DR: prompt end survives


# ------------------------------------------------------------------ engines


def engine_copy(tiny_gpt2, tmp_path) -> Path:
    from test_runtime import TINY_TOKEN_IDS, engine_flags
    from trtflow.backends.torch.build import build

    source = cmodel.convert(tiny_gpt2, tmp_path / "c", 1, "float32", progress=False)
    return build(source, tmp_path / "e", engine_flags(), "0" * 10, TINY_TOKEN_IDS)


def test_engine_config_from_tensorrt_llm(tiny_gpt2, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt_llm", None)  # not importable, even after a test imported the double
    engine = engine_copy(tiny_gpt2, tmp_path)
    (engine / "config.json").write_text(json.dumps({"builder_config": {"name": "gpt"}, "plugin_config": {}}))
    with pytest.raises(EngineMismatchError, match="is a TensorRT-LLM engine.*tensorrt_llm is not installed"):
        open_engine(engine, init_distributed())


def test_engine_of_another_format_version(tiny_gpt2, tmp_path):
    from trtflow.formats.artifact import write_manifest

    engine = engine_copy(tiny_gpt2, tmp_path)
    config = json.loads((engine / "config.json").read_text())
    config["format_version"] = 99
    (engine / "config.json").write_text(json.dumps(config))
    write_manifest(engine, {})
    with pytest.raises(EngineMismatchError, match="has engine format 99.*rebuild the engine"):
        open_engine(engine, init_distributed())


def test_engine_missing_a_rank_file(tiny_gpt2, tmp_path):
    engine = engine_copy(tiny_gpt2, tmp_path)
    (engine / "rank0.safetensors").unlink()
    with pytest.raises(ArtifactError, match=r"rank0.safetensors is listed in .*MANIFEST.json but missing"):
        open_engine(engine, init_distributed())


# ------------------------------------------------------------------ faults: SIGKILL and locks

BASE = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())


@pytest.fixture(scope="module")
def big_model(tmp_path_factory, demo_resources) -> Path:
    """A 16-layer random GPT-2 (~200 MB) with the demo tokenizer: big enough to be killed mid-write."""
    folder = make_gpt2(tmp_path_factory.mktemp("big") / "hf", n_head=8, n_embd=512, n_layer=16, vocab=2048,
                       positions=1024)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(demo_resources / "models/demo/hf" / name, folder / name)
    return folder


@pytest.fixture
def big_workflow(tmp_path, demo_resources, big_model) -> Workflow:
    wf = copy_workflow(tmp_path / "wf")
    shutil.copytree(demo_resources / "datasets", wf.path / "resources" / "datasets")
    config = copy.deepcopy(BASE)
    config["models"]["big"] = {"source": "local", "path": str(big_model)}
    config["targets"] = ["big"]
    config["tp"] = [1]
    config["convert"]["storage_type"] = "float32"
    config["summarize"].update({"max_ite": 3, "output_len": 8, "compare_hf": False, "rouge1_threshold": 0})
    wf.write_config(config)
    wf.cmodel = cmodel_dir(config, 1, "big")
    return wf


def run_and_kill(wf: Workflow, target: str, ready, timeout: float = 120) -> None:
    """Start snakemake; SIGKILL its whole process group as soon as `ready()` is true."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    proc = subprocess.Popen([SNAKEMAKE, "--cores", "2", target], cwd=wf.path, start_new_session=True, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "the kill point never came"
            time.sleep(0.005)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def temps(folder: Path) -> list[Path]:
    return list(folder.glob(".*.tmp-*")) if folder.exists() else []


def rerun_after_kill(wf: Workflow, target: str) -> None:
    wf.run("--unlock")
    wf.run(target)


@pytest.mark.slow
def test_sigkill_during_conversion_then_rerun(big_workflow):
    wf = big_workflow
    target = wf.path / wf.cmodel
    wf.run("resources/models/big/hf")
    run_and_kill(wf, wf.cmodel, lambda: bool(temps(target.parent)))
    assert not target.exists()  # a half-written folder never takes the output's name
    rerun_after_kill(wf, wf.cmodel)
    assert temps(target.parent) == []
    verify_manifest(target)


@pytest.mark.slow
def test_sigkill_during_engine_build_then_rerun(big_workflow):
    wf = big_workflow
    wf.run(wf.cmodel)
    engines = wf.path / "results/big/engines/tp1"
    run_and_kill(wf, "results/big/tp1/generate.json", lambda: bool(temps(engines)))
    assert [p for p in engines.iterdir() if not p.name.startswith(".")] == []
    rerun_after_kill(wf, "results/big/tp1/generate.json")
    assert temps(engines) == []
    (engine,) = list(engines.iterdir())
    verify_manifest(engine)


@pytest.mark.slow
def test_sigkill_during_summarize_then_rerun(big_workflow):
    wf = big_workflow
    wf.run("results/big/tp1/generate.json")
    log = wf.path / "logs/summarize/big/tp1.log"
    run_and_kill(wf, "results/big/tp1/rouge.json", lambda: log.is_file() and "summarize engine" in log.read_text())
    assert not (wf.path / "results/big/tp1/rouge.json").exists()
    rerun_after_kill(wf, "results/big/tp1/rouge.json")
    assert temps(wf.path / "results/big/tp1") == []
    assert len(json.loads((wf.path / "results/big/tp1/rouge.json").read_text())["engine"]["texts"]) == 3


@pytest.mark.slow
def test_second_snakemake_on_the_same_workdir_is_refused(big_workflow):
    wf = big_workflow
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    first = subprocess.Popen([SNAKEMAKE, "--cores", "2", wf.cmodel], cwd=wf.path, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    locks = wf.path / ".snakemake" / "locks"
    deadline = time.monotonic() + 60
    while not (locks.is_dir() and any(locks.iterdir())):
        assert time.monotonic() < deadline and first.poll() is None
        time.sleep(0.01)
    first.send_signal(signal.SIGSTOP)  # holds its lock while the second run tries (no race with a fast conversion)
    try:
        second = wf.run(wf.cmodel, check=False)  # the output the first run is writing
    finally:
        first.send_signal(signal.SIGCONT)
    assert second.returncode != 0
    assert "cannot be locked" in second.stdout + second.stderr
    assert first.wait(timeout=300) == 0
    verify_manifest(wf.path / wf.cmodel)


def test_a_local_checkpoint_is_copied_never_linked(tiny_gpt2, workflow_dir, tmp_path):
    """Writing or editing the imported copy must never reach the user's own files (and the other way round)."""
    source = tmp_path / "mine"
    shutil.copytree(tiny_gpt2, source)
    before = {p.name: (p.stat().st_ino, p.read_bytes()) for p in source.iterdir()}
    config = fit_tiny_model(copy.deepcopy(BASE))
    config["models"]["mine"] = {"source": "local", "path": str(source)}
    workflow_dir.run("resources/models/mine/hf", config=config)
    imported = workflow_dir.path / "resources/models/mine/hf"
    for name, (inode, data) in before.items():
        assert (source / name).stat().st_ino == inode and (source / name).read_bytes() == data, name
        assert (imported / name).stat().st_ino != inode and (imported / name).stat().st_nlink == 1, name
    (imported / "model.safetensors").write_bytes(b"overwritten")
    assert (source / "model.safetensors").read_bytes() == before["model.safetensors"][1]


def test_a_byte_flipped_in_the_imported_checkpoint_stops_conversion(demo_workflow):
    """It once converted to new shards with no error: every reader of the checkpoint verifies its manifest."""
    wf = demo_workflow
    config = copy.deepcopy(BASE)
    config["tp"] = [1]
    wf.write_config(config)
    weights = wf.path / "resources/models/demo/hf/model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01
    weights.write_bytes(bytes(data))
    target = cmodel_dir(config, 1)
    proc = wf.run(target, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "error: " in output and "model.safetensors does not match the sha256" in output, output[-3000:]
    assert "Traceback" not in output  # one line that names the fix, not a page of tracebacks
    assert not (wf.path / target).exists()


def test_a_hub_failure_is_one_line_that_names_the_fix(workflow_dir, monkeypatch, tmp_path):
    """It once printed three chained tracebacks before the line that matters."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-home"))
    proc = workflow_dir.run("resources/models/gpt2/hf", check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "error: cannot download openai-community/gpt2-medium@main" in output and "HF_ENDPOINT" in output
    assert "Traceback" not in output and not (workflow_dir.path / "resources/models/gpt2/hf").exists()


def test_no_free_disk_for_the_engine_is_refused_before_writing(tiny_gpt2, tmp_path, monkeypatch):
    """V: convert checked free space, the build did not (disk full during the engine build)."""
    import trtflow.formats.artifact as artifact
    from trtflow.backends.torch.build import build
    from trtflow.flags import BuildFlags

    source = cmodel.convert(tiny_gpt2, tmp_path / "c", 1, "float16", progress=False)
    base = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())["build"]
    flags = BuildFlags.from_config({**base, "decode": "eager"}, "float16")
    monkeypatch.setattr(artifact.shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9, 1000))
    with pytest.raises(ArtifactError, match=r"not enough free disk for .*/engine: it needs about \d+ MiB"):
        build(source, tmp_path / "engine", flags, "0123456789", {"end_id": 0, "pad_id": 0})
    assert not (tmp_path / "engine").exists() and temps(tmp_path) == []


def test_cnn_dailymail_offline_is_one_line_that_names_the_fix(tmp_path):
    """V: `summarize.dataset: cnn_dailymail` without the hub (or without `datasets`) ended in a traceback."""
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf-home"),
           "PYTHONPATH": str(ROOT / "workflow" / "scripts")}
    proc = subprocess.run([sys.executable, "-m", "trtflow.stages.cnn_dailymail_dataset", "--out",
                           str(tmp_path / "test.jsonl")], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.stderr.startswith("error: ") and "use summarize.dataset: demo" in proc.stderr
    assert not (tmp_path / "test.jsonl").exists()
