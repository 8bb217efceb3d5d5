"""Data-parallel training: 2-rank jobs under mpiexec (scenarios in _worker.py) and in-process checks
of the world-of-one path, the communicator interface and the sharded DataLoader."""
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from xpgrad import autograd as ag, nn
from xpgrad.nn import parallel as dp
from xpgrad.nn.parallel import comm as comm_module

WORKER = Path(__file__).with_name("_worker.py")
MPIEXEC = Path(sys.executable).parent / "mpiexec"


def _have_mpi():
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return False
    return MPIEXEC.exists()


needs_mpi = pytest.mark.skipif(
    not _have_mpi(), reason=f'needs mpi4py and {MPIEXEC} (pip install "xpgrad[mpi]" into this environment)'
)


def _env():
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1", MPIEXEC_TIMEOUT="50")
    for var in comm_module._LAUNCHER_VARS:  # a pytest run itself launched by mpiexec must not leak in
        env.pop(var, None)
    return env


def run_scenario(name, ranks=2, timeout=60):
    cmd = [str(MPIEXEC), "-n", str(ranks), sys.executable, str(WORKER), name] if ranks else [
        sys.executable, str(WORKER), name]
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        out, err = proc.communicate()
        pytest.fail(f"scenario {name!r} hung (killed after {timeout} s)\nstdout:\n{out}\nstderr:\n{err}")
    return proc.returncode, out, err, time.monotonic() - start


@needs_mpi
def test_two_ranks_equal_one_process_and_stay_identical():
    rc, out, err, _ = run_scenario("equiv")
    assert rc == 0 and "OK equiv" in out, f"rc {rc}\nstdout:\n{out}\nstderr:\n{err}"
    for run in ("sgd", "adam-small-buckets", "adam-no_sync"):
        assert f"{run}: max |DP - single|" in out


@needs_mpi
def test_layout_mismatch_names_the_entry_and_rank():
    rc, out, err, _ = run_scenario("mismatch")
    assert rc != 0 and "OK" not in out
    assert "ValueError: DistributedDataParallel: the model is not the same on every rank: entry '0.weight' is " \
           "parameter of shape (17, 8), dtype float64 on rank 1 but parameter of shape (16, 8), dtype float64 on " \
           "rank 0 (3 entries differ)" in err, err


@needs_mpi
def test_unused_parameters_neither_hang_nor_are_skipped():
    rc, out, err, _ = run_scenario("unused", timeout=40)
    assert rc == 0 and "OK unused" in out, f"rc {rc}\nstdout:\n{out}\nstderr:\n{err}"


@needs_mpi
def test_exception_on_one_rank_ends_the_job_quickly():
    rc, out, err, elapsed = run_scenario("exception", timeout=30)
    assert rc != 0 and "OK" not in out
    assert elapsed < 10, f"the job took {elapsed:.1f} s to end"
    assert "[rank 1] RuntimeError: rank 1 failed on purpose" in err, err


def test_single_process_without_mpiexec():
    rc, out, err, _ = run_scenario("single", ranks=0, timeout=60)
    assert rc == 0 and "OK single" in out, f"rc {rc}\nstdout:\n{out}\nstderr:\n{err}"


# -- in-process: the world of one, errors -----------------------------------------------------------------
def test_single_process_communicator_is_the_identity():
    c = comm_module.SingleProcess()
    a = np.arange(3.0)
    assert c.allreduce_(a, "max") is a and c.broadcast_(a, 0) is a
    np.testing.assert_array_equal(a, [0.0, 1.0, 2.0])
    assert c.allgather_object("x") == ["x"] and c.broadcast_object(5) == 5
    with pytest.raises(ValueError, match="unknown reduction op 'prod'"):
        c.allreduce_(a, "prod")
    with pytest.raises(ValueError, match="root 1"):
        c.broadcast_(a, 1)


