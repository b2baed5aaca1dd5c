"""Rank, world size and the process group, however the ranks were launched.

Under `mpirun` the rank comes from mpi4py (as TensorRT-LLM's runtime does) and rank 0 broadcasts a
free rendezvous port over MPI; under `torchrun` from its environment; under `srun` from Slurm's; a
plain `python -m` is a world of one. gloo on CPU, NCCL on GPU.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _launcher_env() -> tuple[int, int, int, int, str, str] | None:
    """(rank, world, local_rank, local_world, master_addr, master_port), or None for a single process."""
    env = os.environ
    if "OMPI_COMM_WORLD_SIZE" in env or "PMI_SIZE" in env or "PMIX_RANK" in env:
        from mpi4py import MPI

        comm = MPI.COMM_WORLD
        rank, world = comm.Get_rank(), comm.Get_size()
        local = comm.Split_type(MPI.COMM_TYPE_SHARED)
        address = env.get("MASTER_ADDR", "127.0.0.1")
        port = comm.bcast(env.get("MASTER_PORT") or str(_free_port()) if rank == 0 else None, root=0)
        return rank, world, local.Get_rank(), local.Get_size(), address, port
    if "RANK" in env and "WORLD_SIZE" in env:
        return (int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", env["RANK"])),
                int(env.get("LOCAL_WORLD_SIZE", env["WORLD_SIZE"])), env.get("MASTER_ADDR", "127.0.0.1"),
                env.get("MASTER_PORT", "29500"))
    if "SLURM_PROCID" in env and int(env.get("SLURM_NTASKS", "1")) > 1:
        job = int(env.get("SLURM_JOB_ID", "0"))
        return (int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"]), int(env.get("SLURM_LOCALID", "0")),
                int(env.get("SLURM_NTASKS_PER_NODE", env["SLURM_NTASKS"]).split("(")[0]),
                env.get("MASTER_ADDR", "127.0.0.1"), env.get("MASTER_PORT", str(20000 + job % 20000)))
    return None


def init_distributed(expected_world_size: int | None = None, device: str = "auto") -> DistInfo:
    launched = _launcher_env()
    rank, world, local_rank, local_world, address, port = launched or (0, 1, 0, 1, "", "")
    if expected_world_size is not None and world != expected_world_size:
        raise RuntimeError(
            f"the engine was built for {expected_world_size} rank(s) but {world} were launched; run with "
            f"`python -m trtflow.infra.launch -n {expected_world_size} …` (or mpirun -n {expected_world_size})"
        )
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    if use_cuda:
        torch_device = torch.device("cuda", local_rank % torch.cuda.device_count())
        torch.cuda.set_device(torch_device)
    else:
        torch_device = torch.device("cpu")
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_world))
    if world > 1 and not dist.is_initialized():
        os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = address, str(port)
        dist.init_process_group("nccl" if use_cuda else "gloo", rank=rank, world_size=world,
                                device_id=torch_device if use_cuda else None)
    return DistInfo(rank, world, local_rank, local_world, torch_device)


def all_reduce(tensor: torch.Tensor) -> torch.Tensor:
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(tensor)
    return tensor


def broadcast(tensor: torch.Tensor, src: int = 0) -> torch.Tensor:
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.broadcast(tensor, src)
    return tensor


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (timings need it; a no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def barrier() -> None:
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
