"""Optimizer construction, validation, zero_grad, closures and state bookkeeping (no torch needed)."""
import numpy as np
import pytest

from xpgrad import autograd as ag
from xpgrad import optim
from optim_testing import CONFIGS, ag_params, config_id, initial_values, make, set_grads

ALL = ["SGD", "Adam", "AdamW", "RMSprop", "Adagrad"]


def _param(shape=(3,), dtype=np.float64, seed=0):
    return ag.tensor(np.random.default_rng(seed).standard_normal(shape).astype(dtype), requires_grad=True)


# -- construction ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ALL)
def test_empty_parameter_list_is_rejected(name):
    with pytest.raises(ValueError, match="empty parameter list"):
        make(name, [])
    with pytest.raises(ValueError, match="empty parameter list"):
        make(name, iter([]))


@pytest.mark.parametrize("name", ALL)
def test_a_set_of_parameters_is_rejected_as_unordered(name):
    with pytest.raises(TypeError, match="ordered collections"):
        make(name, {_param()})
    with pytest.raises(TypeError, match="ordered collections"):
        make(name, [{"params": {_param()}}])


def test_a_bare_tensor_or_dict_is_rejected():
    with pytest.raises(TypeError, match="got a Tensor"):
        optim.SGD(_param(), lr=0.1)
    with pytest.raises(TypeError, match="wrap the dict in a list"):
        optim.SGD({"params": [_param()]}, lr=0.1)


def test_non_tensor_parameters_are_rejected_naming_the_type():
    with pytest.raises(TypeError, match="param 1 .*is a ndarray"):
        optim.SGD([_param(), np.zeros(3)], lr=0.1)
    with pytest.raises(TypeError, match="is a float"):
        optim.Adam([1.0])


def test_non_leaf_and_integer_tensors_are_rejected():
    p = _param()
    with pytest.raises(ValueError, match="non-leaf"):
        optim.SGD([p * 2], lr=0.1)
    with pytest.raises(TypeError, match="floating-point.*int64"):
        optim.SGD([ag.tensor([1, 2, 3])], lr=0.1)


def test_mixing_dicts_and_tensors_is_rejected():
    with pytest.raises(TypeError, match="mixes"):
        optim.SGD([_param(), {"params": [_param()]}], lr=0.1)


def test_duplicate_parameters_are_rejected():
    p, q = _param(), _param()
    with pytest.raises(ValueError, match="more than one parameter group"):
        optim.SGD([{"params": [p]}, {"params": [q, p]}], lr=0.1)
    with pytest.raises(ValueError, match="appears twice"):
        optim.SGD([p, q, p], lr=0.1)
    opt = optim.SGD([p], lr=0.1)
    with pytest.raises(ValueError, match="more than one parameter group"):
        opt.add_param_group({"params": [q, p]})
    assert len(opt.param_groups) == 1  # the failed add left nothing behind


@pytest.mark.parametrize("name, kwargs, exc, pattern", [
    ("SGD", dict(lr=-0.1), ValueError, r"learning rate: -0\.1"),
    ("SGD", dict(lr=0.1, momentum=-0.5), ValueError, r"momentum value: -0\.5"),
    ("SGD", dict(lr=0.1, weight_decay=-1e-4), ValueError, r"weight_decay value: -0\.0001"),
    ("SGD", dict(lr=0.1, nesterov=True), ValueError, "Nesterov momentum requires a momentum and zero dampening"),
    ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.1, nesterov=True), ValueError, r"dampening=0\.1"),
    ("SGD", dict(lr="0.1"), TypeError, r"lr must be a real number.*'0\.1'"),
    ("SGD", dict(lr=float("nan")), ValueError, "learning rate: nan"),
    ("Adam", dict(lr=-1.0), ValueError, r"learning rate: -1\.0"),
    ("Adam", dict(eps=-1e-8), ValueError, r"epsilon value: -1e-08"),
    ("Adam", dict(betas=(1.0, 0.999)), ValueError, r"beta parameter at index 0: 1\.0"),
    ("Adam", dict(betas=(0.9, -0.1)), ValueError, r"beta parameter at index 1: -0\.1"),
    ("Adam", dict(betas=0.9), TypeError, r"betas must be a pair"),
    ("Adam", dict(weight_decay=-0.1), ValueError, r"weight_decay value: -0\.1"),
    ("AdamW", dict(weight_decay=-0.01), ValueError, r"weight_decay value: -0\.01"),
    ("AdamW", dict(betas=(0.9, 1.5)), ValueError, r"index 1: 1\.5"),
    ("RMSprop", dict(lr=-0.01), ValueError, r"learning rate: -0\.01"),
    ("RMSprop", dict(alpha=-0.99), ValueError, r"alpha value: -0\.99"),
    ("RMSprop", dict(eps=-1.0), ValueError, r"epsilon value: -1\.0"),
    ("RMSprop", dict(momentum=-0.9), ValueError, r"momentum value: -0\.9"),
    ("RMSprop", dict(weight_decay=-2), ValueError, r"weight_decay value: -2"),
    ("Adagrad", dict(lr=-0.01), ValueError, r"learning rate: -0\.01"),
    ("Adagrad", dict(lr_decay=-0.5), ValueError, r"lr_decay value: -0\.5"),
    ("Adagrad", dict(initial_accumulator_value=-1.0), ValueError, r"initial_accumulator_value value: -1\.0"),
    ("Adagrad", dict(eps=-1e-10), ValueError, r"epsilon value: -1e-10"),
    ("Adagrad", dict(weight_decay=-3.0), ValueError, r"weight_decay value: -3\.0"),
])
def test_invalid_hyperparameters_name_the_value(name, kwargs, exc, pattern):
    with pytest.raises(exc, match=pattern):
        make(name, [_param()], **kwargs)