def test_all_reduce_checks_its_arguments():
    with pytest.raises(ValueError, match="unknown op 'avg'"):
        dp.all_reduce(ag.tensor([1.0]), op="avg")
    with pytest.raises(TypeError, match="floating tensor"):
        dp.all_reduce(ag.tensor([1, 2]), op="mean")
    with pytest.raises(TypeError, match="ag.Tensor"):
        dp.all_reduce(np.ones(2))


def test_all_reduce_stages_device_arrays_through_the_host():
    saved = dp._world[0]
    dp._world[0] = Twins()
    try:
        t = ag.tensor([1.0, 2.5])
        assert dp.all_reduce(t, op="sum") is t
        np.testing.assert_array_equal(t.numpy(), [2.0, 5.0])
        dp.all_reduce(t, op="mean")
        np.testing.assert_array_equal(t.numpy(), [2.0, 5.0])
    finally:
        dp._world[0] = saved


def test_mpi_without_mpi4py_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    with pytest.raises(ImportError, match=r'pip install "xpgrad\[mpi\]"'):
        comm_module.MPICommunicator()


def test_ddp_world_of_one_delegates():
    model = nn.Linear(3, 2)
    ddp = dp.DistributedDataParallel(model, communicator=comm_module.SingleProcess())
    assert ddp.module is model
    assert list(ddp.state_dict()) == ["weight", "bias"]  # no "module." prefix
    ddp.load_state_dict(model.state_dict())
    x = ag.randn(4, 3)
    np.testing.assert_array_equal(ddp(x).numpy(), model(x).numpy())
    with pytest.raises(TypeError, match="wraps an nn.Module"):
        dp.DistributedDataParallel(lambda x: x)
    with pytest.raises(ValueError, match="bucket_cap_mb"):
        dp.DistributedDataParallel(model, bucket_cap_mb=0)


# -- the sharded DataLoader -------------------------------------------------------------------------------
def shard_rows(n, world, batch, shuffle, epochs=2, drop_last=False):
    x = ag.tensor(np.arange(n, dtype=np.float64)[:, None])
    loaders = [nn.DataLoader((x,), batch_size=batch, shuffle=shuffle, seed=5 if shuffle else None,
                             rank=r, world_size=world, drop_last=drop_last) for r in range(world)]
    return [[[b[0].numpy()[:, 0].astype(int).tolist() for b in ld] for ld in loaders] for _ in range(epochs)], loaders


