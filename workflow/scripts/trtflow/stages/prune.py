"""List (or delete) keyed folders that the current config no longer points at: engines and converted shards.

Engine and converted folders are named by content keys, so every change of a build or conversion setting
leaves the old folder behind (which is what makes switching back free). This is a housekeeping command,
not a rule: it shows what they cost and removes them on request:

    python -m trtflow.stages.prune                 # list stale folders and their size
    python -m trtflow.stages.prune --delete        # remove them
"""

from __future__ import annotations

import argparse
import glob
import shutil
from pathlib import Path

import yaml

from .. import paths
from ..config import SCHEMA, validate
from ..errors import run_stage
from ..flags import build_key, convert_key


def current_folders(results: str, config: dict) -> set[Path]:
    keep = set()
    for model in config["models"]:
        ckey = convert_key(config, model)
        keep |= {Path(paths.under(results, template, model=model, convert_key=ckey))
                 for template in (paths.CMODEL_ROOT, paths.TRTLLM_CKPT_ROOT)}
        keep |= {Path(paths.under(results, paths.ENGINE, model=model, tp=tp, build_key=build_key(config, model, tp)))
                 for tp in config["tp"]}
    return keep


def stale_folders(results: Path, config: dict) -> list[Path]:
    keep = current_folders(str(results), config)
    patterns = [paths.under(str(results), template, model="*", tp="*", build_key="*", convert_key="*")
                for template in paths.KEYED_FOLDERS]
    found = {Path(folder) for pattern in patterns for folder in glob.glob(pattern) if Path(folder).is_dir()}
    return sorted(found - keep)


def folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="config/config.yaml")
    parser.add_argument("--results", default="results")
    parser.add_argument("--delete", action="store_true")
    args = parser.parse_args(argv)
    config = validate(yaml.safe_load(Path(args.config).read_text(encoding="utf-8")), SCHEMA)
    stale = stale_folders(Path(args.results), config)
    for folder in stale:
        print(f"{'deleting' if args.delete else 'stale'} {folder} ({folder_size(folder) / 2**20:.1f} MiB)")
        if args.delete:
            shutil.rmtree(folder)
    print(f"{len(stale)} stale folder(s){'' if args.delete or not stale else '; --delete removes them'}")


if __name__ == "__main__":
    run_stage(main)
