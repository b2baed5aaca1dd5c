"""List (or delete) engine folders that the current config no longer points at.

Engine folders are keyed by their build flags, so every flag change leaves the old folder behind
(which is what makes switching back free). This shows what they cost and removes them on request:

    python -m trtflow.prune                 # list stale engine folders and their size
    python -m trtflow.prune --delete        # remove them
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import yaml

from .config import build_key, validate

SCHEMA = Path(__file__).resolve().parents[2] / "schemas" / "config.schema.yaml"


def current_keys(config: dict) -> set[tuple[str, str, str]]:
    return {(model, f"tp{tp}", build_key(config, model, tp)) for model in config["models"] for tp in config["tp"]}


def stale_engines(results: Path, config: dict) -> list[Path]:
    keep = current_keys(config)
    return sorted(folder for folder in results.glob("*/engines/tp*/*")
                  if folder.is_dir() and (folder.parts[-4], folder.parts[-2], folder.name) not in keep)


def folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="config/config.yaml")
    parser.add_argument("--results", default="results")
    parser.add_argument("--delete", action="store_true")
    args = parser.parse_args(argv)
    config = validate(yaml.safe_load(Path(args.config).read_text(encoding="utf-8")), SCHEMA)
    stale = stale_engines(Path(args.results), config)
    for folder in stale:
        print(f"{'deleting' if args.delete else 'stale'} {folder} ({folder_size(folder) / 2**20:.1f} MiB)")
        if args.delete:
            shutil.rmtree(folder)
    print(f"{len(stale)} stale engine folder(s){'' if args.delete or not stale else '; --delete removes them'}")


if __name__ == "__main__":
    main()
