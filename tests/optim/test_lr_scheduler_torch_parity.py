"""Learning-rate schedulers against torch.optim.lr_scheduler: the lr sequence, step by step."""
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from xpgrad import autograd as ag  # noqa: E402
from xpgrad import optim  # noqa: E402

TOL = 1e-12
LRS = (0.1, 0.03)  # two groups with different learning rates


class Warmup:
    """A callable object (its __dict__ is what LambdaLR's state_dict saves)."""

    def __init__(self, n):
        self.n = n

    def __call__(self, epoch):
        return min(1.0, (epoch + 1) / self.n)


def _half_life(epoch):
    return 0.5 ** (epoch / 4)


SCHEDULERS = [
    ("StepLR", dict(step_size=3)),
    ("StepLR", dict(step_size=4, gamma=0.5)),
    ("StepLR", dict(step_size=1, gamma=0.9)),
    ("ExponentialLR", dict(gamma=0.9)),
    ("ExponentialLR", dict(gamma=1.1)),
    ("CosineAnnealingLR", dict(T_max=10)),
    ("CosineAnnealingLR", dict(T_max=7, eta_min=0.01)),
    ("CosineAnnealingLR", dict(T_max=1, eta_min=0.001)),
    ("CosineAnnealingLR", dict(T_max=4, eta_min=0.2)),  # eta_min above one group's lr
    ("LambdaLR", dict(lr_lambda=_half_life)),
    ("LambdaLR", dict(lr_lambda=[Warmup(5), lambda e: 1.0 / (1 + e)])),
]


def _id(config):
    name, kwargs = config
    return name + "-" + "-".join(f"{k}={v if not callable(v) and not isinstance(v, list) else 'fn'}"
                                 for k, v in kwargs.items())


def _n_steps(name, kwargs):
    return 3 * kwargs["T_max"] if name == "CosineAnnealingLR" else 30


def _ours(name, kwargs):
    params = [ag.tensor(np.zeros(2), requires_grad=True), ag.tensor(np.zeros(()), requires_grad=True)]
    opt = optim.SGD([{"params": [params[0]], "lr": LRS[0]}, {"params": [params[1]], "lr": LRS[1]}], lr=LRS[0])
    return opt, getattr(optim.lr_scheduler, name)(opt, **kwargs)


def _torch(name, kwargs):
    params = [torch.zeros(2, requires_grad=True), torch.zeros((), requires_grad=True)]
    opt = torch.optim.SGD([{"params": [params[0]], "lr": LRS[0]}, {"params": [params[1]], "lr": LRS[1]}], lr=LRS[0])
    return opt, getattr(torch.optim.lr_scheduler, name)(opt, **kwargs)


def _assert_lrs(ours_sched, ours_opt, ref_sched, when):
    got, want = ours_sched.get_last_lr(), ref_sched.get_last_lr()
    assert len(got) == len(want) == 2
    for g, w in zip(got, want):
        assert math.isclose(g, w, rel_tol=0, abs_tol=TOL), f"{when}: {got} vs torch {want}"
    assert [g["lr"] for g in ours_opt.param_groups] == got


@pytest.mark.parametrize("config", SCHEDULERS, ids=_id)
def test_lr_sequence_matches_torch(config):
    name, kwargs = config
    opt, sched = _ours(name, kwargs)
    ref_opt, ref = _torch(name, kwargs)
    assert sched.last_epoch == ref.last_epoch == 0
    assert sched.base_lrs == ref.base_lrs == list(LRS)
    assert [g["initial_lr"] for g in opt.param_groups] == list(LRS)
    _assert_lrs(sched, opt, ref, "after construction")
    for i in range(_n_steps(name, kwargs)):
        opt.step()
        ref_opt.step()
        sched.step()
        ref.step()
        assert sched.last_epoch == ref.last_epoch
        _assert_lrs(sched, opt, ref, f"after step {i + 1}")


@pytest.mark.parametrize("config", SCHEDULERS, ids=_id)
def test_state_dict_round_trip_matches_torch(config):
    """Save optimizer and scheduler after 7 steps, rebuild both, load, continue: torch's sequence."""
    name, kwargs = config
    opt, sched = _ours(name, kwargs)
    ref_opt, ref = _torch(name, kwargs)
    for _ in range(7):
        opt.step()
        sched.step()
        ref_opt.step()
        ref.step()
    opt_sd, sched_sd = opt.state_dict(), sched.state_dict()
    assert sched_sd["last_epoch"] == 7 and "optimizer" not in sched_sd

    opt2, sched2 = _ours(name, kwargs)  # a fresh pair, as after a restart
    opt2.load_state_dict(opt_sd)
    sched2.load_state_dict(sched_sd)
    _assert_lrs(sched2, opt2, ref, "after loading")
    for i in range(_n_steps(name, kwargs)):
        opt2.step()
        sched2.step()
        ref_opt.step()
        ref.step()
        _assert_lrs(sched2, opt2, ref, f"after step {7 + i + 1}")


@pytest.mark.parametrize("config", [c for c in SCHEDULERS if c[0] != "LambdaLR"], ids=_id)
def test_step_with_an_epoch_uses_torchs_closed_form(config):
    name, kwargs = config
    opt, sched = _ours(name, kwargs)
    ref_opt, ref = _torch(name, kwargs)
    for epoch in (5, 2, 9):
        opt.step()
        ref_opt.step()
        with pytest.warns(UserWarning):
            sched.step(epoch)
        with pytest.warns(UserWarning):
            ref.step(epoch)
        _assert_lrs(sched, opt, ref, f"at epoch {epoch}")


def test_a_second_scheduler_keeps_the_first_ones_initial_lr():
    opt, sched = _ours("StepLR", dict(step_size=2, gamma=0.5))
    ref_opt, ref = _torch("StepLR", dict(step_size=2, gamma=0.5))
    for _ in range(3):
        opt.step()
        ref_opt.step()
        sched.step()
        ref.step()
    other = optim.lr_scheduler.ExponentialLR(opt, gamma=0.9)
    ref_other = torch.optim.lr_scheduler.ExponentialLR(ref_opt, gamma=0.9)
    assert other.base_lrs == ref_other.base_lrs == list(LRS)
    for i in range(6):
        opt.step()
        ref_opt.step()
        other.step()
        ref_other.step()
        sched.step()
        ref.step()
        _assert_lrs(sched, opt, ref, f"chained step {i}")


@pytest.mark.parametrize("config", SCHEDULERS, ids=_id)
def test_state_dict_holds_what_torchs_holds(config):
    name, kwargs = config
    opt, sched = _ours(name, kwargs)
    ref_opt, ref = _torch(name, kwargs)
    for _ in range(5):
        opt.step()
        ref_opt.step()
        sched.step()
        ref.step()
    ours_sd, ref_sd = sched.state_dict(), ref.state_dict()
    ref_sd.pop("_get_lr_called_within_step")  # torch's guard for a warning we do not give
    assert set(ours_sd) == set(ref_sd)
    for key, value in ref_sd.items():
        if key == "lr_lambdas":
            assert ours_sd[key] == [None if v is None else dict(v) for v in value]
        elif key in ("_last_lr", "base_lrs"):
            np.testing.assert_allclose(ours_sd[key], value, rtol=0, atol=TOL)
        else:
            assert ours_sd[key] == value, key
