"""Optimizer state_dict / load_state_dict: round trips, copies, validation (no torch needed)."""
import numpy as np
import pytest

from xpgrad import autograd as ag
from xpgrad import optim
from optim_testing import CONFIGS, ag_params, config_id, gradient_stream, initial_values, make, set_grads


def _run(opt, params, grads_seq):
    for grads in grads_seq:
        set_grads(params, grads)
        opt.step()


def _snapshot(opt):
    """Host copies of everything in the optimizer, to check that it did not change."""
    sd = opt.state_dict()
    groups = [{k: v for k, v in g.items()} for g in sd["param_groups"]]
    state = {i: {k: (v.numpy().copy() if isinstance(v, ag.Tensor) else v) for k, v in s.items()}
             for i, s in sd["state"].items()}
    objects = {id(p): {k: id(v) for k, v in s.items()} for p, s in opt.state.items()}
    return groups, state, objects, id(opt.state), [id(g) for g in opt.param_groups]


def _assert_same_snapshot(a, b):
    groups_a, state_a, objects_a, *ids_a = a
    groups_b, state_b, objects_b, *ids_b = b
    assert groups_a == groups_b
    assert state_a.keys() == state_b.keys()
    for i in state_a:
        assert state_a[i].keys() == state_b[i].keys()
        for k in state_a[i]:
            np.testing.assert_array_equal(state_a[i][k], state_b[i][k])
    assert objects_a == objects_b and ids_a == ids_b


@pytest.mark.parametrize("config", CONFIGS, ids=config_id)
def test_round_trip_continues_exactly_like_an_uninterrupted_run(config):
    name, kwargs = config
    grads = gradient_stream(20, seed=11)
    values = initial_values(seed=10)

    straight = ag_params(values)
    _run(make(name, straight, **kwargs), straight, grads)

    resumed = ag_params(values)
    first = make(name, resumed, **kwargs)
    _run(first, resumed, grads[:10])
    sd = first.state_dict()
    # A fresh optimizer built with other options: the loaded groups must bring the saved ones back.
    other = dict(kwargs, lr=kwargs["lr"] * 7)
    second = make(name, resumed, **other)
    second.load_state_dict(sd)
    assert second.param_groups[0]["lr"] == kwargs["lr"]
    _run(second, resumed, grads[10:])

    for a, b in zip(straight, resumed):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


@pytest.mark.parametrize("config", CONFIGS, ids=config_id)
def test_state_dict_holds_copies(config):
    name, kwargs = config
    params = ag_params(initial_values())
    opt = make(name, params, **kwargs)
    grads = gradient_stream(6, seed=2, skip_every=0)
    _run(opt, params, grads[:3])
    sd = opt.state_dict()
    saved = {i: {k: (v.numpy().copy() if isinstance(v, ag.Tensor) else v) for k, v in s.items()}
             for i, s in sd["state"].items()}
    for i, p in enumerate(params):
        for k, v in opt.state[p].items():
            if isinstance(v, ag.Tensor):
                assert sd["state"][i][k] is not v and sd["state"][i][k].data is not v.data
    # Later steps do not reach the saved dict...
    _run(opt, params, grads[3:])
    for i, s in sd["state"].items():
        for k, v in s.items():
            np.testing.assert_array_equal(v.numpy() if isinstance(v, ag.Tensor) else v, saved[i][k])
    # ...and neither do steps after loading it.
    fresh = make(name, params, **kwargs)
    fresh.load_state_dict(sd)
    _run(fresh, params, grads[3:])
    for i, s in sd["state"].items():
        for k, v in s.items():
            np.testing.assert_array_equal(v.numpy() if isinstance(v, ag.Tensor) else v, saved[i][k])


