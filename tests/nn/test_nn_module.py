"""nn.Module and nn.Parameter: registration, traversal, modes, devices/dtypes, state dicts."""
import copy

import numpy as np
import pytest

from xpgrad import autograd as ag
from xpgrad import nn


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(ag.ones(3))
        self.fc = nn.Linear(3, 2)
        self.register_buffer("count", ag.zeros(1))
        self.register_buffer("scratch", ag.zeros(2), persistent=False)
        self.shift = nn.Parameter(ag.zeros(2))

    def forward(self, x):
        return self.fc(x * self.scale) + self.shift


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.first = Block()
        self.act = nn.ReLU()
        self.second = nn.Linear(2, 4)

    def forward(self, x):
        return self.second(self.act(self.first(x)))


def _snapshot(module):
    return {k: v.numpy().copy() for k, v in module.state_dict().items()}


def test_parameter_is_a_leaf_tensor_sharing_data():
    t = ag.randn(2, 3)
    p = nn.Parameter(t)
    assert isinstance(p, ag.Tensor) and isinstance(p, nn.Parameter)
    assert p.requires_grad and p.is_leaf and p.grad_fn is None
    assert p.data is t.data
    assert not nn.Parameter(t, requires_grad=False).requires_grad
    assert "Parameter containing" in repr(p)
    y = (p * 2).sum()
    assert type(p * 2) is ag.Tensor
    y.backward()
    np.testing.assert_array_equal(p.grad.numpy(), 2.0)
    with pytest.raises(TypeError):
        nn.Parameter(ag.tensor([1, 2]))  # integer tensors cannot require grad


def test_registration_order_and_names():
    net = Net()
    assert [n for n, _ in net.named_parameters()] == [
        "first.scale", "first.shift", "first.fc.weight", "first.fc.bias", "second.weight", "second.bias",
    ]
    assert [n for n, _ in net.named_buffers()] == ["first.count", "first.scratch"]
    assert [n for n, _ in net.named_children()] == ["first", "act", "second"]
    assert [n for n, _ in net.named_modules()] == ["", "first", "first.fc", "act", "second"]
    assert list(net.children())[0] is net.first
    assert len(list(net.modules())) == 5
    assert [n for n, _ in net.first.named_parameters(recurse=False)] == ["scale", "shift"]
    assert len(list(net.parameters())) == 6 and len(list(net.buffers())) == 2
    assert net.get_submodule("first.fc") is net.first.fc


def test_state_dict_holds_parameters_and_persistent_buffers_in_order():
    net = Net()
    sd = net.state_dict()
    assert list(sd) == [
        "first.scale", "first.shift", "first.count", "first.fc.weight", "first.fc.bias", "second.weight",
        "second.bias",
    ]
    for v in sd.values():
        assert type(v) is ag.Tensor and not v.requires_grad
    assert sd["first.fc.weight"].data is net.first.fc.weight.data  # shares memory, like PyTorch
    assert net.state_dict(keep_vars=True)["first.scale"] is net.first.scale


def test_shared_parameters_and_modules_are_listed_once():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(3, 3)
            self.b = self.a
            self.w = self.a.weight

    m = Tied()
    assert len(list(m.parameters())) == 2
    assert [n for n, _ in m.named_modules()] == ["", "a"]
    assert list(m.state_dict()) == ["w", "a.weight", "a.bias", "b.weight", "b.bias"]


def test_reassignment_moves_between_registries_and_none_is_allowed():
    m = Block()
    m.fc = None
    assert "fc" in m._modules and m.fc is None
    assert [n for n, _ in m.named_parameters()] == ["scale", "shift"]
    m.scale = None
    assert "scale" not in dict(m.named_parameters())
    with pytest.raises(TypeError, match="Parameter"):
        m.shift = ag.zeros(2)
    m.count = ag.ones(1)  # buffers may be replaced by tensors
    assert m.count.numpy()[0] == 1
    with pytest.raises(TypeError, match="buffer"):
        m.count = 3
    m.plain = ag.zeros(1)  # a plain tensor attribute is not registered
    assert "plain" not in dict(m.named_buffers())
    del m.shift
    assert "shift" not in dict(m.named_parameters())
    with pytest.raises(AttributeError):
        m.shift


def test_assigning_before_init_and_bad_names():
    class Forgot(nn.Module):
        def __init__(self):
            self.w = nn.Parameter(ag.zeros(1))

    with pytest.raises(AttributeError, match="super"):
        Forgot()
    m = nn.Module()
    with pytest.raises(KeyError, match=r"\."):
        m.register_buffer("a.b", ag.zeros(1))
    with pytest.raises(KeyError, match="already exists"):
        m.register_parameter("training", None)
    with pytest.raises(TypeError):
        m.register_parameter("p", ag.zeros(1))
    with pytest.raises(TypeError):
        m.add_module("m", object())
    with pytest.raises(NotImplementedError):
        m(1)


