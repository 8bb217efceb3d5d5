"""Scheduler behaviour that needs no oracle: values by hand, state dicts, errors."""
import math

import numpy as np
import pytest

from xpgrad import autograd as ag
from xpgrad import optim
from xpgrad.optim.lr_scheduler import CosineAnnealingLR, ExponentialLR, LambdaLR, LRScheduler, StepLR


def _opt(lrs=(0.1,)):
    groups = [{"params": [ag.tensor(np.zeros(2), requires_grad=True)], "lr": lr} for lr in lrs]
    return optim.SGD(groups, lr=lrs[0])


def _sequence(sched, n):
    out = [sched.get_last_lr()]
    for _ in range(n):
        sched.optimizer.step()
        sched.step()
        out.append(sched.get_last_lr())
    return out


def test_step_lr_by_hand():
    sched = StepLR(_opt(), step_size=2, gamma=0.5)
    lrs = [x[0] for x in _sequence(sched, 6)]
    assert lrs == [0.1, 0.1, 0.05, 0.05, 0.025, 0.025, 0.0125]


def test_exponential_lr_by_hand():
    sched = ExponentialLR(_opt(), gamma=0.5)
    assert [x[0] for x in _sequence(sched, 3)] == [0.1, 0.05, 0.025, 0.0125]


def test_cosine_annealing_follows_the_closed_form():
    t_max, eta_min, base = 6, 0.01, 0.1
    sched = CosineAnnealingLR(_opt((base,)), T_max=t_max, eta_min=eta_min)
    for epoch, (lr,) in enumerate(_sequence(sched, 3 * t_max)):
        closed = eta_min + (base - eta_min) * (1 + math.cos(math.pi * epoch / t_max)) / 2
        assert math.isclose(lr, closed, rel_tol=0, abs_tol=1e-12), epoch


def test_lambda_lr_per_group_and_shared():
    sched = LambdaLR(_opt((0.1, 1.0)), lr_lambda=[lambda e: e + 1, lambda e: 0.5 ** e])
    seq = _sequence(sched, 2)
    assert seq == [[0.1, 1.0], [0.2, 0.5], [0.30000000000000004, 0.25]]
    shared = LambdaLR(_opt((0.1, 1.0)), lr_lambda=lambda e: 10.0)
    assert shared.get_last_lr() == [1.0, 10.0]
    with pytest.raises(ValueError, match="Expected 2 lr_lambdas, but got 1"):
        LambdaLR(_opt((0.1, 1.0)), lr_lambda=[lambda e: 1.0])
    with pytest.raises(TypeError, match="callable"):
        LambdaLR(_opt(), lr_lambda=0.5)


def test_base_lrs_are_the_groups_initial_lr():
    opt = _opt((0.1, 0.2))
    sched = StepLR(opt, step_size=1, gamma=0.5)
    assert sched.base_lrs == [0.1, 0.2]
    assert [g["initial_lr"] for g in opt.param_groups] == [0.1, 0.2]
    assert sched.last_epoch == 0
    sched.step()
    assert [g["lr"] for g in opt.param_groups] == [0.05, 0.1]
    assert sched.base_lrs == [0.1, 0.2]


def test_get_last_lr_is_a_copy():
    sched = ExponentialLR(_opt(), gamma=0.5)
    lrs = sched.get_last_lr()
    lrs[0] = 99.0
    assert sched.get_last_lr() == [0.1]


def test_scheduled_lr_is_used_by_the_optimizer():
    opt = _opt((1.0,))
    p = opt.param_groups[0]["params"][0]
    sched = StepLR(opt, step_size=1, gamma=0.5)
    for expected in (1.0, 0.5, 0.25):
        before = p.numpy().copy()
        p.grad = ag.tensor(np.ones(2))
        opt.step()
        np.testing.assert_allclose(before - p.numpy(), expected, rtol=0, atol=1e-15)
        sched.step()


@pytest.mark.parametrize("make", [
    lambda o: StepLR(o, step_size=3, gamma=0.5),
    lambda o: ExponentialLR(o, gamma=0.8),
    lambda o: CosineAnnealingLR(o, T_max=5, eta_min=0.001),
    lambda o: LambdaLR(o, lr_lambda=lambda e: 1.0 / (e + 1)),
])
def test_state_dict_round_trip_continues_like_an_uninterrupted_run(make):
    straight = make(_opt((0.1, 0.3)))
    expected = _sequence(straight, 20)

    opt = _opt((0.1, 0.3))
    first = make(opt)
    got = _sequence(first, 8)
    opt_sd, sd = opt.state_dict(), first.state_dict()
    assert "optimizer" not in sd and sd["last_epoch"] == 8
    # later steps do not reach the saved dict
    first.step()
    assert sd["last_epoch"] == 8

    opt2 = _opt((0.1, 0.3))
    second = make(opt2)
    opt2.load_state_dict(opt_sd)
    second.load_state_dict(sd)
    assert second.last_epoch == 8 and second.get_last_lr() == got[-1]
    got += _sequence(second, 12)[1:]
    assert got == expected


def test_lambda_lr_state_dict_saves_callable_objects_only():
    class Scale:
        def __init__(self, k):
            self.k = k

        def __call__(self, epoch):
            return self.k

    sched = LambdaLR(_opt((0.1, 0.2)), lr_lambda=[Scale(3.0), lambda e: 1.0])
    sd = sched.state_dict()
    assert sd["lr_lambdas"] == [{"k": 3.0}, None]
    other = LambdaLR(_opt((0.1, 0.2)), lr_lambda=[Scale(5.0), lambda e: 2.0])
    other.load_state_dict(sd)
    assert other.lr_lambdas[0].k == 3.0
    assert sd["lr_lambdas"] == [{"k": 3.0}, None]  # loading did not consume the dict


def test_loading_a_state_for_another_number_of_groups_is_rejected():
    sd = StepLR(_opt((0.1, 0.2)), step_size=2).state_dict()
    sched = StepLR(_opt((0.1,)), step_size=2)
    with pytest.raises(ValueError, match="2 base_lrs, but the optimizer has 1"):
        sched.load_state_dict(sd)
    assert sched.base_lrs == [0.1] and sched.last_epoch == 0


def test_resuming_with_last_epoch_needs_initial_lr():
    with pytest.raises(KeyError, match="initial_lr"):
        StepLR(_opt(), step_size=2, last_epoch=3)
    opt = _opt()
    StepLR(opt, step_size=2)
    resumed = StepLR(opt, step_size=2, last_epoch=3)
    assert resumed.last_epoch == 4


def test_argument_errors():
    with pytest.raises(TypeError, match="not an Optimizer"):
        StepLR(object(), step_size=2)
    with pytest.raises(ValueError, match="step_size must be a positive integer, got 0"):
        StepLR(_opt(), step_size=0)
    with pytest.raises(ValueError, match="T_max must be a positive integer, got -1"):
        CosineAnnealingLR(_opt(), T_max=-1)


def test_base_class_requires_get_lr():
    with pytest.raises(NotImplementedError):
        LRScheduler(_opt())
