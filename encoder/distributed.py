"""Training on several processes: what `torchrun` tells each one, and the few collectives.

One trainer stops being enough at a billion interactions, so `streamrec train` also runs
under `torchrun` (PyTorch DistributedDataParallel: gloo on CPUs, NCCL on GPUs). torchrun
starts one process per GPU (or CPU share) and names each in its environment (RANK,
WORLD_SIZE, LOCAL_RANK); without those variables a process is the only one and nothing
here does anything, so a plain run trains exactly as before.

The batching rule: `batch_size` stays the global batch. Every process cuts the same
length-sorted, shuffled batches as a single process would (`batching.py`, one shared
seed) and trains on its share of each, so every process takes the same number
of steps (DDP hangs on uneven inputs) and a run on N processes follows the recipe of a
run on one: same batches, steps, learning rate and schedule. DDP averages the gradients;
the collectives here only check that all read the same data and keep decisions (time
budget, divergence, best epoch, early stop) the same everywhere, as process 0 made them.
"""

from __future__ import annotations

import inspect
import logging
import os
import zlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from streamrec.common.devices import resolve_device
from streamrec.common.errors import ConfigError
from streamrec.encoder.data import Interactions
from streamrec.encoder.errors import TrainingError
from streamrec.encoder.losses import LossFn, NegativeSampler
from streamrec.encoder.model import SASRec

logger = logging.getLogger(__name__)

# Process 0 validates and writes alone while the others wait in a collective: the wait
# may last a validation pass and a checkpoint write, longer than NCCL's default 10 min.
COLLECTIVE_TIMEOUT = timedelta(minutes=30)


@dataclass(frozen=True)
class Ranks:
    """Which of how many training processes this one is (torchrun's RANK, WORLD_SIZE,
    LOCAL_RANK); the default is the only process."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0  # index among the processes of this machine: its GPU

    @property
    def is_main(self) -> bool:
        """Process 0: the one that validates, reports, writes and publishes."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """More than one process trains."""
        return self.world_size > 1


def ranks_from_env(env: Mapping[str, str] | None = None) -> Ranks:
    """This process's place in a torchrun launch; `Ranks()` outside one."""
    env = os.environ if env is None else env
    if "WORLD_SIZE" not in env:
        return Ranks()
    try:
        ranks = Ranks(int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", 0)))
    except (KeyError, ValueError) as exc:
        raise ConfigError(f"WORLD_SIZE is set but RANK/LOCAL_RANK are missing or not integers "
                          f"({exc}): start several processes with torchrun") from exc
    if not 0 <= ranks.rank < ranks.world_size or ranks.local_rank < 0:
        raise ConfigError(f"RANK={ranks.rank} is outside WORLD_SIZE={ranks.world_size}")
    return ranks


def training_device(name: str, ranks: Ranks) -> torch.device:
    """The `--device` of this process: on GPUs each process takes cuda:LOCAL_RANK."""
    device = resolve_device(name)
    if not ranks.distributed or device.type != "cuda":
        return device
    if device.index not in (None, ranks.local_rank):
        raise ConfigError(f"--device {name}: under torchrun each process uses the GPU of its "
                          "LOCAL_RANK; give --device cuda (or auto), and CUDA_VISIBLE_DEVICES "
                          "to choose the GPUs")
    return torch.device("cuda", ranks.local_rank)


@contextmanager
def joined(ranks: Ranks, device: torch.device) -> Iterator[None]:
    """The process group for the block (gloo on CPU, NCCL on CUDA), left after it ends.

    Nothing happens for a single process, nor when the caller already joined one. A
    block that raises does not leave: the others may still wait in a collective, where
    leaving can hang; torchrun ends them all when one process fails.
    """
    if not ranks.distributed or dist.is_initialized():
        yield
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, rank=ranks.rank, world_size=ranks.world_size,
                            timeout=COLLECTIVE_TIMEOUT)
    logger.info("process %d of %d joined (%s, %s)", ranks.rank, ranks.world_size, backend,
                device)
    yield
    dist.destroy_process_group()


# Buffers (a tower's item features and vocabulary) never change while training: DDP
# copies them from process 0 once, not before every step. Newer torch renamed the switch.
_NO_BUFFER_SYNC = ({"forward_sync_buffers": False} if "forward_sync_buffers" in
                   inspect.signature(nn.parallel.DistributedDataParallel).parameters
                   else {"broadcast_buffers": False})


class _StepLoss(nn.Module):
    """The model and its loss as one module: everything a step computes runs inside
    DDP's forward, so DDP sees every parameter the loss reaches."""

    def __init__(self, model: SASRec, loss_fn: LossFn) -> None:
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn

    def forward(self, x: Tensor, y: Tensor, sampler: NegativeSampler | None
                ) -> tuple[Tensor, int]:
        return self.loss_fn(x, y, sampler)


def data_parallel(model: SASRec, loss_fn: LossFn, device: torch.device,
                  ranks: Ranks) -> LossFn:
    """`loss_fn` whose backward averages the gradients over the processes (DDP).

    One process: `loss_fn` itself. DDP starts every process from process 0's weights.
    With a content tower DDP looks for parameters a step leaves without a gradient
    (`find_unused_parameters`, a graph walk per step), which would otherwise hang the
    step: which tower parts a step reaches depends on its items' features. Today's
    tower reaches all of them in every step (DDP logs that it found none unused).
    """
    if not ranks.distributed:
        return loss_fn
    ddp = nn.parallel.DistributedDataParallel(
        _StepLoss(model, loss_fn), device_ids=[device.index] if device.type == "cuda" else None,
        find_unused_parameters=model.content is not None, **_NO_BUFFER_SYNC)
    return lambda x, y, sampler: ddp(x, y, sampler)


def _collective_device() -> torch.device:
    """Where the control tensors go: NCCL only moves CUDA tensors."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def from_main(values: list[float], ranks: Ranks) -> list[float]:
    """Process 0's `values` on every process (decisions it alone can make)."""
    if not ranks.distributed:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=_collective_device())
    dist.broadcast(tensor, src=0)
    return tensor.tolist()


def agree(flag: bool, ranks: Ranks) -> bool:
    """Process 0's `flag` on every process, so all stop at the same step."""
    return flag if not ranks.distributed else bool(from_main([float(flag)], ranks)[0])


def summed(values: list[float], ranks: Ranks) -> list[float]:
    """The sum of `values` over the processes (the epoch's loss and positions)."""
    if not ranks.distributed:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=_collective_device())
    dist.all_reduce(tensor)
    return tensor.tolist()


def check_same_data(data: Interactions, ranks: Ranks) -> None:
    """TrainingError on every process unless all read the data process 0 read.

    Each process reads the log itself; shares of batches only line up when they all
    hold the same users in the same order on the same vocabulary.
    """
    if not ranks.distributed:
        return
    lengths = np.fromiter((len(s) for s in data.sequences), dtype=np.int64)
    mine = [float(data.num_users), float(data.num_items), float(lengths.sum()),
            float(zlib.crc32(lengths.tobytes())),
            float(zlib.crc32("\n".join(data.vocab.ids).encode()))]
    differs = from_main(mine, ranks) != mine
    if summed([float(differs)], ranks)[0]:
        raise TrainingError(
            f"the {ranks.world_size} processes did not read the same data (process "
            f"{ranks.rank}: {data.report.summary()}): give every node the same --data file "
            "(what --from-topic reads may differ from process to process while events "
            "arrive, and --since counts back from each one's clock)")


def wait_for_main(ranks: Ranks) -> None:
    """Every process waits here until process 0 gets here (it has written its files)."""
    if ranks.distributed:
        dist.barrier()
