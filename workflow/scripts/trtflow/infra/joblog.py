"""The jobs of a Snakemake run, read from its log: rule, wildcards, start and end.

Snakemake stamps its log lines to the second: `[Wed Nov 25 21:07:05 2026]`, then `rule X:` (or
`localrule X:`), `wildcards: …`, `jobid: N` when a job starts, and `Finished jobid: N` when it ends.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Job:
    rule: str
    wildcards: dict
    start: float
    end: float

    @property
    def wall_s(self) -> float:
        return self.end - self.start


def jobs_of(log_text: str) -> list[Job]:
    """Every finished job of the log, in the order they started."""
    stamp, rule, wildcards, started, ended = None, None, {}, {}, {}
    for line in log_text.splitlines():
        line = line.strip()
        if match := re.fullmatch(r"\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]", line):
            stamp = datetime.datetime.strptime(match.group(1), "%a %b %d %H:%M:%S %Y").timestamp()
        elif match := re.fullmatch(r"(?:local)?rule (\w+):", line):
            rule, wildcards = match.group(1), {}
        elif match := re.fullmatch(r"wildcards: (.*)", line):  # comes after `jobid:`: fill the job's own dict
            wildcards.update(p.strip().split("=", 1) for p in match.group(1).split(",") if "=" in p)
        elif match := re.fullmatch(r"jobid: (\d+)", line):
            started[match.group(1)] = (rule, wildcards, stamp)
        elif match := re.match(r"Finished jobid: (\d+)", line):
            ended[match.group(1)] = stamp
    return [Job(rule, wildcards, start, ended[job]) for job, (rule, wildcards, start) in started.items()
            if job in ended]
