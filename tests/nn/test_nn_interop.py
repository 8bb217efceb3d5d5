"""State dicts holding torch tensors: ``Module.load_state_dict`` and ``Optimizer.load_state_dict``."""
import decimal

import numpy as np
import pytest
import torch

from xpgrad import autograd as ag
from xpgrad import nn, optim


class _FakeCudaTensor:
    """Exports DLPack from cuda:0 (a torch CUDA tensor as seen from a machine without CuPy)."""

    shape = (2,)

    def __dlpack_device__(self):
        return (2, 0)

    def __dlpack__(self, **kwargs):
        raise AssertionError("must not be read")


def _pair(seed=0):
    torch.manual_seed(seed)
    ag.manual_seed(seed + 1)
    return torch.nn.Linear(5, 3), nn.Linear(5, 3)


@pytest.mark.parametrize("keep_vars", [False, True])  # keep_vars=True: the values require grad
def test_load_torch_linear_state_dict_gives_identical_parameters_and_outputs(keep_vars):
    tl, m = _pair()
    result = m.load_state_dict(tl.state_dict(keep_vars=keep_vars))
    assert result.missing_keys == [] and result.unexpected_keys == []
    for name, p in m.named_parameters():
        ref = getattr(tl, name).detach().numpy()
        np.testing.assert_array_equal(p.numpy(), ref)  # bit for bit
        assert isinstance(p, nn.Parameter) and p.requires_grad
    x = np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32)
    ours = m(ag.tensor(x)).numpy()
    theirs = tl(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-6)


def test_loaded_values_are_copies_not_views_of_the_torch_tensors():
    tl, m = _pair()
    m.load_state_dict(tl.state_dict())
    with torch.no_grad():
        tl.weight.zero_()
    assert np.abs(m.weight.numpy()).sum() > 0


def test_torch_float64_state_dict_is_cast_to_the_parameter_dtype():
    tl, m = _pair()
    tl = tl.double()
    m.load_state_dict(tl.state_dict())
    assert m.weight.dtype == np.float32
    np.testing.assert_allclose(m.weight.numpy(), tl.weight.detach().numpy().astype(np.float32))


def test_mis_shaped_torch_tensor_is_reported_and_nothing_loads():
    tl, m = _pair()
    before = m.weight.numpy().copy()
    sd = tl.state_dict()
    sd["weight"] = torch.zeros(5, 3)
    with pytest.raises(ValueError, match=r"'weight': shape mismatch.*\(5, 3\).*\(3, 5\)"):
        m.load_state_dict(sd)
    np.testing.assert_array_equal(m.weight.numpy(), before)


def test_unloadable_values_name_their_type_precisely():
    m = nn.Linear(2, 1)
    with pytest.raises(ValueError) as info:
        m.load_state_dict({"weight": decimal.Decimal(1), "bias": [0.0]})
    msg = str(info.value)
    assert "got decimal.Decimal" in msg and "got list" in msg


def test_torch_cuda_tensor_without_a_usable_cuda_backend_is_reported_clearly():
    m = nn.Linear(2, 1)
    sd = {"weight": torch.zeros(1, 2), "bias": _FakeCudaTensor()}
    with pytest.raises(ValueError, match=r"'bias': .*_FakeCudaTensor lives on cuda:0"):
        m.load_state_dict(sd)


def test_adam_state_from_torch_continues_the_same_trajectory():
    tl, m = _pair()
    m.load_state_dict(tl.state_dict())
    rng = np.random.default_rng(1)
    xs = [rng.standard_normal((4, 5)).astype(np.float32) for _ in range(2)]
    topt = torch.optim.Adam(tl.parameters(), lr=0.01)
    opt = optim.Adam(m.parameters(), lr=0.01)

    (tl(torch.from_numpy(xs[0])) ** 2).sum().backward()
    topt.step()
    # Carry the torch model and optimizer over after one step, then take a second step on both.
    m.load_state_dict(tl.state_dict())
    opt.load_state_dict(topt.state_dict())
    assert opt.state[m.weight]["step"] == 1
    topt.zero_grad()
    (tl(torch.from_numpy(xs[1])) ** 2).sum().backward()
    topt.step()
    opt.zero_grad()
    (m(ag.tensor(xs[1])) ** 2).sum().backward()
    opt.step()
    for name, p in m.named_parameters():
        np.testing.assert_allclose(p.numpy(), getattr(tl, name).detach().numpy(), rtol=1e-5, atol=1e-6)


def test_optimizer_state_with_a_mis_shaped_torch_tensor_raises_value_error():
    m = nn.Linear(2, 1)
    opt = optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
    sd = opt.state_dict()
    sd["state"] = {0: {"momentum_buffer": torch.zeros(3)}}
    with pytest.raises(ValueError, match=r"momentum_buffer.*\(3,\)"):
        opt.load_state_dict(sd)
    sd["state"] = {0: {"momentum_buffer": _FakeCudaTensor()}}
    with pytest.raises(ValueError, match=r"_FakeCudaTensor lives on cuda:0"):
        opt.load_state_dict(sd)