def test_train_eval_propagate_and_are_independent_of_grad_mode():
    net = nn.Sequential(nn.Linear(2, 2), nn.Sequential(nn.Dropout(0.5)))
    assert all(m.training for m in net.modules())
    assert net.eval() is net
    assert not any(m.training for m in net.modules())
    assert ag.is_grad_enabled()
    x = ag.randn(3, 2)
    out = net(x)
    assert out.requires_grad  # eval does not stop gradients
    net.train()
    assert all(m.training for m in net.modules())
    with ag.no_grad():
        assert net.training
    with pytest.raises(ValueError):
        net.train("yes")


def test_zero_grad_to_none_or_zeros():
    m = nn.Linear(3, 2)
    m(ag.randn(4, 3)).sum().backward()
    w_grad = m.weight.grad
    m.zero_grad(set_to_none=False)
    assert m.weight.grad is w_grad
    np.testing.assert_array_equal(m.weight.grad.numpy(), 0.0)
    m.zero_grad()
    assert m.weight.grad is None and m.bias.grad is None


def test_apply_and_requires_grad():
    net = Net()
    seen = []
    assert net.apply(lambda mod: seen.append(type(mod).__name__)) is net
    assert seen == ["Linear", "Block", "ReLU", "Linear", "Net"]
    net.requires_grad_(False)
    assert not any(p.requires_grad for p in net.parameters())


def test_repr_nests_like_pytorch():
    text = repr(Net())
    assert text.startswith("Net(\n  (first): Block(\n    (fc): Linear(in_features=3, out_features=2, bias=True)\n  )")
    assert "(act): ReLU()" in text
    assert repr(nn.Linear(2, 3, bias=False)) == "Linear(in_features=2, out_features=3, bias=False)"


def test_to_dtype_casts_in_place_and_keeps_parameter_objects():
    net = Net()
    held = list(net.parameters())  # what an optimizer holds
    net(ag.randn(2, 3)).sum().backward()
    before = _snapshot(net)
    assert net.to(ag.float64) is net
    assert [id(p) for p in net.parameters()] == [id(p) for p in held]
    for p in held:
        assert p.dtype == np.float64 and p.requires_grad and p.is_leaf
        assert p.grad.dtype == np.float64
    for k, v in net.state_dict().items():
        np.testing.assert_allclose(v.numpy(), before[k], rtol=1e-7)
    assert net.first.count.dtype == np.float64
    out = net(ag.tensor(np.ones((2, 3))))
    assert out.dtype == np.float64
    net.float()
    assert all(p.dtype == np.float32 for p in held)


def test_to_keeps_integer_buffers_and_moves_to_the_same_device():
    bn = nn.BatchNorm1d(3)
    bn.to(ag.float64)
    assert bn.num_batches_tracked.dtype == np.int64
    assert bn.running_mean.dtype == np.float64
    device = bn.weight.device
    assert bn.to(device) is bn and bn.weight.device is device
    with pytest.raises(TypeError):
        bn.to(ag.int32)


def test_to_invalidates_graphs_that_saved_the_old_values():
    m = nn.Linear(2, 1)
    y = (m.weight * m.weight).sum()
    m.to(ag.float64)
    with pytest.raises(RuntimeError, match="modified"):
        y.backward()


def test_load_state_dict_copies_in_place_converting_dtype():
    src, dst = Net(), Net()
    held = list(dst.parameters())
    data_arrays = [p.data for p in held]
    sd = {k: v.astype(ag.float64) for k, v in src.state_dict().items()}
    result = dst.load_state_dict(sd)
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert [id(p) for p in dst.parameters()] == [id(p) for p in held]
    assert all(p.data is d for p, d in zip(held, data_arrays))  # the very same arrays, overwritten
    for k, v in dst.state_dict().items():
        assert v.dtype == np.float32
        np.testing.assert_allclose(v.numpy(), src.state_dict()[k].numpy())
    x = ag.randn(2, 3)
    np.testing.assert_allclose(dst(x).numpy(), src(x).numpy(), rtol=1e-6)


def test_load_state_dict_accepts_numpy_arrays():
    src, dst = nn.Linear(2, 3), nn.Linear(2, 3)
    dst.load_state_dict({k: v.numpy() for k, v in src.state_dict().items()})
    np.testing.assert_array_equal(dst.weight.numpy(), src.weight.numpy())


