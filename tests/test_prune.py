"""prune deletes only what trtflow wrote and the config no longer names: a keyed folder whose MANIFEST.json lists
every file in it, an HF summary with its checksum; never a user's notes, a colleague's folder, or the results of a
model the config it reads does not name. It reads the config as snakemake does (--configfile, --config)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from conftest import validated
from trtflow import paths
from trtflow.config import ConfigError
from trtflow.flags import build_key, convert_key
from trtflow.formats.artifact import write_manifest
from trtflow.stages import prune

CONFIG = Path(__file__).resolve().parents[1] / "config" / "config.yaml"


def written(folder: Path, files: dict[str, bytes]) -> Path:
    """A folder as trtflow's atomic_dir leaves it: the files and a MANIFEST.json listing them."""
    folder.mkdir(parents=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    write_manifest(folder, {"writer": "test"})
    return folder


def summary(path: Path, checksum: bool = True) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{}")
    if checksum:
        Path(paths.checksum_of(str(path))).write_text(hashlib.sha256(b"{}").hexdigest())
    return path


@pytest.fixture
def results(tmp_path, monkeypatch):
    import yaml

    monkeypatch.chdir(tmp_path)
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text(CONFIG.read_text())
    config = validated(yaml.safe_load(CONFIG.read_text()))
    root = tmp_path / "results"
    engines = root / "demo" / "engines" / "tp1"
    tree = {
        "current": written(Path(paths.under(str(root), paths.ENGINE, model="demo", tp=1,
                                            build_key=build_key(config, "demo", 1))), {"config.json": b"{}"}),
        "stale": written(engines / "0123456789", {"config.json": b"{}", "rank0.safetensors": b"x"}),
        "unmanifested": engines / "1111111111",
        "with-notes": written(engines / "2222222222", {"config.json": b"{}"}),
        "notes-folder": engines / "my-notes",
        "stale-cmodel": root / "demo" / "c-model" / "3333333333",
        "current-cmodel": Path(paths.under(str(root), paths.CMODEL_ROOT, model="demo",
                                           convert_key=convert_key(config, "demo"))),
        "old-summary": summary(root / "demo" / "hf-summaries" / "4444444444.json"),
        "my-comparison": summary(root / "demo" / "hf-summaries" / "my-comparison.json"),
        "unchecked-summary": summary(root / "demo" / "hf-summaries" / "5555555555.json", checksum=False),
        "other-model": written(root / "mine" / "engines" / "tp1" / "6666666666", {"config.json": b"{}"}),
    }
    tree["unmanifested"].mkdir()
    (tree["unmanifested"] / "baseline.csv").write_text("a colleague's")
    (tree["with-notes"] / "NOTES.md").write_text("mine")
    tree["notes-folder"].mkdir()
    (tree["notes-folder"] / "todo.txt").write_text("mine")
    written(tree["stale-cmodel"] / "1-gpu", {"model.wte.bin": b"x"})
    written(tree["stale-cmodel"] / "2-gpu", {"model.wte.bin": b"x"})
    written(tree["current-cmodel"] / "1-gpu", {"model.wte.bin": b"x"})
    tree["baseline"] = tree["stale-cmodel"] / "my-baseline"
    tree["baseline"].mkdir()
    return root, tree


def test_prune_deletes_only_what_trtflow_wrote(results, capsys):
    root, tree = results
    prune.main(["--results", str(root), "--delete"])
    out = capsys.readouterr().out
    gone = {"stale", "old-summary"}
    for name, path in tree.items():
        assert path.exists() != (name in gone), name
    assert not (tree["stale-cmodel"] / "1-gpu").exists() and not (tree["stale-cmodel"] / "2-gpu").exists()
    assert not Path(paths.checksum_of(str(tree["old-summary"]))).exists()
    assert f"kept {tree['with-notes']}: it holds what trtflow did not write (NOTES.md)" in out
    assert f"kept {tree['stale-cmodel']}: it holds what trtflow did not write (my-baseline)" in out
    assert f"left alone: {root / 'mine'}: model `mine` is not in this config" in out


def test_a_converted_folder_of_trtflow_leaves_only_goes_whole(results):
    root, tree = results
    tree["baseline"].rmdir()
    prune.main(["--results", str(root), "--delete"])
    assert not tree["stale-cmodel"].exists() and tree["current-cmodel"].is_dir()


def test_prune_reads_the_config_as_snakemake_does(results, tmp_path, capsys):
    """A model and tp given with --config (or a --configfile) keep their engines: prune is told the run's config."""
    root, tree = results
    local = tmp_path / "mine-hf"
    local.mkdir()
    (local / "config.json").write_text('{"model_type": "gpt2", "n_head": 4, "n_positions": 1024}')
    args = ["--results", str(root), "--config", f"models={{'demo': {{'source': 'demo'}}, 'mine': "
            f"{{'source': 'local', 'path': '{local}'}}}}", "tp=[1]"]
    config = prune.load_config([], args[3:])
    mine = Path(paths.under(str(root), paths.ENGINE, model="mine", tp=1, build_key=build_key(config, "mine", 1)))
    written(mine, {"config.json": b"{}"})
    prune.main([*args, "--delete"])
    out = capsys.readouterr().out
    assert mine.is_dir() and not tree["other-model"].exists()  # mine's own stale engine goes, its current stays
    assert "left alone" not in out
    with pytest.raises(ConfigError, match="--configfile .*nope.yaml: no such file"):
        prune.main(["--results", str(root), "--configfile", str(tmp_path / "nope.yaml")])


def test_prune_keys_engines_by_the_gpu_the_runs_saw(tmp_path, monkeypatch):
    """decode: auto names an H200's engine after the kernels: prune must settle the GPU as the Snakefile does, or that
    engine looks stale on the very box that built it."""
    import yaml

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TRTFLOW_GPU_ARCH", "9.0")
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text(CONFIG.read_text())
    on_h200 = validated(yaml.safe_load(CONFIG.read_text()))
    on_h200["gpu_arch"] = "9.0"
    root = tmp_path / "results"
    engine = written(Path(paths.under(str(root), paths.ENGINE, model="demo", tp=1,
                                      build_key=build_key(on_h200, "demo", 1))), {"config.json": b"{}"})
    prune.main(["--results", str(root), "--delete"])
    assert engine.is_dir()
