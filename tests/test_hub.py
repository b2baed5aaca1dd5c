"""The hub path for real: the download rule against a Hugging Face-compatible server on 127.0.0.1 (olah serving
git repositories offline), through HF_ENDPOINT, as a user with a mirror would run it."""

from __future__ import annotations

import copy
import http.server
import json
import shutil
import threading

import pytest
import yaml
from conftest import ROOT, copy_workflow
from hub_mirror import Mirror, cnn_dailymail_repo, model_repo, olah_missing
from trtflow.evaluation.datasets import read_dataset

pytestmark = pytest.mark.skipif(bool(olah_missing()), reason=olah_missing() or "")

BASE = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
REPO = "trtflow/demo-gpt2"


@pytest.fixture(scope="module")
def hub(tmp_path_factory, demo_resources):
    root = tmp_path_factory.mktemp("hub")
    commits = model_repo(root / "mirrors", REPO, demo_resources / "models/demo/hf")
    rows = [{key: row[key] for key in ("id", "article", "highlights")}
            for row in read_dataset(demo_resources / "datasets/demo/test.jsonl")[:6]]
    cnn_dailymail_repo(root / "mirrors", "abisee/cnn_dailymail", rows)
    mirror = Mirror(root / "mirrors", root / "olah")
    yield {"rows": rows, "endpoint": mirror.endpoint, "repo": root / "mirrors/models" / REPO, **commits}
    mirror.stop()