@pytest.mark.parametrize("name, bad", [("SGD", {"lr": -1.0}), ("Adam", {"betas": (0.9, 1.0)}),
                                       ("RMSprop", {"alpha": -1.0}), ("Adagrad", {"lr_decay": -1.0})])
def test_invalid_group_options_are_rejected_naming_the_group(name, bad):
    with pytest.raises(ValueError, match="param group 1"):
        make(name, [{"params": [_param()]}, {"params": [_param(seed=1)], **bad}])
    opt = make(name, [_param()])
    with pytest.raises(ValueError, match="param group 1"):
        opt.add_param_group({"params": [_param(seed=2)], **bad})
    assert len(opt.param_groups) == 1


def test_default_signatures_match_pytorch():
    p = _param()
    sgd = optim.SGD([p])
    assert sgd.defaults == dict(lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False, foreach=None)
    adam = optim.Adam([p])
    assert {k: adam.defaults[k] for k in ("lr", "betas", "eps", "weight_decay", "amsgrad")} == dict(
        lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False)
    adamw = optim.AdamW([p])
    assert adamw.defaults["weight_decay"] == 1e-2 and adamw.defaults["decoupled_weight_decay"] is True
    rms = optim.RMSprop([p])
    assert rms.defaults == dict(lr=0.01, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0, centered=False,
                                foreach=None)
    assert optim.Adadelta([p]).defaults == dict(lr=1.0, rho=0.9, eps=1e-6, weight_decay=0)
    assert optim.NAdam([p]).defaults == dict(lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                                             momentum_decay=4e-3, decoupled_weight_decay=False)
    assert optim.RAdam([p]).defaults == dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                                             decoupled_weight_decay=False)
    ada = optim.Adagrad([p])
    assert ada.defaults == dict(lr=0.01, lr_decay=0, eps=1e-10, weight_decay=0, initial_accumulator_value=0)


def test_param_groups_fill_defaults_and_do_not_mutate_the_callers_dict():
    p, q = _param(), _param(seed=1)
    g1 = {"params": [q], "lr": 0.5}
    opt = optim.SGD([{"params": p}, g1], lr=0.1, momentum=0.9)
    assert [[id(t) for t in g["params"]] for g in opt.param_groups] == [[id(p)], [id(q)]]
    assert opt.param_groups[0]["lr"] == 0.1 and opt.param_groups[1]["lr"] == 0.5
    assert opt.param_groups[1]["momentum"] == 0.9
    assert g1 == {"params": [q], "lr": 0.5}


def test_add_param_group_adds_a_trainable_group():
    p, q = _param(), _param(seed=1)
    opt = optim.SGD([p], lr=0.1)
    opt.add_param_group({"params": [q], "lr": 1.0})
    before = q.numpy().copy()
    set_grads([p, q], [np.ones(3), np.ones(3)])
    opt.step()
    np.testing.assert_allclose(q.numpy(), before - 1.0, rtol=0, atol=1e-15)


def test_named_parameters_are_accepted():
    p, q = _param(), _param(seed=1)
    opt = optim.Adam([("w", p), ("b", q)], lr=0.1)
    assert [id(t) for t in opt.param_groups[0]["params"]] == [id(p), id(q)]
    assert opt.param_groups[0]["param_names"] == ["w", "b"]
    assert opt.state_dict()["param_groups"][0]["param_names"] == ["w", "b"]
    with pytest.raises(ValueError, match="names"):
        optim.Adam([("w", p), q])


