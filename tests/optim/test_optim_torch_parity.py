"""Every optimizer against torch.optim (the oracle), step by step, in float64 and float32."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from xpgrad import optim  # noqa: E402
from optim_testing import (  # noqa: E402
    CONFIGS, ag_params, config_id, gradient_stream, initial_values, make, set_grads,
)

N_STEPS = 30
ATOL = 1e-10


def torch_params(values, dtype=torch.float64):
    return [torch.tensor(np.array(v), dtype=dtype, requires_grad=True) for v in values]


def torch_set_grads(params, grads, dtype=torch.float64):
    for p, g in zip(params, grads):
        p.grad = None if g is None else torch.tensor(np.array(g), dtype=dtype)


def torch_optimizer(name, params, **kwargs):
    # torch's single-tensor, non-foreach path is the reference the update rules follow.
    return getattr(torch.optim, name)(params, foreach=False, **kwargs)


def assert_params_equal(ours, theirs, atol=ATOL, rtol=0.0, when=""):
    for i, (p, t) in enumerate(zip(ours, theirs)):
        np.testing.assert_allclose(p.numpy(), t.detach().numpy(), rtol=rtol, atol=atol,
                                   err_msg=f"parameter {i} {when}")


@pytest.mark.parametrize("config", CONFIGS, ids=config_id)
def test_matches_torch_every_step_float64(config):
    name, kwargs = config
    values = initial_values()
    ours, theirs = ag_params(values), torch_params(values)
    opt, ref = make(name, ours, **kwargs), torch_optimizer(name, theirs, **kwargs)
    for step, grads in enumerate(gradient_stream(N_STEPS)):
        set_grads(ours, grads)
        torch_set_grads(theirs, grads)
        opt.step()
        ref.step()
        assert_params_equal(ours, theirs, when=f"after step {step + 1}")
    # The optimizer state agrees too (same names as torch's, same values).
    ours_sd, ref_sd = opt.state_dict(), ref.state_dict()
    assert sorted(ours_sd["state"]) == sorted(ref_sd["state"])
    for idx, ref_state in ref_sd["state"].items():
        assert set(ours_sd["state"][idx]) == set(ref_state), idx
        for key, ref_value in ref_state.items():
            ours_value = ours_sd["state"][idx][key]
            if key in ("step", "mu_product"):  # numbers here, 0-d tensors in torch: exactly equal
                assert ours_value == float(ref_value), key
            else:
                np.testing.assert_allclose(ours_value.numpy(), ref_value.numpy(), rtol=0, atol=ATOL,
                                           err_msg=f"state {key} of parameter {idx}")


@pytest.mark.parametrize("config", CONFIGS, ids=config_id)
def test_matches_torch_float32(config):
    """float32 parameters keep float32 (and float32 state); results track torch's float32 run."""
    name, kwargs = config
    values = initial_values(seed=3)
    ours, theirs = ag_params(values, np.float32), torch_params(values, torch.float32)
    opt, ref = make(name, ours, **kwargs), torch_optimizer(name, theirs, **kwargs)
    for grads in gradient_stream(N_STEPS, seed=4):
        set_grads(ours, grads)
        torch_set_grads(theirs, grads, torch.float32)
        opt.step()
        ref.step()
    for p in ours:
        assert p.dtype == np.float32
        for key, value in opt.state[p].items():
            if key not in ("step", "mu_product"):  # those two are numbers
                assert value.dtype == np.float32, key
    # float32 rounding differs in the last bits between libraries; 30 steps stay within 1e-5.
    assert_params_equal(ours, theirs, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name, defaults, groups", [
    ("SGD", dict(lr=0.01, momentum=0.9), [dict(lr=0.1), dict(momentum=0.5, nesterov=True)]),
    ("SGD", dict(lr=0.01), [dict(lr=0.2, weight_decay=0.1), dict(momentum=0.9, dampening=0.5)]),
    ("Adam", dict(lr=0.01), [dict(lr=0.05, amsgrad=True), dict(betas=(0.5, 0.9), weight_decay=0.1)]),
    ("AdamW", dict(lr=0.01), [dict(lr=0.05), dict(weight_decay=0.5, eps=1e-4)]),
    ("RMSprop", dict(lr=0.01), [dict(lr=0.001, centered=True), dict(momentum=0.9, alpha=0.9)]),
    ("Adagrad", dict(lr=0.1), [dict(lr=0.01, lr_decay=0.2), dict(weight_decay=0.1)]),
    ("Adadelta", dict(lr=0.5), [dict(rho=0.5), dict(weight_decay=0.1, eps=1e-4)]),
    ("NAdam", dict(lr=0.01), [dict(momentum_decay=0.01), dict(weight_decay=0.1, decoupled_weight_decay=True)]),
    ("RAdam", dict(lr=0.01), [dict(betas=(0.5, 0.9)), dict(weight_decay=0.1)]),
])
def test_param_groups_with_their_own_options(name, defaults, groups):
    shapes = [(3, 4), (), (5,)]
    values = initial_values(seed=5, shapes=shapes)
    ours, theirs = ag_params(values), torch_params(values)
    # group 0: the matrix; group 1: the 0-d and the vector
    opt = make(name, [dict(params=[ours[0]], **groups[0]), dict(params=ours[1:], **groups[1])], **defaults)
    ref = torch_optimizer(name, [dict(params=[theirs[0]], **groups[0]), dict(params=theirs[1:], **groups[1])],
                          **defaults)
    for key, value in groups[0].items():
        assert opt.param_groups[0][key] == value
    for key, value in defaults.items():
        if key not in groups[1]:
            assert opt.param_groups[1][key] == value
    for step, grads in enumerate(gradient_stream(N_STEPS, seed=6, shapes=shapes, skip_every=4)):
        set_grads(ours, grads)
        torch_set_grads(theirs, grads)
        opt.step()
        ref.step()
        assert_params_equal(ours, theirs, when=f"after step {step + 1}")


