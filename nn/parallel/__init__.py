"""Data-parallel training over several processes (on one machine or many), through MPI.

    from xpgrad.nn import parallel as dp

    dp.init()                                          # once, at the top of the script
    model = dp.DistributedDataParallel(MLP())          # same start on every rank
    train = nn.DataLoader((x, y), batch_size=32, shuffle=True, seed=0,
                          rank=dp.rank(), world_size=dp.world_size())
    for xb, yb in train:                               # every rank: its own shard, same step count
        opt.zero_grad()
        loss_fn(model(xb), yb).backward()              # .grad is the average over ranks here
        opt.step()

Launch with ``mpiexec -n 4 python -m yourscript``; the same script runs as one process without
``mpiexec`` (the world is then one process and every collective is free).
"""
from __future__ import annotations

from .comm import (
    Communicator, MPICommunicator, SingleProcess, install_abort_on_exception, launched_under_mpi,
)
from .checkpoint import load_checkpoint, save_checkpoint
from .distributed import DistributedDataParallel

__all__ = [
    "init", "is_initialized", "communicator", "rank", "world_size", "local_rank", "barrier", "all_reduce",
    "broadcast_state", "save_checkpoint", "load_checkpoint", "DistributedDataParallel", "Communicator",
    "SingleProcess", "MPICommunicator",
]

_world: list = [None]  # the communicator init() chose


def init(backend: str = "auto", abort_on_exception: bool = True) -> Communicator:
    """Set up the process group once (later calls return the same communicator).

    ``backend="auto"`` uses MPI when the process was started by an MPI launcher (mpiexec, mpirun,
    srun) and a world of one process otherwise (mpi4py is then not even imported);
    ``"mpi"`` always uses MPI (a world of one without a launcher); ``"single"`` never does.
    With ``abort_on_exception`` (and more than one rank) an uncaught exception on any rank prints
    ``[rank r]`` with its traceback and aborts the whole job, instead of leaving the other ranks
    waiting in their next collective forever.
    """
    if _world[0] is not None:
        return _world[0]
    if backend == "auto":
        backend = "mpi" if launched_under_mpi() else "single"
    if backend == "mpi":
        comm: Communicator = MPICommunicator()
    elif backend == "single":
        comm = SingleProcess()
    elif backend == "nccl":
        raise NotImplementedError("the NCCL communicator (CuPy gradients on GPUs) is not implemented yet: use 'mpi'")
    else:
        raise ValueError(f"unknown backend {backend!r}: expected 'auto', 'mpi' or 'single'")
    if abort_on_exception and comm.size > 1:
        install_abort_on_exception(comm)
    _world[0] = comm
    return comm


def is_initialized() -> bool:
    return _world[0] is not None


def communicator() -> Communicator:
    """The communicator of this process (``init()`` with its defaults if not called yet)."""
    return _world[0] if _world[0] is not None else init()


def rank() -> int:
    """This process's index in the job, 0 .. world_size() - 1."""
    return communicator().rank


def world_size() -> int:
    """The number of processes in the job."""
    return communicator().size


def local_rank() -> int:
    """This process's index among the job's processes on the same machine (for device choice)."""
    return communicator().local_rank


def barrier() -> None:
    """Wait until every rank has reached this call."""
    communicator().barrier()


_REDUCTIONS = ("sum", "mean", "max", "min")


def all_reduce(tensor, op: str = "sum"):
    """Replace ``tensor``'s values, in place, by their reduction over all ranks; returns ``tensor``.

    ``op`` is ``"sum"`` (torch's default), ``"mean"`` (floating tensors only), ``"max"`` or ``"min"``.
    Not recorded by autograd (like ``torch.distributed.all_reduce``); call it under ``no_grad`` data.
    """
    from xpgrad import autograd as ag

    if not isinstance(tensor, ag.Tensor):
        raise TypeError(f"all_reduce expects an ag.Tensor, got {type(tensor).__name__}")
    if not isinstance(op, str) or op not in _REDUCTIONS:
        raise ValueError(f"all_reduce: unknown op {op!r}: expected one of {', '.join(map(repr, _REDUCTIONS))}")
    if op == "mean" and tensor.dtype.kind not in "fc":
        raise TypeError(f"all_reduce(op='mean') needs a floating tensor, got {tensor.dtype}: use op='sum'")
    from .distributed import on_host

    comm = communicator()
    if comm.size == 1:
        return tensor
    on_host(tensor, lambda a: comm.allreduce_(a, "sum" if op == "mean" else op))
    if op == "mean":
        tensor.data *= tensor.data.dtype.type(1.0 / comm.size)
    from xpgrad.autograd import versioning

    versioning.bump(tensor, "all_reduce")  # a graph that saved the old values must notice
    return tensor


def broadcast_state(obj, root: int = 0):
    """Make every rank hold rank ``root``'s state: a Module's parameters and buffers (in place,
    checked to have the same layout on every rank first) or an optimizer's ``state_dict()``
    (for instance after only rank ``root`` loaded a checkpoint). Returns ``obj``."""
    from xpgrad import optim
    from xpgrad.nn import Module

    from .distributed import broadcast_module, check_same_layout

    comm = communicator()
    if isinstance(obj, DistributedDataParallel):
        obj = obj.module
    if isinstance(obj, Module):
        check_same_layout(comm, obj, "broadcast_state")
        broadcast_module(comm, obj, root)
    elif isinstance(obj, optim.Optimizer):
        from .distributed import broadcast_optimizer

        broadcast_optimizer(comm, obj, root)
    else:
        raise TypeError(f"broadcast_state expects an nn.Module or an optim.Optimizer, got {type(obj).__name__}")
    return obj
