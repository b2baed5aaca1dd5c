"""cnn_dailymail 3.0.0 test split → resources/datasets/cnn_dailymail/test.jsonl (summarize.py's data).

Uses `datasets.load_dataset("ccdv/cnn_dailymail", "3.0.0", split="test")` as the seed does (falls back to
the `abisee/cnn_dailymail` parquet mirror on datasets versions without loading scripts); offline caches
are honoured through HF_DATASETS_OFFLINE / HF_HOME.
"""

from __future__ import annotations

import argparse

from ..errors import KnownError, run_stage
from .demo_dataset import write_jsonl


class DatasetUnavailable(KnownError, RuntimeError):
    pass


def load_cnn_dailymail(cache_dir: str | None = None) -> list[dict]:
    try:
        import datasets
    except ImportError:
        raise DatasetUnavailable("summarize.dataset: cnn_dailymail needs the `datasets` package, which is not installed "
                                 "here: `pip install -e '.[hub]'` in this environment, or use summarize.dataset: demo"
                                 ) from None

    errors = []
    for repo in ("ccdv/cnn_dailymail", "abisee/cnn_dailymail"):
        try:
            dataset = datasets.load_dataset(repo, "3.0.0", split="test", cache_dir=cache_dir)
            return [{"id": row.get("id"), "article": row["article"], "highlights": row["highlights"]}
                    for row in dataset]
        except Exception as err:  # datasets raises many types for network/offline/script problems
            errors.append(f"{repo}: {type(err).__name__}: {err}")
    raise DatasetUnavailable("cannot load cnn_dailymail 3.0.0 (" + " | ".join(errors) + "). Without the hub, pre-fill "
                             "the datasets cache and set HF_DATASETS_OFFLINE=1, or use summarize.dataset: demo")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Fetch cnn_dailymail 3.0.0 test as JSONL.")
    parser.add_argument("--out", required=True)
    parser.add_argument("--cache-dir", default=None)
    args = parser.parse_args(argv)
    rows = load_cnn_dailymail(args.cache_dir)
    write_jsonl(rows, args.out)
    print(f"wrote {len(rows)} examples to {args.out}")


if __name__ == "__main__":
    run_stage(main)