def test_load_state_dict_reports_every_problem_and_changes_nothing():
    net = Net()
    before = _snapshot(net)
    sd = Net().state_dict()
    del sd["second.bias"]
    sd["first.fc.weight"] = ag.zeros(3, 2)
    sd["extra.weight"] = ag.zeros(1)
    sd["first.count"] = "oops"
    with pytest.raises(ValueError) as info:
        net.load_state_dict(sd)
    msg = str(info.value)
    assert "missing" in msg and "'second.bias'" in msg
    assert "unexpected" in msg and "'extra.weight'" in msg
    assert "'first.fc.weight'" in msg and "(3, 2)" in msg and "(2, 3)" in msg
    assert "'first.count'" in msg and "str" in msg
    after = _snapshot(net)
    assert all(np.array_equal(before[k], after[k]) for k in before)


def test_load_state_dict_non_strict_ignores_key_sets_but_not_shapes():
    net = Net()
    other = Net()
    sd = other.state_dict()
    del sd["second.bias"]
    sd["unused"] = ag.zeros(2)
    result = net.load_state_dict(sd, strict=False)
    assert result.missing_keys == ["second.bias"] and result.unexpected_keys == ["unused"]
    np.testing.assert_array_equal(net.second.weight.numpy(), other.second.weight.numpy())
    before = _snapshot(net)
    sd["second.weight"] = ag.zeros(5, 5)
    sd["first.scale"] = ag.full((3,), 7.0)
    with pytest.raises(ValueError, match=r"\(5, 5\).*\(4, 2\)"):
        net.load_state_dict(sd, strict=False)
    assert np.array_equal(_snapshot(net)["first.scale"], before["first.scale"])


def test_load_state_dict_keeps_an_optimizer_working():
    from xpgrad import optim

    model = nn.Linear(2, 1)
    opt = optim.SGD(model.parameters(), lr=0.1)
    model.load_state_dict({"weight": ag.tensor([[1.0, 2.0]]), "bias": ag.tensor([0.5])})
    model.to(ag.float64)
    model(ag.tensor(np.ones((1, 2)))).sum().backward()
    opt.step()
    np.testing.assert_allclose(model.weight.numpy(), [[0.9, 1.9]], rtol=1e-12)
    np.testing.assert_allclose(model.bias.numpy(), [0.4], rtol=1e-12)


def test_manual_update_through_held_parameters_after_load_and_to():
    model = nn.Linear(2, 1)
    held = list(model.parameters())
    model.load_state_dict({"weight": ag.tensor([[1.0, 2.0]]), "bias": ag.tensor([0.5])})
    model.to(ag.float64)
    model(ag.tensor(np.ones((1, 2)))).sum().backward()
    with ag.no_grad():
        for p in held:
            p.sub_(p.grad * 0.1)
    np.testing.assert_allclose(model.weight.numpy(), [[0.9, 1.9]], rtol=1e-12)
    np.testing.assert_allclose(model(ag.tensor(np.ones((1, 2)))).numpy(), [[0.9 + 1.9 + 0.4]], rtol=1e-12)


def test_deepcopy_gives_independent_parameters():
    net = Net()
    twin = copy.deepcopy(net)
    assert isinstance(twin.first.scale, nn.Parameter) and twin.first.scale.requires_grad
    assert twin.first.scale is not net.first.scale
    with ag.no_grad():
        twin.first.scale.fill_(5.0)
    np.testing.assert_array_equal(net.first.scale.numpy(), 1.0)
    x = ag.randn(2, 3)
    with ag.no_grad():
        net.first.scale.fill_(5.0)
    np.testing.assert_allclose(twin(x).numpy(), net(x).numpy())


def test_to_device_moves_parameters_buffers_and_grads_in_place():
    home = ag.zeros(1).device  # the suite's device ("cpu", or "cuda" on the stand-in)
    bn = nn.BatchNorm1d(2)
    bn(ag.randn(4, 2)).sum().backward()
    held = list(bn.parameters())
    bn.to("cpu")
    assert all(str(t.device) == "cpu" for t in list(bn.parameters()) + list(bn.buffers()))
    assert all(str(p.grad.device) == "cpu" for p in held)
    assert [id(p) for p in bn.parameters()] == [id(p) for p in held]
    out = bn(ag.tensor(np.ones((3, 2), dtype=np.float32), device="cpu"))
    assert str(out.device) == "cpu"
    bn.to(home)
    assert all(t.device is home for t in list(bn.parameters()) + list(bn.buffers()))
    assert bn.num_batches_tracked.item() == 2


def test_assigning_a_tensor_to_parameter_data_raises_naming_the_fix():
    p = nn.Parameter(ag.tensor([1.0, 2.0]))
    with pytest.raises(TypeError, match=r"p\.data = other\.data.*p\.copy_\(other\)"):
        p.data = ag.tensor([3.0, 4.0])
    assert p.tolist() == [1.0, 2.0]
    p.data = ag.tensor([5.0, 6.0]).data  # an array is the supported spelling
    assert p.tolist() == [5.0, 6.0]
