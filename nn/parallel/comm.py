"""Communicators: the few collectives data-parallel training needs, behind one small interface.

- :class:`Communicator` is the interface: ``rank``, ``size``, ``local_rank``, ``allreduce_(array,
  op)``, ``broadcast_(array, root)``, ``barrier()``, ``allgather_object(obj)``,
  ``broadcast_object(obj, root)`` and ``abort(code)``. Array arguments are changed in place.
- :class:`SingleProcess` is the world of one process (every collective is the identity): a script
  written for several processes runs unchanged without a launcher.
- :class:`MPICommunicator` goes through mpi4py (``pip install "xpgrad[mpi]"``), imported only when
  asked for. NumPy arrays are reduced without a copy (``Allreduce(MPI.IN_PLACE, ...)``); arrays of
  other backends (CuPy, the stand-in device) are staged through host memory.
- A GPU communicator (NCCL, for CuPy arrays without a host round trip) would be a third
  implementation of the same interface, bootstrapped with ``broadcast_object`` of its unique id.
"""
from __future__ import annotations

import os
import sys
import traceback

import numpy as np

__all__ = ["Communicator", "SingleProcess", "MPICommunicator", "OPS", "launched_under_mpi", "import_mpi"]

#: The reduction names every communicator understands.
OPS = ("sum", "max", "min")

_MPI_HINT = 'mpi4py is not installed: install the MPI extra with  pip install "xpgrad[mpi]"'

# Environment variables the common launchers set in every process they start
# (MPICH/hydra and Intel MPI, Open MPI, PMIx, Slurm's srun with an MPI plugin, MVAPICH).
_LAUNCHER_VARS = ("PMI_RANK", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "MV2_COMM_WORLD_SIZE", "PMI_FD")


def launched_under_mpi() -> bool:
    """Whether this process was started by an MPI launcher (mpiexec, mpirun, srun)."""
    return any(v in os.environ for v in _LAUNCHER_VARS)


def import_mpi():
    """``mpi4py.MPI``, or an ImportError naming the install command."""
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise ImportError(_MPI_HINT) from exc
    return MPI


def _check_op(op: str) -> str:
    if op not in OPS:
        raise ValueError(f"unknown reduction op {op!r}: expected one of {', '.join(map(repr, OPS))}")
    return op


class Communicator:
    """The collectives a data-parallel job needs. Every rank must make the same calls in the same
    order with arrays of the same shapes and dtypes (that is what a collective is)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    name: str = "abstract"

    def allreduce_(self, array, op: str = "sum"):
        """Replace ``array`` (in place) by its elementwise reduction over all ranks; returns it."""
        raise NotImplementedError

    def broadcast_(self, array, root: int = 0):
        """Overwrite ``array`` (in place) with rank ``root``'s values; returns it."""
        raise NotImplementedError

    def barrier(self) -> None:
        raise NotImplementedError

    def allgather_object(self, obj) -> list:
        """Every rank's (small, picklable) ``obj``, in rank order."""
        raise NotImplementedError

    def broadcast_object(self, obj, root: int = 0):
        """Rank ``root``'s (picklable) ``obj`` on every rank."""
        raise NotImplementedError

    def abort(self, code: int = 1) -> None:
        """End every rank of the job now (used when one rank fails, so none waits forever)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} rank {self.rank} of {self.size}>"


class SingleProcess(Communicator):
    """The world of one process: every collective leaves its argument as it is."""

    name = "single"

    def allreduce_(self, array, op: str = "sum"):
        _check_op(op)
        return array

    def broadcast_(self, array, root: int = 0):
        if root != 0:
            raise ValueError(f"broadcast root {root} does not exist in a world of 1 process")
        return array

    def barrier(self) -> None:
        pass

    def allgather_object(self, obj) -> list:
        return [obj]

    def broadcast_object(self, obj, root: int = 0):
        if root != 0:
            raise ValueError(f"broadcast root {root} does not exist in a world of 1 process")
        return obj

    def abort(self, code: int = 1) -> None:
        os._exit(code)


class MPICommunicator(Communicator):
    """Collectives over an MPI communicator (a duplicate of ``COMM_WORLD`` unless one is given, so
    xpgrad's messages never mix with the application's own MPI traffic)."""

    name = "mpi"

    def __init__(self, comm=None) -> None:
        MPI = import_mpi()
        self._MPI = MPI
        self.comm = (comm if comm is not None else MPI.COMM_WORLD).Dup()
        self.rank = self.comm.Get_rank()
        self.size = self.comm.Get_size()
        node = self.comm.Split_type(MPI.COMM_TYPE_SHARED, key=self.rank)
        self.local_rank = node.Get_rank()
        node.Free()
        self._ops = {"sum": MPI.SUM, "max": MPI.MAX, "min": MPI.MIN}

    def allreduce_(self, array, op: str = "sum"):
        mpi_op = self._ops[_check_op(op)]
        if isinstance(array, np.ndarray) and array.flags.c_contiguous:
            self.comm.Allreduce(self._MPI.IN_PLACE, array, op=mpi_op)
            return array
        host = np.ascontiguousarray(_to_host(array))
        self.comm.Allreduce(self._MPI.IN_PLACE, host, op=mpi_op)
        _from_host(array, host)
        return array

    def broadcast_(self, array, root: int = 0):
        if isinstance(array, np.ndarray) and array.flags.c_contiguous:
            self.comm.Bcast(array, root=root)
            return array
        host = np.ascontiguousarray(_to_host(array))
        self.comm.Bcast(host, root=root)
        _from_host(array, host)
        return array

    def barrier(self) -> None:
        self.comm.Barrier()

    def allgather_object(self, obj) -> list:
        return self.comm.allgather(obj)

    def broadcast_object(self, obj, root: int = 0):
        return self.comm.bcast(obj, root=root)

    def abort(self, code: int = 1) -> None:
        self._MPI.COMM_WORLD.Abort(code)


def _to_host(array) -> np.ndarray:
    if isinstance(array, np.ndarray):
        return array
    get = getattr(array, "get", None)  # CuPy and the stand-in device copy to the host with .get()
    if get is not None:
        return get()
    return np.asarray(array)


def _from_host(array, host: np.ndarray) -> None:
    if isinstance(array, np.ndarray):
        np.copyto(array, host)
    else:
        set_ = getattr(array, "set", None)  # CuPy's host-to-device copy into an existing array
        if set_ is not None and getattr(array, "flags", None) is not None and array.flags.c_contiguous:
            set_(host)
        else:
            array[...] = host


def install_abort_on_exception(comm: Communicator) -> None:
    """Make an uncaught exception on any rank print ``[rank r]`` + its traceback and abort the
    whole job (otherwise the other ranks would wait in their next collective forever)."""
    previous = sys.excepthook

    def hook(exc_type, exc, tb):
        if issubclass(exc_type, KeyboardInterrupt):
            previous(exc_type, exc, tb)
        else:
            text = "".join(traceback.format_exception(exc_type, exc, tb))
            sys.stderr.write("".join(f"[rank {comm.rank}] {line}\n" for line in text.rstrip("\n").split("\n")))
            sys.stderr.flush()
        try:
            sys.stdout.flush()
        finally:
            comm.abort(1)

    hook._xpgrad_abort = True
    if not getattr(previous, "_xpgrad_abort", False):
        sys.excepthook = hook
