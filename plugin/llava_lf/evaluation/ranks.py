"""Which process of a launch this one is, and the meeting points the processes of one `predict` share.

`torchrun --nproc_per_node N` and `accelerate launch` start N copies of the command and tell each its place
through the environment: RANK (0..N-1), WORLD_SIZE (N) and LOCAL_RANK (its device on this machine). Without
them (a plain `llava-lf eval ...`) the process is rank 0 of 1 and nothing here talks to anything.

The meeting points are gloo barriers on the CPU, whatever the model runs on: they carry no tensors (so no
collective's thread holds one at exit) and need no GPU. What the ranks tell each other at a meeting (whether
they failed, and why) goes through small files beside the answer parts.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from llava_lf.errors import LlavaLfError

# How long a rank waits for the others at a meeting point. They meet before and after answering, so a rank waits
# for the slowest one's share, and in `eval table` for rank 0's scoring of the benchmark before (a judge may take
# a while). A rank that dies ends the wait at once (its connection closes, and torchrun stops the others).
MEETING_TIMEOUT = timedelta(hours=24)


class RanksError(LlavaLfError):
    pass


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0: it merges the parts, scores and writes the table."""
        return self.rank == 0

    def __str__(self) -> str:
        return f"rank {self.rank} of {self.world_size}"


def _int(environ: Mapping[str, str], name: str, default: int | None) -> int:
    value = environ.get(name)
    if value is None or value == "":
        if default is None:
            raise RanksError(f"WORLD_SIZE is {environ.get('WORLD_SIZE')} but {name} is not set; start the ranks with "
                             "`torchrun --nproc_per_node N llava-lf eval ...` or `accelerate launch`, which set it")
        return default
    try:
        return int(value)
    except ValueError:
        raise RanksError(f"the environment's {name}={value!r} is not a whole number; unset it, or let torchrun "
                         "set it") from None


def ranks_from_env(environ: Mapping[str, str] | None = None) -> Ranks:
    """This process's place in the launch, from the variables torchrun and accelerate set."""
    environ = os.environ if environ is None else environ
    world_size = _int(environ, "WORLD_SIZE", 1)
    if world_size < 1:
        raise RanksError(f"the environment's WORLD_SIZE={world_size} is below 1; unset it, or let torchrun set it")
    if world_size == 1:
        return Ranks(0, 1, _int(environ, "LOCAL_RANK", 0))
    rank = _int(environ, "RANK", None)
    if not 0 <= rank < world_size:
        raise RanksError(f"the environment's RANK={rank} is not in 0..{world_size - 1} (WORLD_SIZE={world_size})")
    return Ranks(rank, world_size, _int(environ, "LOCAL_RANK", rank))


def rank_device(device: str, ranks: Ranks) -> str:
    """`--device` for this rank: `auto` and `cuda` mean this rank's own GPU (cuda:LOCAL_RANK) when there is one,
    else the CPU for `auto`; a numbered device (`cuda:1`) or `cpu` is taken as given."""
    import torch

    if device not in ("auto", "cuda"):
        return device
    if not torch.cuda.is_available():
        return "cpu" if device == "auto" else device
    if ranks.world_size == 1:
        return "cuda"
    if ranks.local_rank >= torch.cuda.device_count():
        raise RanksError(f"{ranks} has LOCAL_RANK {ranks.local_rank}, but this machine shows "
                         f"{torch.cuda.device_count()} CUDA device(s); start at most that many processes per machine "
                         "(--nproc_per_node), or pass --device cpu")
    return f"cuda:{ranks.local_rank}"


_GROUP: list = []  # the gloo group, made once per process (`eval table` meets many times)


def _gloo_group(ranks: Ranks):
    import torch.distributed as dist

    if _GROUP:
        return _GROUP[0]
    missing = [name for name in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(name)]
    if missing and not dist.is_initialized():
        raise RanksError(f"{ranks}, but {' and '.join(missing)} not set: start the ranks with "
                         "`torchrun --nproc_per_node N llava-lf eval ...` or `accelerate launch`")
    if not dist.is_initialized():
        dist.init_process_group("gloo", rank=ranks.rank, world_size=ranks.world_size, timeout=MEETING_TIMEOUT)
        group = None  # the default group is ours, and gloo
    elif dist.get_backend() == "gloo":
        group = None
    else:  # a launcher's NCCL group: meet on a CPU group of our own beside it
        group = dist.new_group(backend="gloo", timeout=MEETING_TIMEOUT)
    _GROUP.append(group)
    return group


def barrier(ranks: Ranks) -> Callable[[], None]:
    """Waits until every rank has called it; nothing to wait for in a one-process run."""
    if ranks.world_size == 1:
        return lambda: None
    import torch.distributed as dist

    group = _gloo_group(ranks)
    return lambda: dist.barrier(group=group)


def meet(ranks: Ranks, wait: Callable[[], None], folder: Path, step: str, failure: str | None,
         listen: bool = True) -> dict[int, str]:
    """Tell the others whether this rank failed (`failure`, else None), wait for all, and hear theirs (unless not
    `listen`: the notes may be gone once rank 0 has heard them): the failures by rank. Each rank rewrites its own
    note before the barrier, so after it every note read is this run's."""
    if ranks.world_size == 1:
        return {0: failure} if failure else {}
    note = folder / f"{step}.rank-{ranks.rank}.status"
    note.write_text(failure or "", encoding="utf-8")
    wait()
    if not listen:
        return {ranks.rank: failure} if failure else {}
    notes = {rank: (folder / f"{step}.rank-{rank}.status").read_text(encoding="utf-8")
             for rank in range(ranks.world_size)}
    return {rank: text for rank, text in notes.items() if text}
