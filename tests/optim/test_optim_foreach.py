"""The multi-tensor (foreach=True) path: flat buffers, bit-identical to the per-parameter path."""
import numpy as np
import pytest

from xpgrad import autograd as ag
from xpgrad import nn, optim
from xpgrad.optim import optimizer as optimizer_module
from optim_testing import (
    ADAM_CONFIGS, RMSPROP_CONFIGS, SGD_CONFIGS, ag_params, config_id, gradient_stream, initial_values, make,
    set_grads,
)

FOREACH_CONFIGS = SGD_CONFIGS + ADAM_CONFIGS + RMSPROP_CONFIGS
SHAPES = [(3, 4), (), (5,), (2, 3, 2)]


def _pair(name, kwargs, shapes=SHAPES, dtype=np.float64):
    values = initial_values(seed=21, shapes=shapes)
    a, b = ag_params(values, dtype), ag_params(values, dtype)
    return a, b, make(name, a, foreach=False, **kwargs), make(name, b, foreach=True, **kwargs)


def _assert_same(a, b, opt_a, opt_b, when=""):
    for i, (p, q) in enumerate(zip(a, b)):
        np.testing.assert_array_equal(p.numpy(), q.numpy(), err_msg=f"parameter {i} {when}")
    sa, sb = opt_a.state_dict()["state"], opt_b.state_dict()["state"]
    assert sa.keys() == sb.keys()
    for i in sa:
        assert sa[i].keys() == sb[i].keys()
        for k in sa[i]:
            va, vb = sa[i][k], sb[i][k]
            np.testing.assert_array_equal(getattr(va, "numpy", lambda: va)(), getattr(vb, "numpy", lambda: vb)())


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("config", FOREACH_CONFIGS, ids=config_id)
def test_foreach_is_bit_identical_to_per_parameter(config, dtype):
    name, kwargs = config
    a, b, opt_a, opt_b = _pair(name, kwargs, dtype=dtype)
    # skip_every=0: every parameter has a gradient, so every step takes the flat path
    for step, grads in enumerate(gradient_stream(30, seed=22, shapes=SHAPES, skip_every=0)):
        set_grads(a, grads)
        set_grads(b, grads)
        opt_a.step()
        opt_b.step()
        _assert_same(a, b, opt_a, opt_b, f"after step {step + 1}")
    assert opt_b._flat, "the flat path never ran"


@pytest.mark.parametrize("config", FOREACH_CONFIGS, ids=config_id)
def test_foreach_falls_back_per_parameter_when_a_grad_is_missing(config):
    name, kwargs = config
    a, b, opt_a, opt_b = _pair(name, kwargs)
    for step, grads in enumerate(gradient_stream(20, seed=23, shapes=SHAPES, skip_every=5)):
        set_grads(a, grads)
        set_grads(b, grads)
        opt_a.step()
        opt_b.step()
        _assert_same(a, b, opt_a, opt_b, f"after step {step + 1}")


def test_parameters_become_views_of_one_flat_buffer_and_stay_the_same_objects():
    params = ag_params(initial_values(seed=1, shapes=SHAPES))
    before = [p.numpy().copy() for p in params]
    opt = optim.Adam(params, lr=0.1, foreach=True)
    set_grads(params, [np.zeros(s) for s in SHAPES])
    opt.step()  # zero gradients: Adam's step is 0, the values do not move
    (bucket,) = opt._flat[id(opt.param_groups[0]["params"])][1]
    assert bucket.params == params
    for p, view, value in zip(params, bucket.views, before):
        assert p.data is view and np.shares_memory(p.data, bucket.param)
        np.testing.assert_array_equal(p.numpy(), value)
        assert np.shares_memory(opt.state[p]["exp_avg"].data, bucket.state["exp_avg"])


def test_module_to_and_load_state_dict_keep_working():
    model = nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 2))
    twin = nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 2))
    twin.load_state_dict(model.state_dict())
    model.to(ag.float64)
    twin.to(ag.float64)
    opt = optim.Adam(model.parameters(), lr=0.01, foreach=True)
    ref = optim.Adam(twin.parameters(), lr=0.01, foreach=False)
    x = ag.tensor(np.random.default_rng(0).standard_normal((5, 4)))

    def step(m, o):
        o.zero_grad()
        m(x).square().sum().backward()
        o.step()

    for _ in range(3):
        step(model, opt)
        step(twin, ref)
    # Loading a module state dict copies into the parameters in place: the flat buffer sees it.
    fresh = nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 2)).to(ag.float64)
    model.load_state_dict(fresh.state_dict())
    twin.load_state_dict(fresh.state_dict())
    # Loading an optimizer state dict replaces the state tensors: the buffers are rebuilt from them.
    opt.load_state_dict(ref.state_dict())
    for _ in range(3):
        step(model, opt)
        step(twin, ref)
    for p, q in zip(model.parameters(), twin.parameters()):
        np.testing.assert_array_equal(p.numpy(), q.numpy())
    # Replacing a parameter's array is noticed too.
    first = next(iter(model.parameters()))
    first.data = first.data.copy()
    second = next(iter(twin.parameters()))
    step(model, opt)
    step(twin, ref)
    assert first.data is not second.data
    for p, q in zip(model.parameters(), twin.parameters()):
        np.testing.assert_array_equal(p.numpy(), q.numpy())


def test_large_updates_run_in_pieces_with_the_same_values(monkeypatch):
    monkeypatch.setattr(optimizer_module, "CHUNK", 7)
    from xpgrad.optim import adam as adam_module
    monkeypatch.setattr(adam_module, "CHUNK", 7)
    a, b, opt_a, opt_b = _pair("Adam", dict(lr=0.01, amsgrad=True))
    whole = ag_params(initial_values(seed=21, shapes=SHAPES))
    calls = []

    def counting(*args, **kwargs):
        calls.append(args[0].size)
        return optim.adam.adam_update(*args, **kwargs)

    opt_c = optim.Adam(whole, lr=0.01, amsgrad=True)
    opt_c._kernel = staticmethod(counting)
    for grads in gradient_stream(5, seed=24, shapes=SHAPES, skip_every=0):
        for ps, o in ((a, opt_a), (b, opt_b), (whole, opt_c)):
            set_grads(ps, grads)
            o.step()
    if whole[0].device.backend.xp is np:  # pieces on NumPy only: elsewhere one call per parameter
        assert max(calls) <= 7 and len(calls) > 5 * len(SHAPES)  # the 12-element matrix went in pieces
    for p, q, r in zip(a, b, whole):
        np.testing.assert_array_equal(p.numpy(), q.numpy())
        np.testing.assert_array_equal(p.numpy(), r.numpy())


def test_foreach_must_be_none_or_a_bool():
    with pytest.raises(TypeError, match="foreach"):
        optim.Adam(ag_params(initial_values()), foreach="yes")
