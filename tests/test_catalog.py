"""The Snakemake workflow catalog's rules for listing a repository, applied to this checkout.

Transcribed from snakemake/snakemake-workflow-catalog: scripts/generate-catalog.py (a96e00ac) and
source/docs/about/adding_workflows.md (55ed72c2): a README naming "snakemake" and "workflow"; `workflow/Snakefile`
where a `workflow/` folder exists; rule modules ending in `.smk`; for the "standardized usage" list also
`config/README.md` and `.snakemake-workflow-catalog.yml`. It records `snakemake --lint` and `snakefmt --check` over
the Snakefile and the rules, run in the repository's root.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml
from conftest import ROOT

BIN = Path(sys.executable).parent


def test_the_catalog_would_list_the_repository_as_a_standardized_workflow():
    readme = (ROOT / "README.md").read_text().lower()
    assert "snakemake" in readme and "workflow" in readme
    assert (ROOT / "workflow").is_dir() and (ROOT / "workflow" / "Snakefile").is_file()
    assert any(path.suffix == ".smk" for path in (ROOT / "workflow" / "rules").iterdir())
    assert (ROOT / "config" / "README.md").is_file()
    settings = yaml.safe_load((ROOT / ".snakemake-workflow-catalog.yml").read_text())
    usage = settings["usage"]
    assert set(usage) == {"mandatory-flags", "software-stack-deployment", "report"} and usage["report"] is True
    assert (ROOT / "LICENSE").read_text().lstrip().startswith("Apache License")


def test_the_catalogs_format_and_lint_checks_pass():
    snakefiles = [ROOT / "workflow" / "Snakefile", *sorted((ROOT / "workflow" / "rules").glob("*.smk"))]
    fmt = subprocess.run([BIN / "snakefmt", "--check", *snakefiles], cwd=ROOT, capture_output=True, text=True)
    assert fmt.returncode == 0, fmt.stderr[-3000:]
    lint = subprocess.run([BIN / "snakemake", "--lint"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert lint.returncode == 0, lint.stdout[-3000:] + lint.stderr[-3000:]