@pytest.mark.parametrize("n,world,batch", [(10, 3, 2), (12, 4, 3), (7, 2, 4), (5, 8, 1)])
@pytest.mark.parametrize("shuffle", [False, True])
def test_shards_are_equal_length_and_cover_the_epoch(n, world, batch, shuffle):
    epochs, loaders = shard_rows(n, world, batch, shuffle)
    per_rank = -(-n // world)
    for epoch in epochs:
        steps = {len(rank_batches) for rank_batches in epoch}
        assert steps == {len(loaders[0])} == {-(-per_rank // batch)}
        flat = [sorted(i for b in rank_batches for i in b) for rank_batches in epoch]
        assert all(len(f) == per_rank for f in flat)
        everything = [i for f in flat for i in f]
        assert set(everything) == set(range(n))  # every sample, padding repeats at most world - 1
        assert len(everything) - n == per_rank * world - n < world
    if shuffle:
        assert epochs[0] != epochs[1]  # a new order each epoch without set_epoch
    assert loaders[0].epoch == 2


def test_shards_follow_the_global_order():
    # ranks' batch j together are positions [j*world*batch, (j+1)*world*batch) of the one-process order
    x = ag.tensor(np.arange(24, dtype=np.float64)[:, None])
    whole = nn.DataLoader((x,), batch_size=8, shuffle=True, seed=1, rank=0, world_size=1)
    parts = [nn.DataLoader((x,), batch_size=4, shuffle=True, seed=1, rank=r, world_size=2) for r in range(2)]
    for _ in range(2):
        for big, *small in zip(whole, *parts):
            assert sorted(big[0].numpy()[:, 0]) == sorted(np.concatenate([s[0].numpy()[:, 0] for s in small]))


def test_sharded_loader_resumes_an_epoch_and_checks_arguments():
    x = ag.tensor(np.arange(20, dtype=np.float64)[:, None])
    a = nn.DataLoader((x,), batch_size=3, shuffle=True, seed=2, rank=1, world_size=2)
    first, second = [[b[0].numpy().tolist() for b in a] for _ in range(2)]
    b = nn.DataLoader((x,), batch_size=3, shuffle=True, seed=2, rank=1, world_size=2)
    b.epoch = 1
    assert [t[0].numpy().tolist() for t in b] == second != first
    with pytest.raises(ValueError, match="needs seed="):
        nn.DataLoader((x,), shuffle=True, rank=0, world_size=2)
    with pytest.raises(ValueError, match="both rank= and world_size="):
        nn.DataLoader((x,), rank=0)
    with pytest.raises(ValueError, match="0 <= rank < world_size"):
        nn.DataLoader((x,), rank=2, world_size=2)


class Twins(comm_module.Communicator):
    """Two ranks holding identical values (a sum doubles): runs the reducer in one process, on any
    device (host staging on the stand-in)."""

    rank, size, name = 0, 2, "twins"

    def __init__(self):
        self.calls = []

    def allreduce_(self, array, op="sum"):
        assert type(array) is np.ndarray and array.flags.c_contiguous  # what MPI needs: host staging
        self.calls.append(("allreduce", array.size))
        array *= 2
        return array

    def broadcast_(self, array, root=0):
        assert type(array) is np.ndarray and array.flags.c_contiguous
        self.calls.append(("broadcast", array.size))
        array[...] = 1.5  # rank 0's values
        return array

    def allgather_object(self, obj):
        return [obj, obj]


def test_reducer_in_process_averages_buckets_in_order_and_keeps_unused_grads():
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    spare = nn.Linear(2, 2)  # never used: its grads must stay None

    class Holder(nn.Module):
        def __init__(self):
            super().__init__()
            self.model, self.spare = model, spare

        def forward(self, x):
            return self.model(x)

    holder = Holder()
    twins = Twins()
    ddp = dp.DistributedDataParallel(holder, bucket_cap_mb=40 / 2**20, communicator=twins)  # 40 bytes
    assert [("broadcast", p.size) for p in list(holder.parameters())] == twins.calls
    assert all(np.all(p.numpy() == 1.5) for p in holder.parameters())  # the broadcast reached the tensors
    sizes = [sum(p.size for p in b.params) for b in ddp._buckets]
    # reverse registration order (spare.bias 2, spare.weight 4, fc2.bias 2, fc2.weight 8, fc1.bias 4,
    # fc1.weight 12), at most 10 float32 per bucket unless one parameter alone is larger
    assert sizes == [8, 8, 4, 12]
    x = ag.randn(5, 3)
    twins.calls.clear()
    ddp(x).sum().backward()
    # every bucket, in bucket order, with one "has a gradient" counter per parameter
    assert [c[1] for c in twins.calls] == [s + len(b.params) for s, b in zip(sizes, ddp._buckets)]
    plain = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    plain.load_state_dict(model.state_dict())
    plain(x).sum().backward()
    for p, q in zip(model.parameters(), plain.parameters()):
        np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-6)
    assert spare.weight.grad is None and spare.bias.grad is None
    twins.calls.clear()
    with ddp.no_sync():
        ddp(x).sum().backward()
    assert twins.calls == []
    for p, q in zip(model.parameters(), plain.parameters()):
        np.testing.assert_allclose(p.grad.numpy(), 2 * q.grad.numpy(), rtol=1e-6)  # accumulated locally
