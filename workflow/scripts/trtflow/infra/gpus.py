"""Give each running job its own GPUs: `python -m trtflow.infra.gpus -n N -- COMMAND …` (rules use
`trtflow.infra.launch --gpus N`, which holds them the same way).

Snakemake's local executor only caps the total of `gpu` resources (`--resources gpu=8`); it never says
which GPU a job may use (snakemake#281). This wrapper takes N free ids from the pool, each held by an
flock on a lock file, exports CUDA_VISIBLE_DEVICES and execs the command with the lock files still
open: the kernel releases them when the command (and every rank it started) exits, even on SIGKILL.

The pool: CUDA_VISIBLE_DEVICES when already set (under Slurm it lists the job's GPUs), else
TRTFLOW_GPU_POOL (a count, or a comma-separated id list), else the GPUs `nvidia-smi -L` lists. With no
GPU at all the command runs as it is. Lock files live in TRTFLOW_GPU_LOCK_DIR, default one folder per
machine and user under /tmp, so several workflows on one box share the pool.
"""

from __future__ import annotations

import argparse
import fcntl
import itertools
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..errors import KnownError


class GpuPoolError(KnownError, RuntimeError):
    pass


def is_gpu_id(text: str) -> bool:
    """An index or a UUID, as CUDA_VISIBLE_DEVICES takes them."""
    return text.isdigit() or text.startswith(("GPU-", "MIG-"))


def visible_devices(env: dict) -> list[str]:
    """The GPUs CUDA_VISIBLE_DEVICES names (indices or UUIDs), read as CUDA reads it: up to the first entry that
    names no GPU (`-1` hides them all); empty where it is unset or empty."""
    names = [g.strip() for g in env.get("CUDA_VISIBLE_DEVICES", "").split(",")]
    return list(itertools.takewhile(is_gpu_id, names))


def configured_pool(text: str) -> list[str]:
    """TRTFLOW_GPU_POOL: a count or a list of GPU ids, each once (a GPU listed twice would be locked twice by one
    job, which then waits for itself)."""
    if text.strip().isdigit():
        return [str(i) for i in range(int(text))]
    ids = [g.strip() for g in text.split(",") if g.strip()]
    fix = "set it to a count (TRTFLOW_GPU_POOL=4) or to GPU indices or UUIDs, each once (TRTFLOW_GPU_POOL=0,1,2,3)"
    if bad := next((g for g in ids if not is_gpu_id(g)), None):
        raise GpuPoolError(f"TRTFLOW_GPU_POOL={text!r} names {bad!r}, which is no GPU index or UUID; {fix}")
    if twice := next((g for g in ids if ids.count(g) > 1), None):
        raise GpuPoolError(f"TRTFLOW_GPU_POOL={text!r} names GPU {twice} twice; {fix}")
    return ids


def gpu_pool(env: dict | None = None) -> list[str]:
    env = os.environ if env is None else env
    if env.get("CUDA_VISIBLE_DEVICES", "").strip():
        return visible_devices(env)  # set, even to -1 (no GPU): CUDA sees only these
    configured = env.get("TRTFLOW_GPU_POOL")
    if configured:
        return configured_pool(configured)
    try:
        listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20,
                                env=dict(env)).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(listed.splitlines()) if line.startswith("GPU ")]


def lock_dir(env: dict | None = None) -> Path:
    env = os.environ if env is None else env
    folder = Path(env.get("TRTFLOW_GPU_LOCK_DIR") or Path(tempfile.gettempdir()) / f"trtflow-gpu-locks-{os.getuid()}")
    fix = "set TRTFLOW_GPU_LOCK_DIR to a folder every job of this machine can write"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise GpuPoolError(f"cannot make the GPU lock folder {folder} ({err.strerror}); {fix}") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise GpuPoolError(f"cannot write in the GPU lock folder {folder}; {fix}")
    return folder


def holders(pool: list[str], folder: Path) -> str:
    """Who holds the pool's locks, as each holder wrote itself into its lock file (pid and command)."""
    held = []
    for gpu in pool:
        try:
            fd = os.open(folder / f"gpu{gpu}.lock", os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # free now: what it says is an earlier holder
            continue
        except BlockingIOError:
            text = os.pread(fd, 300, 0).decode("utf-8", errors="replace").strip()
            held.append(f"GPU {gpu}: pid {text}" if text else f"GPU {gpu}: held")
        finally:
            os.close(fd)
    return "; ".join(held) or "holders unknown"


def acquire(count: int, pool: list[str], folder: Path, timeout: float = 3600.0,
            report_every: float = 60.0) -> tuple[list[str], list[int]]:
    """Take `count` ids of `pool`; returns them and the open lock fds (keep them open to hold the ids). Each lock
    taken records this process (pid, command) for whoever waits; a wait says who holds the pool every
    `report_every` seconds."""
    if count > len(pool):
        raise GpuPoolError(f"this job needs {count} GPU(s) but the pool has {len(pool)} ({','.join(pool) or 'none'}); "
                           "run with a smaller tp or on a machine with more GPUs")
    started = time.monotonic()
    deadline, next_report = started + timeout, started + report_every
    while True:
        taken: list[tuple[str, int]] = []
        for gpu in pool:
            fd = os.open(folder / f"gpu{gpu}.lock", os.O_CREAT | os.O_RDWR, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            taken.append((gpu, fd))
            if len(taken) == count:
                for _, held in taken:
                    os.ftruncate(held, 0)
                    os.pwrite(held, f"{os.getpid()} ({' '.join(sys.argv)[:200]})\n".encode(), 0)
                return [g for g, _ in taken], [fd for _, fd in taken]
        for _, fd in taken:  # never sit on a partial set: that is how two jobs deadlock
            os.close(fd)
        now = time.monotonic()
        if now > deadline:
            raise GpuPoolError(f"no {count} free GPU(s) in pool {','.join(pool)} after {timeout:.0f} s "
                               f"(lock files in {folder}; {holders(pool, folder)}); is another workflow holding them?")
        if now >= next_report:
            print(f"trtflow.infra.gpus: waiting {now - started:.0f} s for {count} free GPU(s) of pool {','.join(pool)}: "
                  f"{holders(pool, folder)}", file=sys.stderr, flush=True)
            next_report = now + report_every
        time.sleep(random.uniform(0.05, 0.25))


def hold(count: int, timeout: float = 3600.0) -> None:
    """Take `count` GPUs for this process and whatever it execs: CUDA_VISIBLE_DEVICES names them, and
    their lock files stay open (inheritable) until the last process holding them exits."""
    pool = gpu_pool()
    if not pool or count == 0:
        return  # no GPU here: nothing to hand out
    ids, fds = acquire(count, pool, lock_dir(), timeout)
    for fd in fds:
        os.set_inheritable(fd, True)
    os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(ids)
    print(f"trtflow.infra.gpus: CUDA_VISIBLE_DEVICES={os.environ['CUDA_VISIBLE_DEVICES']}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--gpus", type=int, required=True)
    parser.add_argument("--timeout", type=float, default=3600.0)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given")
    try:
        hold(args.gpus, args.timeout)
    except GpuPoolError as err:
        sys.exit(f"trtflow.infra.gpus: {err}")
    os.execvp(command[0], command)


if __name__ == "__main__":
    main()
