"""The optimizers' work arrays: views into one buffer per device and dtype, made once per parameter and
reused by later steps, remade when the parameter's layout changes or the buffer grows. Steps through
reused views must equal torch's (the update math never sees which views it got)."""
import numpy as np
import pytest
from optim_testing import CONFIGS, ag_params, config_id, gradient_stream, initial_values, make, set_grads

from xpgrad import autograd as ag
from xpgrad import optim

ALL = ["SGD", "Adam", "AdamW", "RMSprop", "Adagrad"]


@pytest.mark.parametrize("name", ALL)
def test_views_are_made_once_per_parameter_and_fit_it(name):
    params = ag_params(initial_values(shapes=[(3, 4), (5,), ()]))
    opt = make(name, params, lr=0.1)
    set_grads(params, [np.ones(p.shape) for p in params])
    opt.step()
    views = [opt._scratch_for(p) for p in params]
    opt.step()
    for p, mine in zip(params, views):
        again = opt._scratch_for(p)
        assert again is mine
        assert all(v.shape == p.shape and v.dtype == p.data.dtype for v in mine)


def test_views_follow_a_parameter_whose_dtype_or_shape_changed():
    p = ag.tensor(np.ones((2, 3)), requires_grad=True)
    opt = optim.SGD([p], lr=0.5)
    set_grads([p], [np.ones((2, 3))])
    opt.step()
    p.data = p.data.astype(np.float32)
    set_grads([p], [np.full((2, 3), 2.0)])
    opt.step()  # no state, so the converted parameter is fine; the work arrays must follow it
    assert p.data.dtype == np.float32 and all(v.dtype == np.float32 for v in opt._scratch_for(p))
    np.testing.assert_array_equal(p.numpy(), np.full((2, 3), -0.5, np.float32))
    p.data = p.data[:1]
    set_grads([p], [np.full((1, 3), 1.0)])
    opt.step()
    assert all(v.shape == (1, 3) for v in opt._scratch_for(p))
    np.testing.assert_array_equal(p.numpy(), np.full((1, 3), -1.0, np.float32))


def test_a_larger_parameter_grows_the_buffer_and_the_others_get_new_views():
    small = ag.tensor(np.ones(3), requires_grad=True)
    opt = optim.SGD([small], lr=0.5)
    set_grads([small], [np.ones(3)])
    opt.step()
    old = opt._scratch_for(small)
    big = ag.tensor(np.ones(50), requires_grad=True)
    opt.add_param_group({"params": [big], "lr": 0.25})
    set_grads([small, big], [np.ones(3), np.ones(50)])
    opt.step()
    (buffer,) = opt._scratch.values()
    assert buffer.size >= 2 * 50
    new = opt._scratch_for(small)
    assert new is not old and new[0].shape == (3,)
    np.testing.assert_array_equal(small.numpy(), np.zeros(3))
    np.testing.assert_array_equal(big.numpy(), np.full(50, 0.75))


@pytest.mark.parametrize("config", CONFIGS, ids=config_id)
def test_steps_with_a_group_added_midway_match_torch(config):
    """Views reused across steps and remade when the buffer grows give torch's numbers."""
    torch = pytest.importorskip("torch")
    name, kwargs = config
    small_shapes, big_shapes = [(2, 3), ()], [(6, 5), (4,)]
    values = initial_values(seed=3, shapes=small_shapes + big_shapes)
    ours = ag_params(values)
    theirs = [torch.tensor(np.array(v), requires_grad=True) for v in values]
    opt = make(name, ours[:2], **kwargs)
    ref = getattr(torch.optim, name)(theirs[:2], foreach=False, **kwargs)
    stream = gradient_stream(12, seed=4, shapes=small_shapes + big_shapes)
    for step, grads in enumerate(stream):
        if step == 5:  # larger parameters arrive: the shared buffer grows
            opt.add_param_group({"params": ours[2:]})
            ref.add_param_group({"params": theirs[2:]})
        n = 2 if step < 5 else 4
        set_grads(ours[:n], grads[:n])
        for t, g in zip(theirs[:n], grads[:n]):
            t.grad = None if g is None else torch.tensor(np.array(g))
        opt.step()
        ref.step()
        for i, (p, t) in enumerate(zip(ours, theirs)):
            np.testing.assert_allclose(p.numpy(), t.detach().numpy(), rtol=0, atol=1e-10,
                                       err_msg=f"parameter {i} after step {step + 1}")
