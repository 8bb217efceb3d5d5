"""Scenarios for the data-parallel tests, run as ``mpiexec -n 2 python _worker.py <scenario>``
(``single`` runs without mpiexec). Each prints ``OK <scenario>`` on rank 0 when every check passed;
a failed check raises, which aborts the whole job (nonzero exit)."""
import hashlib
import sys

import numpy as np

from xpgrad import autograd as ag, nn, optim
from xpgrad.nn import parallel as dp


def mlp(hidden=16, seed=0):
    ag.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, hidden), nn.Tanh(), nn.Linear(hidden, 3)).to(np.float64)


def data(n=256):
    rng = np.random.default_rng(123)
    x = rng.standard_normal((n, 8))
    y = rng.standard_normal((n, 3))
    return ag.tensor(x), ag.tensor(y)


def params_of(model):
    return [p.numpy().copy() for p in model.parameters()]


def digest(model):
    h = hashlib.sha256()
    for p in model.parameters():
        h.update(np.ascontiguousarray(p.numpy()).tobytes())
    return h.hexdigest()


def train(model, make_opt, loader, epochs, micro=1, ddp=None):
    opt = make_opt(model.parameters())
    loss_fn = nn.MSELoss()
    steps = 0
    for _ in range(epochs):
        for xb, yb in loader:
            opt.zero_grad()
            chunks = list(zip(np.array_split(np.arange(len(xb)), micro)))
            for k, (idx,) in enumerate(chunks):
                idx = ag.tensor(idx)
                last = k == len(chunks) - 1
                if ddp is not None and not last:
                    with ddp.no_sync():
                        (loss_fn(model(xb[idx]), yb[idx]) * (1.0 / micro)).backward()
                else:
                    (loss_fn(model(xb[idx]), yb[idx]) * (1.0 / micro)).backward()
            opt.step()
            steps += 1
    return steps


def equiv():
    """2 ranks x batch 32 == 1 process x batch 64 (SGD+momentum, Adam with several buckets, and
    gradient accumulation with no_sync), float64, parameters bit-identical across ranks."""
    comm = dp.init()
    r, w = comm.rank, comm.size
    assert w == 2, w
    x, y = data()
    runs = [
        ("sgd", lambda ps: optim.SGD(ps, lr=0.05, momentum=0.9), 25, 1),
        ("adam-small-buckets", lambda ps: optim.Adam(ps, lr=1e-2), 0.0004, 1),
        ("adam-no_sync", lambda ps: optim.Adam(ps, lr=1e-2), 25, 2),
    ]
    for name, make_opt, cap, micro in runs:
        ref = mlp(seed=0)
        ref_loader = nn.DataLoader((x, y), batch_size=64, shuffle=True, seed=7, rank=0, world_size=1)
        ref_steps = train(ref, make_opt, ref_loader, epochs=8)

        local = mlp(seed=100 + r)  # different on each rank: the wrap must broadcast rank 0's... 
        if r == 0:
            local.load_state_dict(mlp(seed=0).state_dict())  # ...which is the reference's start
        model = dp.DistributedDataParallel(local, bucket_cap_mb=cap)
        if cap < 1:
            assert len(model._buckets) > 1, len(model._buckets)
        loader = nn.DataLoader((x, y), batch_size=32, shuffle=True, seed=7, rank=r, world_size=w)
        steps = train(model, make_opt, loader, epochs=8, micro=micro, ddp=model)
        assert steps == ref_steps == 32, (steps, ref_steps)
        err = max(float(np.max(np.abs(a - b))) for a, b in zip(params_of(local), params_of(ref)))
        assert err < 1e-10, f"{name}: max |DP - single| = {err}"
        digests = comm.allgather_object(digest(local))
        assert digests[0] == digests[1], f"{name}: parameters differ between ranks"
        moved = max(float(np.max(np.abs(a - b))) for a, b in zip(params_of(local), params_of(mlp(seed=0))))
        assert moved > 1e-3, f"{name}: training did not move the parameters ({moved})"
        if r == 0:
            print(f"{name}: max |DP - single| = {err:.2e}", flush=True)