def test_state_dict_format():
    params = ag_params(initial_values(shapes=[(2,), (), (3,)]), np.float64)
    opt = optim.SGD([{"params": params[:2]}, {"params": params[2:], "lr": 0.5}], lr=0.1, momentum=0.9)
    set_grads(params, [np.ones(2), None, np.ones(3)])
    opt.step()
    sd = opt.state_dict()
    assert set(sd) == {"state", "param_groups"}
    assert sd["param_groups"] == [
        dict(lr=0.1, momentum=0.9, dampening=0, weight_decay=0, nesterov=False, foreach=None, params=[0, 1]),
        dict(lr=0.5, momentum=0.9, dampening=0, weight_decay=0, nesterov=False, foreach=None, params=[2]),
    ]
    assert sorted(sd["state"]) == [0, 2]
    assert set(sd["state"][0]) == {"momentum_buffer"}
    assert isinstance(sd["state"][2]["momentum_buffer"], ag.Tensor)
    # param_groups in the dict are not the optimizer's own dicts
    sd["param_groups"][0]["lr"] = 123.0
    assert opt.param_groups[0]["lr"] == 0.1


def _stepped(name="Adam", shapes=((3, 4), ()), groups=1, **kwargs):
    params = ag_params(initial_values(shapes=list(shapes)))
    if groups == 2:
        opt = make(name, [{"params": params[:1]}, {"params": params[1:], "lr": 0.5}], **kwargs)
    else:
        opt = make(name, params, **kwargs)
    _run(opt, params, gradient_stream(3, shapes=list(shapes), skip_every=0))
    return opt, params


def test_load_rejects_a_wrong_number_of_groups_and_changes_nothing():
    opt, _ = _stepped(groups=2)
    one_group, _ = _stepped(groups=1)
    before = _snapshot(opt)
    with pytest.raises(ValueError, match="1 parameter groups, but the optimizer has 2"):
        opt.load_state_dict(one_group.state_dict())
    _assert_same_snapshot(before, _snapshot(opt))


def test_load_rejects_a_wrong_number_of_parameters_in_a_group_and_changes_nothing():
    opt, _ = _stepped(shapes=((3, 4), (), (2,)))
    other, _ = _stepped(shapes=((3, 4), ()))
    before = _snapshot(opt)
    with pytest.raises(ValueError, match="group 0 has 2 parameters, but the optimizer's group 0 has 3"):
        opt.load_state_dict(other.state_dict())
    _assert_same_snapshot(before, _snapshot(opt))


@pytest.mark.parametrize("name, kwargs", [("SGD", dict(momentum=0.9)), ("Adam", {}), ("RMSprop", dict(centered=True)),
                                          ("Adagrad", {})])
def test_load_rejects_a_wrong_state_shape_and_changes_nothing(name, kwargs):
    opt, _ = _stepped(name, **kwargs)
    other, _ = _stepped(name, shapes=((3, 4), (5,)), **kwargs)
    before = _snapshot(opt)
    with pytest.raises(ValueError, match=r"of parameter 1 has shape \(5,\), but the parameter has shape \(\)"):
        opt.load_state_dict(other.state_dict())
    _assert_same_snapshot(before, _snapshot(opt))
    # the same, after a good entry was already converted: still nothing committed
    sd = opt.state_dict()
    sd["param_groups"][0]["lr"] = 0.125
    key = next(k for k, v in sd["state"][1].items() if isinstance(v, ag.Tensor))
    sd["state"][1][key] = ag.tensor(np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"\(2, 2\)"):
        opt.load_state_dict(sd)
    _assert_same_snapshot(before, _snapshot(opt))


