"""Bad input, faults and hostile input beyond the reported rounds, each found by trying it: values no later check
could hold (NaN, infinity, NUL, seeds torch refuses), GPU pools that would make a job wait for itself, checkpoints
as other tools keep them, and a link planted where the workflow writes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest
import torch
from conftest import SCHEMA, SNAKEMAKE, changed, make_gpt2
from trtflow.config import ConfigError, validate
from trtflow.dag import check_config
from trtflow.formats.hf import open_checkpoint
from trtflow.infra.gpus import GpuPoolError, gpu_pool, lock_dir
from trtflow.stages.download_model import copy_local

NAN, INF = float("nan"), float("inf")


REFUSED = {
    # an infinite benchmark never ends; a NaN one means nothing
    "benchmark lasting forever": (lambda c: c["benchmark"].update(duration=INF), "`benchmark.duration` = inf",
                                  "not a finite number"),
    "benchmark of NaN seconds": (lambda c: c["benchmark"].update(duration=NAN), "`benchmark.duration` = nan",
                                 "not a finite number"),
    # every comparison with NaN is false: a gate with it would never fail
    "gate margin of NaN": (lambda c: c["summarize"].update(max_se_below_hf=NAN), "`summarize.max_se_below_hf` = nan",
                           "not a finite number"),
    "gate threshold of NaN": (lambda c: c["summarize"].update(rouge1_threshold=NAN),
                              "`summarize.rouge1_threshold` = nan", "not a finite number"),
    # training at an infinite rate gives a model of NaN weights that still "runs"
    "demo trained at an infinite rate": (lambda c: c["models"]["demo"].update(recipe={"lr": INF}),
                                         "`models.demo.recipe.lr` = inf", "not a finite number"),
    # torch.manual_seed raises an overflow a minute into the job
    "demo seed past torch's range": (lambda c: c["models"]["demo"].update(recipe={"seed": 2**70}),
                                     "`models.demo.recipe.seed`", "from -2**63 to 2**64 - 1"),
    # the byte-level tokenizer never has fewer tokens than its alphabet: the model would get another size
    "demo vocabulary under the byte alphabet": (lambda c: c["models"]["demo"].update(recipe={"vocab_size": 10}),
                                                "`models.demo.recipe.vocab_size` = 10", "use at least 257"),
    # no command line and no file name can carry a NUL
    "NUL in a prompt": (lambda c: c["generate"].update(input_text=["Born in\x00France"]),
                        "`generate.input_text.0`", "holds a NUL character"),
    "NUL in a local path": (lambda c: c["models"].update(mine={"source": "local", "path": "/models/a\x00b"}),
                            "`models.mine.path`", "holds a NUL character"),
    # a bare string where a list belongs
    "one prompt without its list": (lambda c: c["generate"].update(input_text="Born in north-east France"),
                                    "`generate.input_text`", "type array"),
    "a benchmark case of three numbers": (lambda c: c["benchmark"].update(input_output_len=[[60, 20, 8]]),
                                          "`benchmark.input_output_len.0`", "is too long"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_a_value_no_later_check_could_hold_is_refused_with_the_fix(case):
    edit, problem, fix = REFUSED[case]
    with pytest.raises(ConfigError) as refused:
        validate(changed(edit))
    assert problem in str(refused.value) and fix in str(refused.value)


def test_a_nan_in_the_config_file_stops_snakemake_before_any_job(workflow_dir):
    config = changed(lambda c: c["summarize"].update(max_se_below_hf=NAN))
    proc = workflow_dir.run("-n", config=config, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "`summarize.max_se_below_hf` = nan: not a finite number" in output, output[-2000:]
    assert "Building DAG of jobs" not in output


@pytest.mark.parametrize("flow", [0.8, 1.2])
def test_a_trtllm_flow_written_as_a_number_means_that_version(flow):
    config = validate(changed(lambda c: c["trtllm"].update(flow=flow)))
    assert config["trtllm"]["flow"] == str(flow)


def test_a_gpu_architecture_written_as_a_number_means_that_architecture():
    assert validate(changed(lambda c: c.update(gpu_arch=9.0)))["gpu_arch"] == "9.0"


@pytest.mark.parametrize("recipe, problem", [
    ({"n_positions": 64}, "exceeds model `demo`'s n_positions 64 (demo recipe of model `demo`)"),
    ({"n_head": 8, "n_embd": 128}, None),
    ({"n_head": 1, "n_embd": 128}, "head count"),
])
def test_an_edited_demo_recipe_is_checked_against_itself_not_the_first_runs_model(recipe, problem, tmp_path,
                                                                                monkeypatch):
    """After a first run, resources/models/demo/hf/config.json holds the old model; the recipe retrains it."""
    monkeypatch.chdir(tmp_path)
    old = tmp_path / "resources" / "models" / "demo" / "hf"
    old.mkdir(parents=True)
    (old / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_head": 4, "n_embd": 128, "n_layer": 2,
                                                 "n_positions": 1024, "vocab_size": 2048}))
    config = changed(lambda c: (c["models"]["demo"].update(recipe=recipe), c.update(tp=[1, 2])))
    if problem is None:
        check_config(config, SCHEMA)
        return
    with pytest.raises(ConfigError) as refused:
        check_config(config, SCHEMA)
    assert problem in str(refused.value)


@pytest.mark.parametrize("pool, problem", [("0,0", "names GPU 0 twice"), ("abc", "'abc', which is no GPU index"),
                                           ("0,-1", "'-1', which is no GPU index")])
def test_a_gpu_pool_a_job_could_never_take_is_refused(pool, problem):
    """With GPU 0 listed twice a two-GPU job locks GPU 0, then waits an hour for its own lock."""
    with pytest.raises(GpuPoolError) as refused:
        gpu_pool({"TRTFLOW_GPU_POOL": pool})
    assert problem in str(refused.value) and "TRTFLOW_GPU_POOL=0,1,2,3" in str(refused.value)


def test_a_gpu_pool_of_uuids_with_spaces_is_read_as_written():
    assert gpu_pool({"TRTFLOW_GPU_POOL": "GPU-1a2b, GPU-3c4d"}) == ["GPU-1a2b", "GPU-3c4d"]


@pytest.mark.parametrize("visible, pool", [("-1", []), ("0,1,-1,2", ["0", "1"]), ("1,GPU-ab", ["1", "GPU-ab"])])
def test_cuda_visible_devices_is_read_as_cuda_reads_it(visible, pool):
    """CUDA shows the devices before the first entry that names none; `-1` is the usual way to hide them all."""
    assert gpu_pool({"CUDA_VISIBLE_DEVICES": visible, "TRTFLOW_GPU_POOL": "4"}) == pool


def test_a_bad_gpu_pool_stops_snakemake_in_one_line_before_any_job(workflow_dir):
    proc = workflow_dir.run("-n", check=False, env={**os.environ, "TRTFLOW_GPU_POOL": "0,0"})
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "names GPU 0 twice" in output and "Traceback" not in output, output[-2000:]


def test_a_gpu_lock_folder_that_cannot_be_made_is_one_line(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(GpuPoolError) as refused:
        lock_dir({"TRTFLOW_GPU_LOCK_DIR": str(blocker / "locks")})
    assert "set TRTFLOW_GPU_LOCK_DIR to a folder" in str(refused.value)


def test_a_checkpoint_kept_as_the_hub_cache_keeps_it_imports_files_not_links(tiny_gpt2, tmp_path):
    """huggingface_hub's cache holds a snapshot of links into a blob store; pointing `path` at it is common."""
    blobs, snapshot = tmp_path / "blobs", tmp_path / "snapshots" / "abc123"
    blobs.mkdir()
    snapshot.mkdir(parents=True)
    for index, source in enumerate(sorted(tiny_gpt2.iterdir())):
        shutil.copy(source, blobs / f"blob{index}")
        (snapshot / source.name).symlink_to(os.path.relpath(blobs / f"blob{index}", snapshot))
    copy_local(snapshot, tmp_path / "imported")
    for source in tiny_gpt2.iterdir():
        copied = tmp_path / "imported" / source.name
        assert copied.is_file() and not copied.is_symlink() and copied.read_bytes() == source.read_bytes()
    shutil.rmtree(blobs)  # the cache pruned: the import stands on its own
    assert (tmp_path / "imported" / "model.safetensors").stat().st_size > 0


