"""Datasets as JSONL with the cnn_dailymail fields (id, article, highlights), checked on read."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import KnownError

REQUIRED = ("article", "highlights")


class DatasetError(KnownError, ValueError):
    pass


def read_dataset(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path} is missing; run the dataset step (snakemake {path})")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise DatasetError(f"{path} is not UTF-8 text (byte {err.start}: {err.reason}); re-export it as UTF-8") from err
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise DatasetError(f"{path}:{number} is not a JSON object ({err}); one JSON object per line") from err
        missing = [k for k in REQUIRED if not isinstance(row.get(k), str)]
        if missing:
            raise DatasetError(f"{path}:{number} lacks the text field(s) {', '.join(missing)}; every row needs "
                               "`article` and `highlights` (the cnn_dailymail fields)")
        rows.append(row)
    if not rows:
        raise DatasetError(f"{path} holds no examples; regenerate it or point summarize.dataset elsewhere")
    return rows