@pytest.mark.parametrize("name, kwargs", [("SGD", dict(lr=0.1, momentum=0.9)), ("Adam", dict(lr=0.1)),
                                          ("Adagrad", dict(lr=0.1, lr_decay=0.01))])
def test_lr_changed_between_steps_matches_torch(name, kwargs):
    """A scheduler driving group['lr'] (cosine annealing) gives torch's parameters."""
    values = initial_values(seed=7)
    ours, theirs = ag_params(values), torch_params(values)
    opt, ref = make(name, ours, **kwargs), torch_optimizer(name, theirs, **kwargs)
    sched = optim.lr_scheduler.CosineAnnealingLR(opt, T_max=8, eta_min=0.01)
    ref_sched = torch.optim.lr_scheduler.CosineAnnealingLR(ref, T_max=8, eta_min=0.01)
    for step, grads in enumerate(gradient_stream(N_STEPS, seed=8)):
        set_grads(ours, grads)
        torch_set_grads(theirs, grads)
        opt.step()
        ref.step()
        sched.step()
        ref_sched.step()
        assert_params_equal(ours, theirs, when=f"after step {step + 1}")


def test_adagrad_state_exists_before_the_first_step_as_in_torch():
    values = initial_values()
    opt = optim.Adagrad(ag_params(values), initial_accumulator_value=0.25)
    ref = torch.optim.Adagrad(torch_params(values), initial_accumulator_value=0.25)
    ours_sd, ref_sd = opt.state_dict(), ref.state_dict()
    assert sorted(ours_sd["state"]) == sorted(ref_sd["state"]) == [0, 1]
    for idx in ref_sd["state"]:
        assert ours_sd["state"][idx]["step"] == 0.0
        np.testing.assert_array_equal(ours_sd["state"][idx]["sum"].numpy(), ref_sd["state"][idx]["sum"].numpy())


def test_state_dict_layout_matches_torch():
    """Same group options (where both have them), same parameter indices, same state names."""
    values = initial_values(shapes=[(2,), (), (3,)])
    ours, theirs = ag_params(values), torch_params(values)
    opt = optim.Adam([dict(params=ours[:2]), dict(params=ours[2:], lr=0.1)], amsgrad=True)
    ref = torch.optim.Adam([dict(params=theirs[:2]), dict(params=theirs[2:], lr=0.1)], amsgrad=True)
    grads = gradient_stream(1, shapes=[(2,), (), (3,)], skip_every=0)[0]
    grads[1] = None
    set_grads(ours, grads)
    torch_set_grads(theirs, grads)
    opt.step()
    ref.step()
    ours_sd, ref_sd = opt.state_dict(), ref.state_dict()
    ours_indices = [g["params"] for g in ours_sd["param_groups"]]
    assert ours_indices == [g["params"] for g in ref_sd["param_groups"]] == [[0, 1], [2]]
    for g, rg in zip(ours_sd["param_groups"], ref_sd["param_groups"]):
        for key in g:
            assert g[key] == rg[key], key
    assert sorted(ours_sd["state"]) == sorted(ref_sd["state"]) == [0, 2]
    for idx in (0, 2):
        assert set(ours_sd["state"][idx]) == set(ref_sd["state"][idx])



def test_nadam_loads_torchs_state_dict_and_continues_like_torch():
    """torch keeps NAdam's mu_product (and step) in 0-d tensors; loading them gives numbers here."""
    theirs = torch_params(initial_values(seed=12))
    ref = torch_optimizer("NAdam", theirs, lr=0.01)
    grads = gradient_stream(12, seed=13, skip_every=0)
    for g in grads[:6]:
        torch_set_grads(theirs, g)
        ref.step()
    ours = ag_params([t.detach().numpy() for t in theirs])
    opt = optim.NAdam(ours, lr=0.01)
    opt.load_state_dict(ref.state_dict())
    assert opt.state[ours[0]]["mu_product"] == float(ref.state[theirs[0]]["mu_product"])
    for g in grads[6:]:
        set_grads(ours, g)
        torch_set_grads(theirs, g)
        opt.step()
        ref.step()
    assert_params_equal(ours, theirs)