@pytest.fixture
def hub_workflow(tmp_path, demo_resources, hub, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", hub["endpoint"])
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    wf = copy_workflow(tmp_path / "wf")
    (wf.path / "resources").mkdir()
    shutil.copytree(demo_resources / "datasets", wf.path / "resources/datasets")
    return wf


def with_model(**spec) -> dict:
    config = copy.deepcopy(BASE)
    config["models"]["hubdemo"] = {"source": "hf", "repo_id": REPO, **spec}
    config["tp"] = [1]
    return config


def manifest(wf) -> dict:
    return json.loads((wf.path / "resources/models/hubdemo/hf/MANIFEST.json").read_text())


def test_a_branch_with_include_patterns_then_the_whole_chain(hub_workflow, hub):
    wf = hub_workflow
    wf.run("results/hubdemo/tp1/generate.json", config=with_model(revision="main", include=["*.json", "*.safetensors"]))
    folder = wf.path / "resources/models/hubdemo/hf"
    assert set(manifest(wf)["files"]) == {"config.json", "model.safetensors", "tokenizer.json",
                                          "tokenizer_config.json"}  # notes.txt is not included
    assert not (folder / "notes.txt").exists()
    assert manifest(wf)["resolved_revision"] == hub["second"]
    assert (folder / "config.json").read_bytes() == (hub["repo"] / "config.json").read_bytes()
    assert json.loads((wf.path / "results/hubdemo/tp1/generate.json").read_text())["outputs"][0]["output_ids"]


@pytest.mark.parametrize("pin", ["sha", "branch"])
def test_a_revision_pinned_to_a_commit_or_a_branch_gets_that_commits_bytes(hub_workflow, hub, pin):
    wf = hub_workflow
    revision = hub["first"] if pin == "sha" else "v1"
    wf.run("resources/models/hubdemo/hf", config=with_model(revision=revision))
    assert manifest(wf)["resolved_revision"] == hub["first"] and manifest(wf)["revision"] == revision
    first_config = json.loads((wf.path / "resources/models/hubdemo/hf/config.json").read_text())
    assert "notes.txt" not in manifest(wf)["files"] and first_config["n_head"] == 4
    assert (wf.path / "resources/models/hubdemo/hf/config.json").read_bytes() != (hub["repo"] / "config.json").read_bytes()


def test_offline_from_a_filled_cache(hub_workflow, hub, monkeypatch):
    wf = hub_workflow
    wf.run("resources/models/hubdemo/hf", config=with_model(revision=hub["second"]))
    first = manifest(wf)
    shutil.rmtree(wf.path / "resources/models/hubdemo")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing answers there: the cache alone serves
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    wf.run("resources/models/hubdemo/hf")
    assert manifest(wf)["files"] == first["files"] and manifest(wf)["resolved_revision"] == hub["second"]


def test_an_interrupted_download_completes_on_the_next_run(hub_workflow, hub, tmp_path, monkeypatch):
    """Half of the weights left in the cache, as a killed download leaves them: the next run ends with the right
    bytes. (huggingface_hub 2.x fetches such a file again from its start: it no longer resumes, #4228.)"""
    wf = hub_workflow
    wf.run("resources/models/hubdemo/hf", config=with_model(revision="main"))
    full = wf.path / "resources/models/hubdemo/hf/model.safetensors"
    (blob,) = [p for p in (tmp_path / "hf-home/hub").rglob("blobs/*") if p.stat().st_size == full.stat().st_size]
    shutil.rmtree(wf.path / "resources/models/hubdemo")
    partial_home = tmp_path / "hf-home-partial"
    partial = partial_home / blob.relative_to(tmp_path / "hf-home").parent / f"{blob.name}.incomplete"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(blob.read_bytes()[: blob.stat().st_size // 2])
    monkeypatch.setenv("HF_HOME", str(partial_home))
    wf.run("resources/models/hubdemo/hf")
    assert (wf.path / "resources/models/hubdemo/hf/model.safetensors").read_bytes() == blob.read_bytes()
    assert (partial_home / blob.relative_to(tmp_path / "hf-home")).read_bytes() == blob.read_bytes()


@pytest.mark.parametrize("spec, message", [
    ({"repo_id": "trtflow/no-such-model"}, "no such repository, or it is private; check models.<name>.repo_id"),
    ({"revision": "no-such-branch"}, "the repository has no revision 'no-such-branch'"),
])
def test_a_missing_repo_or_revision_is_one_line(hub_workflow, spec, message):
    proc = hub_workflow.run("resources/models/hubdemo/hf", config=with_model(**spec), check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "error: cannot download" in output and message in output, output[-3000:]
    assert "Traceback" not in output and not (hub_workflow.path / "resources/models/hubdemo/hf").exists()


class GatedHub(http.server.BaseHTTPRequestHandler):
    """What huggingface.co answers for a gated repository to a token that has not accepted its terms."""

    def _gated(self) -> None:
        self.send_response(401)
        self.send_header("X-Error-Code", "GatedRepo")
        self.send_header("X-Error-Message", "Access to model trtflow/gated is restricted.")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_HEAD = _gated  # noqa: N815

    def log_message(self, *args) -> None:
        pass


def test_a_gated_repo_says_to_accept_its_terms(hub_workflow, monkeypatch):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), GatedHub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
    try:
        proc = hub_workflow.run("resources/models/hubdemo/hf", config=with_model(repo_id="trtflow/gated"), check=False)
    finally:
        server.shutdown()
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "the repository is gated; accept its terms" in output, output[-3000:]
    assert "Traceback" not in output


def test_cnn_dailymail_through_the_dataset_rule_then_summarize(hub_workflow, hub, demo_resources):
    """summarize.dataset: cnn_dailymail, loaded by `datasets` from a served repository with the real config name,
    split names and columns, then scored like any dataset."""
    wf = hub_workflow
    shutil.copytree(demo_resources / "models", wf.path / "resources/models")  # trained once per session
    config = copy.deepcopy(BASE)
    config["tp"] = [1]
    config["summarize"]["dataset"] = "cnn_dailymail"
    wf.run("results/demo/tp1/rouge.json", config=config)
    rows = read_dataset(wf.path / "resources/datasets/cnn_dailymail/test.jsonl")
    assert rows == hub["rows"]
    rouge = json.loads((wf.path / "results/demo/tp1/rouge.json").read_text())
    assert rouge["dataset"]["name"] == "cnn_dailymail" and rouge["dataset"]["ids"] == [r["id"] for r in hub["rows"]]
    assert len(rouge["engine"]["texts"]) == len(hub["rows"])
