"""The documents a user reads hold what they promise: README.md short with its results first, every figure of its
tables and of docs/benchmarks/README.md's a row of docs/benchmarks/current.csv, docs/benchmarks small at its top,
every relative link resolving."""

from __future__ import annotations

import csv
import re
import subprocess
import sys

from conftest import ROOT

BENCHMARKS = ROOT / "docs" / "benchmarks"
USER_DOCS = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", ROOT / "CHANGELOG.md", ROOT / "config" / "README.md",
             *sorted((ROOT / "docs").rglob("*.md"))]


def test_the_readme_is_short_and_opens_with_its_results():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 200
    table = next(index for index, line in enumerate(lines) if line.startswith("| gpt2-medium shape"))
    assert table < 40 and lines[table - 1] == "<!-- current.csv: speed -->"


def test_the_docs_tables_are_written_from_current_csv():
    proc = subprocess.run([sys.executable, "benchmarks/current.py", "tables", "--check"], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_figure_in_the_readme_tables_is_a_figure_of_current_csv():
    """Independent of the writer: each number in a results table is some row's value, rounded as shown."""
    values = set()
    for row in csv.DictReader((BENCHMARKS / "current.csv").open()):
        for column in ("latency_ms", "tokens_per_s", "rouge1"):
            if row[column]:
                value = float(row[column])
                values |= {f"{value:.2f}", f"{value:,.1f}", f"{value:,.0f}"}
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"<!-- current.csv: \w+ -->\n(.*?)<!-- end -->", text, re.S)
    assert len(blocks) == 2
    for block in blocks:
        for line in block.splitlines()[2:]:
            cells = [cell.strip() for cell in line.strip("|").split("|")]
            figures = [cell for cell in cells if re.fullmatch(r"[\d,]+(\.\d+)?", cell) and cell not in ("1", "2")]
            assert figures and all(cell in values for cell in figures), line


def test_docs_benchmarks_keeps_a_small_top_and_a_readme_in_every_data_folder():
    assert len(list(BENCHMARKS.iterdir())) <= 12
    folders = list((BENCHMARKS / "data").iterdir())
    assert folders and all(re.fullmatch(r"\d{4}-\d\d-\d\d-[a-z0-9-]+", folder.name) for folder in folders)
    assert all((folder / "README.md").is_file() for folder in folders)


def test_every_relative_link_and_path_in_the_user_docs_resolves():
    missing = []
    for doc in USER_DOCS:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", doc.read_text()):
            if "://" not in target and not (doc.parent / target).exists():
                missing.append(f"{doc.relative_to(ROOT)}: {target}")
    assert not missing, missing


def test_the_user_docs_name_no_internal_issue_letters():
    pattern = re.compile(r"\b[Ii]ssues? [A-Z][0-9]?\b")
    found = [f"{doc.relative_to(ROOT)}: {match}" for doc in USER_DOCS for match in pattern.findall(doc.read_text())]
    assert not found, found
