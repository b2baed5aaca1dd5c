"""Every snakemake command line that README.md, config/README.md, CONTRIBUTING.md and docs/ print runs as written
(a dry run in a copy of the workflow): a target after `--config` is swallowed as a config item, and such a line
once stopped with a traceback."""

from __future__ import annotations

import os
import re
import shlex
import subprocess

import pytest
from conftest import ROOT, SNAKEMAKE, copy_workflow


def documented_commands() -> list[tuple[str, str]]:
    commands = []
    docs = ["README.md", "config/README.md", "CONTRIBUTING.md",
            *sorted(str(path.relative_to(ROOT)) for path in (ROOT / "docs").glob("*.md"))]
    for doc in docs:
        lines = (ROOT / doc).read_text().splitlines()
        index = 0
        while index < len(lines):
            line = lines[index]
            if re.match(r"^ {4}snakemake ", line):
                command = line.strip()
                while command.endswith("\\"):
                    index += 1
                    command = command[:-1] + " " + lines[index].strip()
                commands.append((doc, command.split("  #")[0].strip()))
            index += 1
    return commands


COMMANDS = documented_commands()


def test_the_docs_have_commands_to_check():
    assert len(COMMANDS) >= 8


@pytest.mark.parametrize("doc, command", COMMANDS, ids=[f"{d}:{c[:60]}" for d, c in COMMANDS])
def test_a_documented_command_runs_as_written(tmp_path, doc, command):
    workdir = copy_workflow(tmp_path / "wf").path
    argv = shlex.split(command)
    env = dict(os.environ)
    if "apptainer" in argv:  # a dry run only asks `apptainer --version` (Snakemake's check that it is installed)
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        (bin_dir / "apptainer").write_text('#!/bin/sh\n[ "$1" = --version ] && echo "apptainer version 1.3.4" '
                                           '&& exit 0\necho "not in a dry run: $*" >&2; exit 1\n')
        (bin_dir / "apptainer").chmod(0o755)
        env["PATH"] = f"{bin_dir}:{env['PATH']}"
    proc = subprocess.run([SNAKEMAKE, *argv[1:], "-n", "--quiet", "rules"], cwd=workdir, capture_output=True,
                          text=True, timeout=300, env=env)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "Traceback" not in output, f"{doc}: {command}\n{output[-3000:]}"
