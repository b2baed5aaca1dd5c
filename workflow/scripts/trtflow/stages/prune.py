"""List (or delete) keyed artifacts the current config (and its variants) no longer points at: engines, converted
shards, HF summaries.

Engine and converted folders and HF summaries are named by content keys, so every change of a setting leaves
the old one behind (which is what makes switching back free). This is a housekeeping command, not a rule: it
shows what they cost and removes them on request:

    python -m trtflow.stages.prune                 # list stale artifacts and their size
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
from ..dag import run_configs
from ..errors import run_stage
from ..flags import build_key, convert_key, hf_summary_key
from ..formats.artifact import size_on_disk


def current_folders(results: str, config: dict) -> set[Path]:
    """The folders the config and each of its variants point at."""
    keep = set()
    for run_config in run_configs(config).values():
        for model in config["models"]:
            ckey = convert_key(run_config, model)
            keep |= {Path(paths.under(results, template, model=model, convert_key=ckey))
                     for template in (paths.CMODEL_ROOT, paths.TRTLLM_CKPT_ROOT)}
            keep |= {Path(paths.under(results, paths.ENGINE, model=model, tp=tp,
                                      build_key=build_key(run_config, model, tp))) for tp in config["tp"]}
    return keep


def stale_folders(results: Path, config: dict) -> list[Path]:
    keep = current_folders(str(results), config)
    patterns = [paths.under(str(results), template, model="*", tp="*", build_key="*", convert_key="*")
                for template in paths.KEYED_FOLDERS]
    found = {Path(folder) for pattern in patterns for folder in glob.glob(pattern) if Path(folder).is_dir()}
    return sorted(found - keep)


def stale_hf_summaries(results: Path, config: dict) -> list[Path]:
    keep = {Path(paths.under(str(results), paths.HF_SUMMARY, model=m, hf_key=hf_summary_key(config, m)))
            for m in config["models"]}
    found = {Path(p) for p in glob.glob(paths.under(str(results), paths.HF_SUMMARY, model="*", hf_key="*"))}
    return sorted(found - keep)


def remove(artifact: Path) -> None:
    if artifact.is_dir():
        shutil.rmtree(artifact)
        return
    artifact.unlink()
    Path(paths.checksum_of(str(artifact))).unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="config/config.yaml")
    parser.add_argument("--results", default="results")
    parser.add_argument("--delete", action="store_true")
    args = parser.parse_args(argv)
    config = validate(yaml.safe_load(Path(args.config).read_text(encoding="utf-8")), SCHEMA)
    stale = stale_folders(Path(args.results), config) + stale_hf_summaries(Path(args.results), config)
    for artifact in stale:
        print(f"{'deleting' if args.delete else 'stale'} {artifact} ({size_on_disk(artifact) / 2**20:.1f} MiB)")
        if args.delete:
            remove(artifact)
    print(f"{len(stale)} stale artifact(s){'' if args.delete or not stale else '; --delete removes them'}")


if __name__ == "__main__":
    run_stage(main)
