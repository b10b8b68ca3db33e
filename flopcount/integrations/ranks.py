"""Several processes of one run (``torch.distributed``, e.g. DDP under ``torchrun``): rank 0
decides, every rank learns the decision. Without a process group this process is rank 0 of 1."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def world() -> tuple[int, int]:
    """``(rank, world size)`` of this process."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gathered(value: Any) -> list[Any]:
    """``value`` of every rank, in rank order (``[value]`` alone)."""
    import torch.distributed as dist

    if world()[1] == 1:
        return [value]
    values: list[Any] = [None] * world()[1]
    dist.all_gather_object(values, value)
    return values


def on_rank_zero(action: Callable[[], T]) -> T:
    """Run ``action`` on rank 0 and return its result on every rank; an exception it raises is
    raised on every rank (as itself on rank 0, re-made from its type and arguments elsewhere)."""
    import torch.distributed as dist

    rank, size = world()
    if size == 1:
        return action()
    box: list[Any] = [None]
    error: BaseException | None = None
    if rank == 0:
        try:
            box[0] = ("ok", action())
        except Exception as raised:
            error, box[0] = raised, ("error", (type(raised), raised.args))
    dist.broadcast_object_list(box, src=0)
    kind, value = box[0]
    if kind == "error":
        if error is not None:
            raise error
        raise _remade(*value)
    return value


def _remade(kind: type[BaseException], args: tuple[Any, ...]) -> BaseException:
    error = kind.__new__(kind)
    error.args = args
    return error