# -- steps -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("config", CONFIGS, ids=config_id)
def test_parameters_without_grad_are_skipped(config):
    name, kwargs = config
    params = ag_params(initial_values())
    opt = make(name, params, **kwargs)
    before = [p.numpy().copy() for p in params]
    set_grads(params, [np.ones((3, 4)), None])
    opt.step()
    np.testing.assert_array_equal(params[1].numpy(), before[1])
    assert not np.array_equal(params[0].numpy(), before[0])
    if name != "Adagrad":  # Adagrad builds its state up front, as torch
        assert params[1] not in opt.state or not opt.state[params[1]]


@pytest.mark.parametrize("config", CONFIGS, ids=config_id)
def test_state_is_keyed_by_the_parameter_on_its_device(config):
    name, kwargs = config
    params = ag_params(initial_values())
    opt = make(name, params, **kwargs)
    set_grads(params, [np.ones((3, 4)), np.ones(())])
    opt.step()
    for p in params:
        state = opt.state[p]
        for key, value in state.items():
            if isinstance(value, ag.Tensor):
                assert value.device is p.device and value.shape == p.shape and value.dtype == p.dtype, key
                assert not value.requires_grad
            elif key == "mu_product":  # NAdam's product of momentum coefficients: one factor so far
                assert isinstance(value, float) and 0 < value < 1
            else:
                assert key == "step" and value == 1
    assert all(isinstance(k, ag.Tensor) for k in opt.state)
    assert not any(isinstance(k, int) for k in opt.state)


@pytest.mark.parametrize("config", CONFIGS, ids=config_id)
def test_float32_parameters_keep_float32(config):
    name, kwargs = config
    params = ag_params(initial_values(), dtype=np.float32)
    opt = make(name, params, **kwargs)
    for _ in range(3):
        set_grads(params, [np.ones((3, 4)), np.ones(())], dtype=np.float32)
        opt.step()
    for p in params:
        assert p.dtype == np.float32 and p.data.dtype == np.float32
        for key, value in opt.state[p].items():
            if isinstance(value, ag.Tensor):
                assert value.dtype == np.float32, key


@pytest.mark.parametrize("name", ALL)
def test_step_updates_the_parameter_array_in_place(name):
    p = _param()
    data = p.data
    opt = make(name, [p], lr=0.1)
    set_grads([p], [np.ones(3)])
    opt.step()
    assert p.data is data  # same array, updated in place
    set_grads([p], [np.ones(3)])
    p.data = p.data.copy()  # users may swap in a new array of the same shape and dtype
    new = p.data
    before = p.numpy().copy()
    opt.step()
    assert p.data is new and not np.array_equal(p.numpy(), before)


def test_step_does_not_modify_the_gradient():
    for name in ALL:
        p = _param()
        opt = make(name, [p], lr=0.1, weight_decay=0.5)
        g = np.random.default_rng(3).standard_normal(3)
        set_grads([p], [g])
        grad = p.grad
        opt.step()
        opt.step()
        assert p.grad is grad
        np.testing.assert_array_equal(grad.numpy(), g)


def test_sgd_step_values_by_hand():
    p = ag.tensor(np.array([1.0, -2.0]), requires_grad=True)
    opt = optim.SGD([p], lr=0.1, momentum=0.9, dampening=0.5, weight_decay=0.1)
    set_grads([p], [np.array([0.5, 0.5])])
    opt.step()  # d = g + 0.1 p = [0.6, 0.3]; buf = d (no dampening on the first step)
    np.testing.assert_allclose(p.numpy(), [1.0 - 0.06, -2.0 - 0.03], rtol=0, atol=1e-15)
    opt.step()  # d = [0.5 + 0.094, 0.5 - 0.203]; buf = 0.9 buf + 0.5 d
    d = np.array([0.5, 0.5]) + 0.1 * np.array([0.94, -2.03])
    buf = 0.9 * np.array([0.6, 0.3]) + 0.5 * d
    np.testing.assert_allclose(p.numpy(), np.array([0.94, -2.03]) - 0.1 * buf, rtol=0, atol=1e-15)