def test_with_both_weight_files_the_safetensors_one_is_read_as_transformers_reads_it(tmp_path):
    """A folder holding model.safetensors and an older pytorch_model.bin of other weights: the converter must read
    the file transformers loads, or the engine would silently differ from the HF reference."""
    folder = make_gpt2(tmp_path / "both", seed=1)
    other = make_gpt2(tmp_path / "other", seed=2, safetensors=False)
    shutil.copy(other / "pytorch_model.bin", folder / "pytorch_model.bin")
    from transformers import GPT2LMHeadModel

    reference = GPT2LMHeadModel.from_pretrained(folder).state_dict()["transformer.h.0.mlp.c_fc.weight"]
    reader = open_checkpoint(folder)
    name = next(n for n in reader.names() if n.endswith("h.0.mlp.c_fc.weight"))
    assert torch.equal(reader.get(name).float(), reference.float())
    reader.close()


def test_a_link_planted_where_the_workflow_writes_is_replaced_not_written_through(workflow_dir, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me\n")
    target = workflow_dir.path / "resources" / "datasets" / "demo" / "test.jsonl"
    target.parent.mkdir(parents=True)
    target.symlink_to(victim)
    workflow_dir.run("resources/datasets/demo/test.jsonl", "--forcerun", "demo_dataset")
    assert victim.read_text() == "keep me\n"
    assert target.is_file() and not target.is_symlink() and target.stat().st_size > 0


def test_a_missing_configfile_is_named_by_snakemake_itself(workflow_dir):
    """Snakemake reads --configfile before trtflow's checks run, so the words are its own (docs/troubleshooting.md):
    its traceback ends with the line that names the file."""
    proc = subprocess.run([SNAKEMAKE, "-n", "--configfile", "nope.yaml"], cwd=workflow_dir.path, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode != 0
    assert proc.stdout.strip().splitlines()[-1] == "FileNotFoundError: [Errno 2] No such file or directory: 'nope.yaml'"
