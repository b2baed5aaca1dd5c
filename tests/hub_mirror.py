"""A Hugging Face-compatible hub on 127.0.0.1 for the tests: olah (PyPI `olah`) serving local git repositories
offline, so the real download rule runs through `HF_ENDPOINT` as it would against huggingface.co.

`make hub-mirror` installs olah into .venv-hub/ (a venv of its own: it pins FastAPI and friends). Without it the
hub tests skip and say so.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

from conftest import ROOT

OLAH_PYTHON = ROOT / ".venv-hub" / "bin" / "python"


def olah_missing() -> str | None:
    if not OLAH_PYTHON.is_file():
        return f"NOT TESTED: the hub path (no olah in {OLAH_PYTHON.parent.parent}; run `make hub-mirror`)"
    return None


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=trtflow tests", "-c", "user.email=tests@trtflow.invalid", *args],
                          cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def commit_all(repo: Path, message: str) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def model_repo(mirrors: Path, repo_id: str, checkpoint: Path) -> dict[str, str]:
    """`repo_id` as a git repository of two commits: `first` holds the checkpoint; `second` re-saves config.json
    (other bytes, same model) and adds notes.txt. Branch main points at the second, branch v1 at the first."""
    repo = mirrors / "models" / repo_id
    repo.mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(checkpoint / name, repo / name)
    first = commit_all(repo, "the demo checkpoint")
    git(repo, "branch", "v1")
    (repo / "config.json").write_text((repo / "config.json").read_text().replace("\n", "\n  "))
    (repo / "notes.txt").write_text("not part of the model\n")
    second = commit_all(repo, "config re-saved, notes added")
    return {"first": first, "second": second}


CNN_DAILYMAIL_CARD = """---
configs:
- config_name: 3.0.0
  data_files:
  - split: train
    path: 3.0.0/train.jsonl
  - split: validation
    path: 3.0.0/validation.jsonl
  - split: test
    path: 3.0.0/test.jsonl
---
# cnn_dailymail 3.0.0, as its hub repository lays it out (a few rows, for tests)
"""


def cnn_dailymail_repo(mirrors: Path, repo_id: str, rows: list[dict]) -> str:
    """A dataset repository with cnn_dailymail's config name, split names and columns (id, article, highlights)."""
    import json

    repo = mirrors / "datasets" / repo_id
    (repo / "3.0.0").mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    for split in ("train", "validation", "test"):
        (repo / "3.0.0" / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (repo / "README.md").write_text(CNN_DAILYMAIL_CARD)
    return commit_all(repo, "cnn_dailymail 3.0.0 (test rows)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Mirror:
    """olah on a free loopback port, serving the git repositories under `mirrors` and nothing else (offline)."""

    def __init__(self, mirrors: Path, workdir: Path):
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        workdir.mkdir(parents=True, exist_ok=True)
        config = workdir / "olah.toml"
        config.write_text(f'[basic]\nhost = "127.0.0.1"\nport = {self.port}\nmirror-netloc = "127.0.0.1:{self.port}"\n'
                          f'mirror-lfs-netloc = "127.0.0.1:{self.port}"\nmirrors-path = ["{mirrors}"]\n'
                          f'repos-path = "{workdir / "cache"}"\n\n[accessibility]\noffline = true\n')
        self.log = open(workdir / "olah.log", "w")  # noqa: SIM115  (closed in stop)
        self.process = subprocess.Popen([str(OLAH_PYTHON), "-m", "olah.server", "-c", str(config)], cwd=workdir,
                                        stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{self.endpoint}/api/whoami-v2", timeout=2)
                break
            except urllib.error.HTTPError:
                break  # it answers
            except OSError:
                assert self.process.poll() is None, (workdir / "olah.log").read_text()
                assert time.monotonic() < deadline, "olah did not start in 60 s"
                time.sleep(0.2)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        self.log.close()
