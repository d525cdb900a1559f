"""Data-parallel training under `torchrun`: one process per device, PyTorch DDP over gloo (CPU) or NCCL (GPU).

Launched plainly (`python -m gram train`), WORLD_SIZE is unset and everything here is a no-op for a
world of one. Under `torchrun --nproc_per_node=K -m gram train ...` each process joins the group from
the environment torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT) and owns batch/K rows.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    device: str = "cpu"

    @property
    def main(self) -> bool:
        """The one process that evaluates, reports and writes checkpoints."""
        return self.rank == 0

    def rows(self, batch: int) -> slice:
        """This rank's rows of a global batch: contiguous blocks, rank 0 first, so that concatenating the
        ranks' slices in rank order gives the single-process batch."""
        if batch % self.size:
            raise ValueError(f"batch={batch} must be divisible by the number of processes ({self.size})")
        k = batch // self.size
        return slice(self.rank * k, (self.rank + 1) * k)

    def all_reduce(self, t: torch.Tensor) -> torch.Tensor:
        """Sum over ranks, in place (asynchronous to the host on NCCL: no device sync)."""
        if self.size > 1:
            dist.all_reduce(t)
        return t

    def gather_rows(self, t: torch.Tensor) -> torch.Tensor:
        """The ranks' row blocks of t, concatenated in rank order, on the CPU (what a checkpoint stores)."""
        if self.size == 1:
            return t.cpu()
        # NCCL moves only device tensors, gloo only CPU ones; bool goes as uint8 (not every backend has bool)
        comm = "cpu" if dist.get_backend() == "gloo" else self.device
        src = t.to(comm, torch.uint8 if t.dtype == torch.bool else t.dtype).contiguous()
        parts = [torch.empty_like(src) for _ in range(self.size)]
        dist.all_gather(parts, src)
        return torch.cat(parts).to(torch.device("cpu"), t.dtype)

    def close(self) -> None:
        """Wait for every rank, then leave the group. A rank that exits with the group still open can abort in
        gloo's destructor ("terminate called without an active exception") while rank 0 still saves."""
        if self.size > 1 and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()


def setup(device: str | None = None) -> World:
    """Join the process group torchrun describes in the environment, or stay a world of one.
    Each GPU process takes the device cuda:LOCAL_RANK; CPU processes share the machine's cores."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = torch.cuda.is_available() if device is None else device.startswith("cuda")
    if size == 1:
        return World(device=device or ("cuda" if cuda else "cpu"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if cuda:
        device = f"cuda:{local}"
        torch.cuda.set_device(device)
    else:
        device = "cpu"
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    return World(rank=dist.get_rank(), size=dist.get_world_size(), device=device)