def test_adam_first_step_moves_each_element_by_lr():
    # With bias correction, Adam's first step is lr * g / (|g| + eps') = lr * sign(g).
    p = ag.tensor(np.array([1.0, 1.0, 1.0]), requires_grad=True)
    opt = optim.Adam([p], lr=0.01, eps=0.0)
    set_grads([p], [np.array([3.0, -0.5, 1e-3])])
    opt.step()
    np.testing.assert_allclose(p.numpy(), [0.99, 1.01, 0.99], rtol=0, atol=1e-12)
    assert opt.state[p]["step"] == 1


def test_no_graph_is_recorded_and_grad_mode_is_kept():
    p = _param()
    opt = optim.Adam([p], lr=0.1)
    set_grads([p], [np.ones(3)])
    opt.step()
    assert p.is_leaf and p.grad_fn is None and p.requires_grad
    assert ag.is_grad_enabled()


# -- zero_grad ---------------------------------------------------------------------------------------

def test_zero_grad_sets_to_none_by_default():
    p, q = _param(), _param(seed=1)
    opt = optim.SGD([p, q], lr=0.1)
    (p * q).sum().backward()
    assert p.grad is not None and q.grad is not None
    opt.zero_grad()
    assert p.grad is None and q.grad is None
    opt.zero_grad()  # nothing to do is fine


def test_zero_grad_without_set_to_none_zeroes_in_place_and_backward_accumulates_into_it():
    p = _param()
    opt = optim.SGD([p], lr=0.1)
    (p * p).sum().backward()
    grad = p.grad
    data = grad.data
    opt.zero_grad(set_to_none=False)
    assert p.grad is grad and grad.data is data
    np.testing.assert_array_equal(grad.numpy(), np.zeros(3))
    (p * p).sum().backward()
    assert p.grad is grad
    np.testing.assert_allclose(grad.numpy(), 2 * p.numpy(), rtol=0, atol=1e-15)


def test_zero_grad_without_set_to_none_detaches_a_differentiable_gradient():
    p = _param()
    opt = optim.SGD([p], lr=0.1)
    (p * p * p).sum().backward(create_graph=True)
    assert p.grad.requires_grad
    opt.zero_grad(set_to_none=False)
    assert not p.grad.requires_grad and p.grad.grad_fn is None
    np.testing.assert_array_equal(p.grad.numpy(), np.zeros(3))


# -- closures ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ALL)
def test_closure_is_evaluated_with_grad_enabled_and_its_loss_returned(name):
    p = ag.tensor(np.array([1.0, 2.0]), requires_grad=True)
    opt = make(name, [p], lr=0.1)
    calls = []

    def closure():
        calls.append(ag.is_grad_enabled())
        opt.zero_grad()
        loss = (p * p).sum()
        loss.backward()
        return loss

    with ag.no_grad():
        loss = opt.step(closure)
    assert calls == [True]
    assert isinstance(loss, ag.Tensor) and loss.item() == 5.0
    assert p.grad is not None  # the closure's backward gave the gradient the step used
    assert np.all(p.numpy() < [1.0, 2.0])
    assert opt.step() is None


def test_closure_gradient_is_the_one_used():
    p = ag.tensor(np.array([1.0, 2.0]), requires_grad=True)
    opt = optim.SGD([p], lr=0.25)

    def closure():
        opt.zero_grad()
        loss = (p * p).sum()
        loss.backward()
        return loss.item()

    assert opt.step(closure) == 5.0
    np.testing.assert_allclose(p.numpy(), [0.5, 1.0], rtol=0, atol=1e-15)


# -- where the state lives ------------------------------------------------------------------------------

def test_state_on_a_changed_parameter_dtype_is_reported():
    p = _param()
    opt = optim.Adam([p], lr=0.1)
    set_grads([p], [np.ones(3)])
    opt.step()
    p.data = p.data.astype(np.float32)
    set_grads([p], [np.ones(3)])
    with pytest.raises(RuntimeError, match="float64.*float32"):
        opt.step()


def test_scratch_buffers_are_reused_across_steps():
    params = ag_params(initial_values())
    opt = optim.Adam(params, lr=0.1)
    set_grads(params, [np.ones((3, 4)), np.ones(())])
    opt.step()
    buffers = dict(opt._scratch)
    assert len(buffers) == 1
    for _ in range(3):
        opt.step()
    assert all(opt._scratch[k] is v for k, v in buffers.items())


def test_repr_lists_groups():
    opt = optim.SGD([_param()], lr=0.5, momentum=0.9)
    text = repr(opt)
    assert text.startswith("SGD (") and "Parameter Group 0" in text and "lr: 0.5" in text and "momentum: 0.9" in text
