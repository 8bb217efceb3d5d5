"""Collective checkpoints (save_checkpoint / load_checkpoint) and the data-parallel digits example:
2-rank jobs under mpiexec plus in-process checks of the world-of-one path and the file format."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from xpgrad import autograd as ag, nn, optim
from xpgrad.nn import parallel as dp
from xpgrad.nn.parallel import comm as comm_module

WORKER = Path(__file__).with_name("_worker.py")
MPIEXEC = Path(sys.executable).parent / "mpiexec"
ROOT = Path(__file__).resolve().parents[2]


def _have_mpi():
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return False
    return MPIEXEC.exists()


needs_mpi = pytest.mark.skipif(
    not _have_mpi(), reason=f'needs mpi4py and {MPIEXEC} (pip install "xpgrad[mpi]" into this environment)'
)


def run(args, ranks=2, timeout=45):
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1", MPIEXEC_TIMEOUT="40")
    for var in comm_module._LAUNCHER_VARS:
        env.pop(var, None)
    cmd = ([str(MPIEXEC), "-n", str(ranks)] if ranks else []) + [sys.executable, *map(str, args)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            cwd=ROOT.parent, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        out, err = proc.communicate()
        pytest.fail(f"{cmd} hung (killed after {timeout} s)\nstdout:\n{out}\nstderr:\n{err}")
    return proc.returncode, out, err


@needs_mpi
def test_resumed_run_is_bit_identical_to_the_uninterrupted_one_on_both_ranks(tmp_path):
    rc, out, err = run([WORKER, "resume", tmp_path])
    assert rc == 0 and "OK resume" in out, f"rc {rc}\nstdout:\n{out}\nstderr:\n{err}"


EXAMPLE = ["-m", "xpgrad.examples.digits_ddp", "--limit", "256", "--hidden", "16", "--batch-size", "32"]


@needs_mpi
def test_digits_example_under_mpiexec_prints_on_rank_0_and_resumes(tmp_path):
    ckpt = tmp_path / "digits.npz"
    rc, out, err = run(EXAMPLE + ["--epochs", "2", "--checkpoint", ckpt])
    assert rc == 0, f"rc {rc}\nstdout:\n{out}\nstderr:\n{err}"
    assert "2 process(es), 4 steps of 32 x 2 samples per epoch" in out
    for epoch in (1, 2):
        assert out.count(f"epoch {epoch:3d}  train loss") == 1, out  # rank 0 only
    assert out.count("test accuracy") == 1 and ckpt.exists()
    rc, out, err = run(EXAMPLE + ["--epochs", "3", "--checkpoint", ckpt])
    assert rc == 0, f"rc {rc}\nstdout:\n{out}\nstderr:\n{err}"
    assert "resumed from" in out and "after epoch 2" in out
    assert out.count("train loss") == 1 and "epoch   3  train loss" in out


def test_digits_example_runs_unchanged_as_one_process():
    rc, out, err = run(EXAMPLE + ["--epochs", "2"], ranks=0)
    assert rc == 0, f"rc {rc}\nstdout:\n{out}\nstderr:\n{err}"
    assert "1 process(es), 8 steps of 32 x 1 samples per epoch" in out and out.count("train loss") == 2


def test_digits_example_in_process_learns():
    from xpgrad.examples import digits_ddp

    r = digits_ddp.train(epochs=5, hidden=32, lr=1e-2, verbose=False)
    assert r["world_size"] == 1 and len(r["losses"]) == 5
    assert r["losses"][-1] < r["losses"][0] and r["test_accuracy"] > 0.8


# -- in-process: the world of one --------------------------------------------------------------------------
def _model(seed):
    ag.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 5), nn.BatchNorm1d(5), nn.Linear(5, 2)).to(np.float64)


def _steps(model, opt, n):
    rng = np.random.default_rng(1)
    for _ in range(n):
        opt.zero_grad()
        (model(ag.tensor(rng.standard_normal((6, 4)))) ** 2).mean().backward()
        opt.step()


@pytest.mark.parametrize("make_opt", [
    lambda ps: optim.Adam(ps, lr=1e-2, betas=(0.7, 0.9), amsgrad=True),
    lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True),
])
def test_round_trip_restores_model_optimizer_and_extras(tmp_path, make_opt):
    path = tmp_path / "c.npz"
    a = _model(0)
    opt_a = make_opt(a.parameters())
    _steps(a, opt_a, 3)
    dp.save_checkpoint(path, dp.DistributedDataParallel(a), opt_a, epoch=4, lr=0.5, tag="run-1", flag=True,
                       sizes=(1, 2), nothing=None, weights=np.arange(3.0), scale=ag.tensor(2.5))
    keys = list(nn.load(path))
    assert "model/0.weight" in keys and "model/1.running_mean" in keys and "checkpoint/header" in keys
    assert all(k.startswith(("model/", "optim/state/", "extra/", "checkpoint/")) for k in keys)
    b = _model(9)
    opt_b = make_opt(b.parameters())
    extra = dp.load_checkpoint(path, b, opt_b)
    assert {k: extra[k] for k in ("epoch", "lr", "tag", "flag", "sizes", "nothing")} == {
        "epoch": 4, "lr": 0.5, "tag": "run-1", "flag": True, "sizes": (1, 2), "nothing": None}
    np.testing.assert_array_equal(extra["weights"].numpy(), np.arange(3.0))
    assert extra["scale"].item() == 2.5
    sa, sb = opt_a.state_dict(), opt_b.state_dict()
    assert sa["param_groups"] == sb["param_groups"]
    for i in sa["state"]:
        for k, v in sa["state"][i].items():
            w = sb["state"][i][k]
            if isinstance(v, ag.Tensor):
                assert w.dtype == v.dtype
                np.testing.assert_array_equal(w.numpy(), v.numpy())
            else:
                assert type(w) is type(v) and w == v
    _steps(a, opt_a, 2)
    _steps(b, opt_b, 2)
    for (n, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        np.testing.assert_array_equal(x.numpy(), y.numpy(), err_msg=n)


def test_partial_checkpoints_and_errors(tmp_path):
    path = tmp_path / "c.npz"
    model = _model(0)
    dp.save_checkpoint(path, model)
    assert dp.load_checkpoint(path) == {}
    with pytest.raises(ValueError, match="holds no optimizer state"):
        dp.load_checkpoint(path, optimizer=optim.SGD(model.parameters(), lr=0.1))
    dp.save_checkpoint(path, step=3)
    with pytest.raises(ValueError, match="holds no model state"):
        dp.load_checkpoint(path, model)
    with pytest.raises(TypeError, match=r"extra value 'fn' is a function"):
        dp.save_checkpoint(path, fn=lambda: 0)
    assert dp.load_checkpoint(path) == {"step": 3}  # the failed save left the file as it was
    nn.save(model.state_dict(), path)
    with pytest.raises(ValueError, match="not written by save_checkpoint"):
        dp.load_checkpoint(path, model)
    with pytest.raises(FileNotFoundError):
        dp.load_checkpoint(tmp_path / "missing.npz", model)
    with pytest.raises(ValueError):  # a different model's layout: load_state_dict's own error
        dp.save_checkpoint(path, model)
        dp.load_checkpoint(path, nn.Linear(4, 2))