class TwoHeads(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Linear(4, 4)
        self.head_a = nn.Linear(4, 1)
        self.head_b = nn.Linear(4, 1)
        self.never = nn.Linear(4, 1)

    def forward(self, x, use_b):
        h = ag.tanh(self.body(x))
        out = self.head_a(h).sum()
        if use_b:
            out = out + (self.head_b(h) ** 2).sum()
        return out


def unused():
    """head_b is used on rank 0 only and `never` on no rank: no hang, head_b's gradient is the
    average on both ranks, `never` keeps grad None; repeated over steps."""
    comm = dp.init()
    r = comm.rank
    ag.manual_seed(r)
    model = dp.DistributedDataParallel(TwoHeads(), bucket_cap_mb=0.0001)
    x = ag.tensor(np.random.default_rng(r).standard_normal((5, 4)))
    for step in range(3):
        model.zero_grad()
        model(x, use_b=(r == 0)).backward()
        b = model.module.head_b.weight.grad
        assert b is not None, "head_b got no gradient on rank 1"
        grads = comm.allgather_object(b.numpy().copy())
        np.testing.assert_array_equal(grads[0], grads[1])
        assert model.module.never.weight.grad is None and model.module.never.bias.grad is None
        # reference: rank 0's own gradient of head_b, halved
        mine = None
        if r == 0:
            plain = TwoHeads()
            plain.load_state_dict(model.module.state_dict())
            plain(x, use_b=True).backward()
            mine = plain.head_b.weight.grad.numpy() / 2
        mine = comm.broadcast_object(mine)
        np.testing.assert_allclose(b.numpy(), mine, rtol=1e-6, atol=1e-7)
    # broadcast_state: rank 1's diverged weights and optimizer state become rank 0's
    opt = optim.Adam(model.parameters(), lr=1e-2)
    opt.step()
    if r == 1:
        model.module.body.weight.data[...] += 1.0
        opt.param_groups[0]["lr"] = 5.0
        opt.step()
    dp.broadcast_state(model)
    dp.broadcast_state(opt)
    assert len(set(comm.allgather_object(digest(model.module)))) == 1
    sd = opt.state_dict()
    assert sd["param_groups"][0]["lr"] == 1e-2
    moments = comm.allgather_object([st["exp_avg"].numpy() for st in sd["state"].values()])
    assert len(moments[0]) == len(moments[1]) > 0
    for a, b in zip(*moments):
        np.testing.assert_array_equal(a, b)


def resume():
    """Train 2 epochs, checkpoint, train 2 more; a fresh model and optimizer that load the
    checkpoint and train the same 2 epochs end bit-identical to the uninterrupted run, on both ranks."""
    import os

    comm = dp.init()
    r = comm.rank
    path = os.path.join(sys.argv[2], "ckpt.npz")
    x, y = data()

    def setup(seed):
        model = dp.DistributedDataParallel(mlp(seed=seed), bucket_cap_mb=0.0005)
        opt = optim.Adam(model.parameters(), lr=1e-2, betas=(0.8, 0.95))
        loader = nn.DataLoader((x, y), batch_size=16, shuffle=True, seed=11, rank=r, world_size=comm.size)
        return model, opt, loader

    def epochs(model, opt, loader, n):
        for _ in range(n):
            for xb, yb in loader:
                opt.zero_grad()
                nn.MSELoss()(model(xb), yb).backward()
                opt.step()

    model, opt, loader = setup(0)
    epochs(model, opt, loader, 2)
    dp.save_checkpoint(path, model, opt, epoch=loader.epoch, note="half way", marker=ag.tensor([r, 7]))
    assert os.path.exists(path)  # in place on every rank when save returns (one file system here)
    epochs(model, opt, loader, 2)
    straight = digest(model.module)

    fresh, fresh_opt, fresh_loader = setup(50 + r)  # other weights, empty optimizer state
    extra = dp.load_checkpoint(path, fresh, fresh_opt)
    assert extra["epoch"] == 2 and extra["note"] == "half way", extra
    np.testing.assert_array_equal(extra["marker"].numpy(), [0, 7])  # rank 0's value on every rank
    assert fresh_opt.param_groups[0]["betas"] == (0.8, 0.95)
    fresh_loader.epoch = extra["epoch"]
    epochs(fresh, fresh_opt, fresh_loader, 2)
    resumed = digest(fresh.module)
    both = comm.allgather_object((straight, resumed))
    assert both[0] == both[1] and straight == resumed, both
    # a file that is not a checkpoint raises on every rank, none hangs
    if r == 0:
        nn.save(mlp().state_dict(), path)
    dp.barrier()
    try:
        dp.load_checkpoint(path, fresh)
    except (ValueError, RuntimeError) as exc:
        assert "not written by save_checkpoint" in str(exc), exc
    else:
        raise AssertionError("load_checkpoint accepted a plain state dict")


def mismatch():
    dp.init()
    dp.DistributedDataParallel(mlp(hidden=16 + dp.rank()))


def exception():
    comm = dp.init()
    if comm.rank == 1:
        raise RuntimeError("rank 1 failed on purpose")
    dp.barrier()  # rank 0 would wait here forever without the abort-on-exception hook
    dp.all_reduce(ag.tensor([1.0]))


def single():
    """Without mpiexec: a world of one; DDP, all_reduce and a sharded loader of world 1 behave as
    plain one-process training (bit-identical)."""
    comm = dp.init()
    assert (comm.size, comm.rank, dp.world_size(), dp.rank(), dp.local_rank()) == (1, 0, 1, 0, 0)
    assert type(comm).__name__ == "SingleProcess"
    x, y = data(100)
    plain = mlp(seed=0)
    train(plain, lambda ps: optim.Adam(ps, lr=1e-2), nn.DataLoader((x, y), batch_size=10, shuffle=True, seed=3,
                                                                   rank=0, world_size=1), epochs=2)
    wrapped = dp.DistributedDataParallel(mlp(seed=0))
    train(wrapped, lambda ps: optim.Adam(ps, lr=1e-2), nn.DataLoader((x, y), batch_size=10, shuffle=True, seed=3,
                                                                     rank=0, world_size=1), epochs=2, ddp=wrapped)
    assert digest(plain) == digest(wrapped.module)
    assert list(wrapped.state_dict()) == list(plain.state_dict())
    t = ag.tensor([1.0, 2.0])
    dp.all_reduce(t, op="mean")
    np.testing.assert_array_equal(t.numpy(), [1.0, 2.0])
    dp.barrier()


if __name__ == "__main__":
    scenario = sys.argv[1]
    globals()[scenario]()
    dp.barrier()
    if dp.rank() == 0:
        print(f"OK {scenario}", flush=True)
