"""Model sources → resources/models/{model}/hf/ with config.json, weights, tokenizer and MANIFEST.json.

`hf`: huggingface_hub.snapshot_download (honours HF_ENDPOINT, HF_HOME, HF_HUB_OFFLINE; files
already in the cache are not fetched again), then copied into the artifact folder. `local`: an existing
checkpoint folder, copied (a reflink where the filesystem offers one; never a hard link, so neither side
can change the other). `demo`: see demo_model.py.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..errors import KnownError, run_stage
from ..formats.artifact import atomic_dir, copy_file
from ..formats.hf_config import WEIGHT_FILES, CheckpointError, index_of, read_hf_config

WEIGHTS_WHOLE_OR_SHARDED = (*WEIGHT_FILES, *map(index_of, WEIGHT_FILES))


class HubError(KnownError, RuntimeError):
    pass


def check_source(src_dir: Path) -> None:
    """Fail here, not three stages later, if this is no GPT-2 checkpoint with weights."""
    read_hf_config(src_dir)
    if not any((src_dir / name).is_file() for name in WEIGHTS_WHOLE_OR_SHARDED):
        raise CheckpointError(f"{src_dir} has no weights ({' or '.join(WEIGHTS_WHOLE_OR_SHARDED)}); check the download "
                              "patterns (models.<name>.include) or the folder")


def _fill(tmp: Path, src_dir: Path) -> None:
    for path in sorted(src_dir.rglob("*")):
        if path.is_file() and ".cache" not in path.parts and path.name != "MANIFEST.json":
            copy_file(path, tmp / path.relative_to(src_dir))


def _repo_exists(repo_id: str) -> bool:
    from huggingface_hub import HfApi

    try:
        HfApi().repo_info(repo_id, revision="main")
        return True
    except Exception:  # unreachable or refused: say what the download said
        return False


def fetch_hf(repo_id: str, revision: str, include: list[str], out_dir: str | Path) -> None:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    where = f"{repo_id}@{revision} from {os.environ.get('HF_ENDPOINT', 'https://huggingface.co')}"
    no_revision = (f"cannot download {where}: the repository has no revision {revision!r}; set "
                   "models.<name>.revision to a branch, tag or commit sha it has")
    try:
        snapshot = Path(snapshot_download(repo_id=repo_id, revision=revision, allow_patterns=include))
    except GatedRepoError as err:
        raise HubError(f"cannot download {where}: the repository is gated; accept its terms on its hub page, then "
                       "set HF_TOKEN (or `hf auth login`) with a token of that account") from err
    except RevisionNotFoundError as err:
        raise HubError(no_revision) from err
    except RepositoryNotFoundError as err:
        if _repo_exists(repo_id):  # some mirrors answer an unknown revision as an unknown repository
            raise HubError(no_revision) from err
        raise HubError(f"cannot download {where}: no such repository, or it is private; check models.<name>.repo_id, "
                       "or set HF_TOKEN for a private one") from err
    except LocalEntryNotFoundError as err:
        raise HubError(
            f"cannot download {where}: the hub is unreachable or HF_HUB_OFFLINE=1 is set and the "
            f"files are not in the cache (HF_HOME={os.environ.get('HF_HOME', '~/.cache/huggingface')}). "
            "Alternatives: point HF_ENDPOINT at a mirror, use `source: local` with a checkpoint folder, "
            "or build the offline `demo` model") from err
    except Exception as err:  # network errors come in many types
        raise HubError(f"cannot download {where} ({type(err).__name__}: {err}). Check the network or "
                       "HF_ENDPOINT, or use `source: local` / the `demo` model") from err
    check_source(snapshot)
    meta = {"source": "hf", "repo_id": repo_id, "revision": revision, "resolved_revision": snapshot.name,
            "include": include}
    with atomic_dir(out_dir, meta) as tmp:
        _fill(tmp, snapshot)


def copy_local(path: str | Path, out_dir: str | Path) -> None:
    src = Path(path).expanduser()
    if not src.is_dir():
        raise CheckpointError(f"models.<name>.path {src} is not a folder; point it at a HF checkpoint folder")
    check_source(src)
    with atomic_dir(out_dir, {"source": "local", "path": str(src.resolve()), "revision": None}) as tmp:
        _fill(tmp, src)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Fetch a model checkpoint into the workflow's resources.")
    parser.add_argument("--source", choices=["hf", "local"], required=True)
    parser.add_argument("--repo-id")
    parser.add_argument("--revision", default="main")
    parser.add_argument("--include", nargs="*", default=["*.json", "*.bin", "*.safetensors", "*.txt"])
    parser.add_argument("--path")
    parser.add_argument("--out-dir", required=True)
    args = parser.parse_args(argv)
    if args.source == "hf":
        fetch_hf(args.repo_id, args.revision, args.include, args.out_dir)
    else:
        copy_local(args.path, args.out_dir)
    print(f"wrote {args.out_dir}")


if __name__ == "__main__":
    run_stage(main)