@pytest.mark.parametrize("mutate, pattern", [
    (lambda sd: sd["state"].__setitem__(7, sd["state"][0]), "parameter index 7"),
    (lambda sd: sd["state"][0].pop("exp_avg_sq"), r"lacks \['exp_avg_sq'\]"),
    (lambda sd: sd["state"][0].__setitem__("step", -1.0), "'step'.*>= 0"),
    (lambda sd: sd["state"][0].__setitem__("exp_avg", [1, 2]), "is a list"),
    (lambda sd: sd["param_groups"][0].__setitem__("lr", -0.5), r"learning rate: -0\.5 in loaded param group 0"),
    (lambda sd: sd["param_groups"][0].__setitem__("betas", (0.9, 2.0)), "index 1: 2.0"),
    (lambda sd: sd["param_groups"][0].__setitem__("params", [0, 0]), "more than once"),
    (lambda sd: sd.pop("state"), "lacks"),
])
def test_load_rejects_inconsistent_dicts_and_changes_nothing(mutate, pattern):
    opt, _ = _stepped("Adam")
    sd = opt.state_dict()
    mutate(sd)
    before = _snapshot(opt)
    with pytest.raises(ValueError, match=pattern):
        opt.load_state_dict(sd)
    _assert_same_snapshot(before, _snapshot(opt))


def test_loading_state_of_another_optimizer_is_rejected():
    sgd, _ = _stepped("SGD", momentum=0.9)
    adam, _ = _stepped("Adam")
    with pytest.raises(ValueError, match="different optimizer than Adam"):
        adam.load_state_dict(sgd.state_dict())


def test_load_casts_state_to_the_parameter_dtype_and_device():
    p64 = ag_params(initial_values())
    src = optim.Adam(p64, lr=0.1, amsgrad=True)
    _run(src, p64, gradient_stream(3, skip_every=0))
    p32 = ag_params(initial_values(), np.float32)
    dst = optim.Adam(p32, lr=0.1, amsgrad=True)
    dst.load_state_dict(src.state_dict())
    for p, q in zip(p32, p64):
        for key, value in dst.state[p].items():
            if key == "step":
                assert value == 3
                continue
            assert value.dtype == np.float32 and value.device is p.device
            np.testing.assert_allclose(value.numpy(), src.state[q][key].numpy().astype(np.float32), rtol=1e-7)
    _run(dst, p32, gradient_stream(2, skip_every=0))  # and it keeps working in float32
    assert all(p.dtype == np.float32 for p in p32)


def test_load_accepts_numpy_arrays_and_a_0d_step_tensor():
    params = ag_params(initial_values())
    src = optim.Adam(params, lr=0.1)
    _run(src, params, gradient_stream(2, skip_every=0))
    sd = src.state_dict()
    for s in sd["state"].values():
        s["step"] = ag.tensor(np.float32(s["step"]))  # torch keeps the step in a 0-d float32 tensor
        s["exp_avg"] = s["exp_avg"].numpy()
    dst = optim.Adam(params, lr=0.1)
    dst.load_state_dict(sd)
    for p in params:
        assert dst.state[p]["step"] == 2.0
        assert isinstance(dst.state[p]["exp_avg"], ag.Tensor) and dst.state[p]["exp_avg"].device is p.device
        np.testing.assert_array_equal(dst.state[p]["exp_avg"].numpy(), src.state[p]["exp_avg"].numpy())


def test_loaded_groups_keep_the_optimizers_own_parameters_and_names():
    params = ag_params(initial_values())
    opt = optim.SGD([("w", params[0]), ("b", params[1])], lr=0.1)
    sd = opt.state_dict()
    del sd["param_groups"][0]["param_names"]
    opt.load_state_dict(sd)
    assert [id(p) for p in opt.param_groups[0]["params"]] == [id(p) for p in params]
    assert opt.param_groups[0]["param_names"] == ["w", "b"]


def test_adamw_always_decouples_even_from_a_loaded_adam_dict():
    params = ag_params(initial_values())
    adam = optim.Adam(params, lr=0.1, weight_decay=0.1)
    adamw = optim.AdamW(params, lr=0.1)
    adamw.load_state_dict(adam.state_dict())
    assert adamw.param_groups[0]["decoupled_weight_decay"] is True
    adamw.add_param_group({"params": ag_params([np.ones(2)]), "decoupled_weight_decay": False})
    assert adamw.param_groups[1]["decoupled_weight_decay"] is True
