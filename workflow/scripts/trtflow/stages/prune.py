"""List (or delete) keyed artifacts the current config (and its variants) no longer points at: engines, converted
shards, HF summaries.

Engine and converted folders and HF summaries are named by content keys, so every change of a setting leaves
the old one behind (which is what makes switching back free). This is a housekeeping command, not a rule: it
shows what they cost and removes them on request:

    python -m trtflow.stages.prune                 # list stale artifacts and their size
    python -m trtflow.stages.prune --delete        # remove them
    python -m trtflow.stages.prune --config tp='[1,4]'   # against the config a run used (as given to snakemake)

Only what trtflow wrote is deleted: a keyed folder with its MANIFEST.json listing every file in it (a converted
folder's leaves), an HF summary with its .sha256; folders of models the config does not name are left alone.
"""

from __future__ import annotations

import argparse
import glob
import re
import shutil
from pathlib import Path

from .. import paths
from ..config import SCHEMA, ConfigError, validate
from ..dag import run_configs
from ..errors import run_stage
from ..flags import build_key, convert_key, hf_summary_key
from ..formats.artifact import MANIFEST, ArtifactError, read_json, size_on_disk
from ..infra import machine

KEY = re.compile(r"[0-9a-f]{10}")  # the content keys that name trtflow's folders and summaries
DEFAULT_CONFIG = "config/config.yaml"
SNAKEMAKE_MARKER = ".snakemake_timestamp"  # what Snakemake leaves in a directory() output


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


def foreign_files(folder: Path) -> list[str]:
    """Files in `folder` its MANIFEST.json does not list (all of them where it has none): what trtflow did not
    write there, and so never deletes."""
    try:
        listed = set(read_json(folder / MANIFEST)["files"])
    except (ArtifactError, KeyError, TypeError):
        listed = set()
    return sorted(rel for rel in (p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
                  if rel not in listed and rel not in (MANIFEST, SNAKEMAKE_MARKER))


def written_leaves(folder: Path) -> tuple[list[Path], list[str]]:
    """A keyed folder's parts trtflow wrote (itself where it holds a manifest; else its sub-folders that do, as a
    converted folder's {tp}-gpu / tp{tp} leaves) and what else it holds, relative to it."""
    if (folder / MANIFEST).is_file():
        foreign = foreign_files(folder)
        return ([] if foreign else [folder]), foreign
    leaves, foreign = [], []
    for child in sorted(folder.iterdir()):
        if child.is_dir() and (child / MANIFEST).is_file() and not foreign_files(child):
            leaves.append(child)
        else:
            foreign.append(child.name)
    return leaves, foreign


def matching(results: Path, template: str, **wildcards) -> list[Path]:
    """The paths of `template` under `results`, each wildcard given as "*" matching anything, the rest literally."""
    return [Path(p) for p in glob.glob(glob.escape(paths.under(str(results), template, **wildcards)).replace("[*]", "*"))]


def stale_folders(results: Path, config: dict) -> list[Path]:
    """Keyed folders of the config's models that neither it nor a variant points at."""
    keep = current_folders(str(results), config)
    found = {folder for model in config["models"] for template in paths.KEYED_FOLDERS
             for folder in matching(results, template, model=model, tp="*", build_key="*", convert_key="*")
             if folder.is_dir() and KEY.fullmatch(folder.name)}
    return sorted(found - keep)


def stale_hf_summaries(results: Path, config: dict) -> list[Path]:
    keep = {Path(paths.under(str(results), paths.HF_SUMMARY, model=m, hf_key=hf_summary_key(config, m)))
            for m in config["models"]}
    found = {summary for m in config["models"] for summary in matching(results, paths.HF_SUMMARY, model=m, hf_key="*")
             if KEY.fullmatch(summary.stem) and Path(paths.checksum_of(str(summary))).is_file()}
    return sorted(found - keep)


def other_models(results: Path, config: dict) -> list[str]:
    """Model folders under `results` the config does not name: never pruned, since their settings are unknown."""
    if not results.is_dir():
        return []
    return sorted(p.name for p in results.iterdir() if p.is_dir() and p.name not in config["models"]
                  and any((p / part).is_dir() for part in ("engines", "c-model", "trtllm-ckpt", "hf-summaries")))


def remove(artifact: Path) -> None:
    if artifact.is_dir():
        shutil.rmtree(artifact)
        return
    artifact.unlink()
    Path(paths.checksum_of(str(artifact))).unlink(missing_ok=True)


def load_config(configfiles: list[str], overrides: list[str]) -> dict:
    """The config a run was made with, merged as Snakemake merges it: config/config.yaml, then each --configfile,
    then --config KEY=VALUE."""
    from snakemake.cli import parse_config
    from snakemake.common.configfile import load_configfile
    from snakemake.utils import update_config

    config = load_configfile(DEFAULT_CONFIG) if Path(DEFAULT_CONFIG).is_file() else {}
    for path in configfiles:
        if not Path(path).is_file():
            raise ConfigError(f"--configfile {path}: no such file; give the config file the run used")
        update_config(config, load_configfile(path))
    update_config(config, parse_config(overrides))
    config = validate(config, SCHEMA)
    # `decode: auto` keys engines by the jobs' GPU, as the Snakefile settles it: else a GPU box's engines look stale
    config["gpu_arch"] = machine.gpu_arch(config["gpu_arch"])
    return config


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configfile", action="append", default=[],
                        help="as given to snakemake (read over config/config.yaml)")
    parser.add_argument("--config", nargs="*", default=[], metavar="KEY=VALUE", help="as given to snakemake")
    parser.add_argument("--results", default="results")
    parser.add_argument("--delete", action="store_true")
    args = parser.parse_args(argv)
    config = load_config(args.configfile, args.config)
    results = Path(args.results)
    stale = []
    for folder in stale_folders(results, config):
        leaves, foreign = written_leaves(folder)
        if foreign:
            print(f"kept {folder}: it holds what trtflow did not write ({', '.join(foreign[:3])}"
                  f"{' …' if len(foreign) > 3 else ''}); "
                  + (f"only its {len(leaves)} part(s) trtflow wrote are stale" if leaves else "nothing in it is stale"))
        stale += leaves
    stale += stale_hf_summaries(results, config)
    for artifact in stale:
        print(f"{'deleting' if args.delete else 'stale'} {artifact} ({size_on_disk(artifact) / 2**20:.1f} MiB)")
        if args.delete:
            remove(artifact)
            if KEY.fullmatch(artifact.parent.name) and not any(artifact.parent.iterdir()):
                artifact.parent.rmdir()  # a converted folder whose leaves were all trtflow's
    for model in other_models(results, config):
        print(f"left alone: {results / model}: model `{model}` is not in this config (pass the config its run "
              "used: --configfile / --config, as given to snakemake)")
    print(f"{len(stale)} stale artifact(s){'' if args.delete or not stale else '; --delete removes them'}")


if __name__ == "__main__":
    run_stage(main)
