"""The GPU-free stand-in backend: a strict "other device" for testing device handling without a GPU.

These tests name devices explicitly (it is what they are about); the stand-in serves "cuda" inside
the ``cuda`` fixture and is removed afterwards unless the whole session runs on it.
"""
from __future__ import annotations

import copy
import math
import pickle

import numpy as np
import pytest

from xpgrad import autograd as ag
from xpgrad import backends
from xpgrad.backends.device import Device
from xpgrad.backends.testing import standin
from xpgrad.backends.testing.standin import StandinArray, StandinBackend, xp

IMPLICIT = "Implicit conversion to a NumPy array is not allowed"
MIXED = "host numpy.ndarray was mixed with a device array"


@pytest.fixture
def cuda():
    with standin.installed() as backend:
        yield backend


@pytest.fixture
def arr(cuda) -> StandinArray:
    return cuda.asarray(np.arange(6.0).reshape(2, 3))


# -- the array type -------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "convert",
    [np.asarray, np.array, float, int, complex, math.exp, lambda a: a.item(), lambda a: a.tolist(),
     lambda a: a.tobytes(), lambda a: [1, 2][a], lambda a: np.array([a, a])],
    ids=["np.asarray", "np.array", "float", "int", "complex", "math.exp", "item", "tolist", "tobytes", "index",
         "np.array-of-list"],
)
def test_implicit_conversion_to_host_is_refused(cuda, convert):
    one = cuda.asarray(np.array([1]))
    with pytest.raises(TypeError, match=IMPLICIT):
        convert(one)


def test_numpy_functions_and_ufuncs_refuse_device_arrays(arr):
    with pytest.raises(TypeError, match="NumPy functions work on host memory"):
        np.sum(arr)
    with pytest.raises(TypeError, match="NumPy functions work on host memory"):
        np.concatenate([arr, arr])
    with pytest.raises(TypeError, match="does not support ufuncs"):
        np.exp(arr)
    # Metadata is not data: these read no element.
    assert np.shape(arr) == (2, 3) and np.ndim(arr) == 2 and np.size(arr) == 6
    assert np.result_type(arr, np.float32) == np.float64


@pytest.mark.parametrize(
    "mix",
    [
        lambda a, h: a + h,
        lambda a, h: h + a,
        lambda a, h: a * h[0],  # a 1-d host array, not a scalar
        lambda a, h: a.__iadd__(h),
        lambda a, h: a @ h.T,
        lambda a, h: a == h,
        lambda a, h: xp.add(a, h),
        lambda a, h: xp.add(a, a, out=h),
        lambda a, h: xp.concatenate([a, h]),
        lambda a, h: xp.where(a > 0, a, h),
        lambda a, h: xp.asarray(h),
        lambda a, h: a[np.array([0, 1])],
        lambda a, h: a.__setitem__(0, h[0]),
        lambda a, h: xp.add.at(a, np.array([0, 0]), 1.0),
        lambda a, h: xp.add.at(h, 0, a),
        lambda a, h: a.sum(out=h),
    ],
)
def test_mixing_host_and_device_arrays_is_refused(arr, mix):
    host = np.ones((2, 3))
    with pytest.raises(TypeError, match=MIXED):
        mix(arr, host)


def test_numpy_scalars_and_python_numbers_mix_freely(arr):
    for other in (2, 2.0, np.float32(2), np.float64(2), np.int64(2)):
        assert isinstance(arr * other, StandinArray) and isinstance(other * arr, StandinArray)
    assert isinstance(arr + True, StandinArray)


def test_results_stay_on_the_device(arr, cuda):
    assert isinstance(arr.sum(), StandinArray) and arr.sum().shape == ()  # 0-d array, not a host scalar
    assert isinstance(arr[0, 1], StandinArray)
    assert all(isinstance(a, StandinArray) for a in xp.split(arr, 3, axis=1))
    assert all(isinstance(a, StandinArray) for a in arr.nonzero())
    assert isinstance(xp.linalg.norm(arr), StandinArray)
    np.testing.assert_array_equal(cuda.to_numpy(xp.exp(arr)), np.exp(np.arange(6.0).reshape(2, 3)))
    np.testing.assert_array_equal(cuda.to_numpy(arr.sum(axis=0, keepdims=True)), [[3.0, 5.0, 7.0]])
    np.testing.assert_array_equal(cuda.to_numpy(arr.var(axis=1, ddof=1)), [1.0, 1.0])


def test_in_place_ops_and_out_keep_identity(arr, cuda):
    out = xp.empty((2, 3))
    assert xp.multiply(arr, 2, out=out) is out
    a = arr.copy()
    same = a
    a += 1
    a *= 2
    assert a is same
    np.testing.assert_array_equal(cuda.to_numpy(a), (np.arange(6.0).reshape(2, 3) + 1) * 2)
    assert xp.asarray(a) is a


def test_indexing_and_assignment_with_device_indices(arr, cuda):
    idx = cuda.asarray(np.array([1, 1, 0]))
    np.testing.assert_array_equal(cuda.to_numpy(arr[idx, 0]), [3.0, 3.0, 0.0])
    b = arr.copy()
    b[b > 3] = 0.0
    b[0, idx[:1]] = cuda.asarray(np.array([9.0]))
    b[:, 0] = 7
    np.testing.assert_array_equal(cuda.to_numpy(b), [[7.0, 9.0, 2.0], [7.0, 0.0, 0.0]])


def test_scatter_add_accumulates_repeated_indices(cuda):
    target = xp.zeros(3)
    cuda.scatter_add(target, (cuda.asarray(np.array([0, 2, 0, 0])),), cuda.asarray(np.array([1.0, 2.0, 3.0, 4.0])))
    np.testing.assert_array_equal(cuda.to_numpy(target), [8.0, 0.0, 2.0])


def test_base_tells_views_from_owners(arr):
    assert arr.base is None
    assert arr.reshape(3, 2).base is not None
    assert arr.T.base is not None
    assert (arr + 1).base is None


def test_explicit_crossings_copy(cuda):
    host = np.arange(3.0)
    dev = cuda.asarray(host)
    host[0] = 100.0
    back = cuda.to_numpy(dev)
    assert back[0] == 0.0  # the device copy did not follow the host array
    back[1] = 100.0
    assert dev.get()[1] == 1.0  # nor does the host copy alias device memory
    assert cuda.asarray(dev) is dev
    assert cuda.asarray(dev, dtype=np.float32).dtype == np.float32
    with pytest.raises(TypeError):
        cuda.to_numpy(host)


def test_bool_of_one_element_is_allowed(cuda):
    assert bool(cuda.asarray(np.array([True])))
    with pytest.raises(ValueError, match="ambiguous"):
        bool(cuda.asarray(np.array([True, False])))


def test_xp_offers_only_what_cupy_offers(cuda):
    with pytest.raises(AttributeError, match="CuPy has no such function"):
        _ = xp.errstate
    with pytest.raises(AttributeError, match="manual_seed"):
        _ = xp.random
    assert xp.ndarray is StandinArray
    assert xp.float32 is np.float32 and xp.pi == np.pi
    with pytest.raises(TypeError, match="unsupported argument type list"):
        xp.add(cuda.asarray(np.ones(2)), [1.0, 2.0])  # CuPy's ufuncs take no Python sequences


def test_copy_and_pickle_round_trip(arr, cuda):
    for twin in (copy.copy(arr), copy.deepcopy(arr), pickle.loads(pickle.dumps(arr))):
        assert isinstance(twin, StandinArray)
        np.testing.assert_array_equal(twin.get(), arr.get())


# -- registration -------------------------------------------------------------------------------------------

def test_installed_serves_cuda_and_restores_what_was_there():
    was = standin.is_installed()
    with standin.installed() as backend:
        assert isinstance(backend, StandinBackend)
        assert Device("cuda").backend is backend
        assert Device("cuda:1").backend is backend
        assert "standin" in backends.available()
    assert standin.is_installed() == was
    if not was:
        assert "standin" not in backends.diagnose()
        try:
            served = Device("cuda").backend
        except RuntimeError:
            served = None  # no CuPy/GPU here: cuda is unusable again, as it should be
        assert not isinstance(served, StandinBackend)


def test_manual_seed_reproduces_draws_and_matches_cpu(cuda):
    ag.manual_seed(7)
    a = ag.randn(4, device="cuda").numpy()
    u = ag.rand(3, device="cuda", dtype=ag.float64).numpy()
    ag.manual_seed(7)
    np.testing.assert_array_equal(ag.randn(4, device="cuda").numpy(), a)
    np.testing.assert_array_equal(ag.rand(3, device="cuda", dtype=ag.float64).numpy(), u)
    ag.manual_seed(7)
    np.testing.assert_array_equal(ag.randn(4, device="cpu").numpy(), a)  # same stream as the CPU's
    perm = cuda.permutation(10, Device("cuda"))
    assert sorted(perm.get().tolist()) == list(range(10))


# -- tensors on the stand-in ----------------------------------------------------------------------------------

def test_op_mixing_cpu_and_cuda_tensors_names_both_devices(cuda):
    a = ag.tensor([1.0, 2.0], device="cpu")
    b = ag.tensor([1.0, 2.0], device="cuda")
    for op in (lambda: a + b, lambda: b * a, lambda: ag.matmul(a, b), lambda: ag.where(b > 0, a, b)):
        with pytest.raises(RuntimeError) as info:
            op()
        assert "cpu" in str(info.value) and "cuda:0" in str(info.value)


def test_raw_numpy_array_with_a_cuda_tensor_is_refused(cuda):
    b = ag.tensor([1.0, 2.0], device="cuda")
    with pytest.raises(RuntimeError, match="nothing is copied implicitly"):
        b + np.ones(2)


def test_to_cuda_and_back_with_gradients_across_moves(cuda):
    x = ag.tensor([1.0, -2.0, 3.0], device="cpu", requires_grad=True)
    y = x.to("cuda")
    assert str(y.device) == "cuda:0" and isinstance(y.data, StandinArray)
    z = (y * y).cpu()
    assert z.device == "cpu"
    w = ag.tensor([1.0, 2.0, 3.0], device="cpu").cuda()
    (z.sum() + (y * w).cpu().sum()).backward()
    assert x.grad.device == "cpu"
    np.testing.assert_allclose(x.grad.numpy(), 2 * np.array([1.0, -2.0, 3.0]) + [1.0, 2.0, 3.0])


def test_leaf_on_cuda_gets_a_cuda_gradient_through_cpu(cuda):
    x = ag.tensor([0.5, 1.5], device="cuda", requires_grad=True)
    ag.exp(x.cpu()).sum().backward()
    assert x.grad.device == "cuda" and isinstance(x.grad.data, StandinArray)
    np.testing.assert_allclose(x.grad.numpy(), np.exp([0.5, 1.5]), rtol=1e-6)


def test_second_order_through_device_moves(cuda):
    x = ag.tensor([0.3, -0.7], dtype=ag.float64, device="cpu", requires_grad=True)
    y = (x.cuda() ** 3).cpu().sum()
    (g,) = ag.grad(y, x, create_graph=True)
    (gg,) = ag.grad(g.sum(), x)
    np.testing.assert_allclose(g.numpy(), 3 * x.numpy() ** 2)
    np.testing.assert_allclose(gg.numpy(), 6 * x.numpy())


def test_cuda_tensor_reads_are_explicit_copies(cuda):
    t = ag.tensor([1.0, 2.0], device="cuda")
    host = t.numpy()
    host[0] = 50.0
    assert t.numpy()[0] == 1.0
    assert t[1].item() == 2.0 and float(t.sum()) == 3.0 and t.tolist() == [1.0, 2.0]
    assert "device='cuda:0'" in repr(t)


def test_gradients_accumulate_on_the_device(cuda):
    x = ag.tensor([1.0, 2.0], device="cuda", requires_grad=True)
    for _ in range(3):
        (x * 2).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [6.0, 6.0])
    with ag.no_grad():
        x.sub_(x.grad, alpha=0.5)
    np.testing.assert_array_equal(x.numpy(), [-2.0, -1.0])


def test_gradcheck_runs_on_the_stand_in(cuda):
    x = ag.tensor(np.array([[0.2, -0.4], [1.1, 0.3]]), device="cuda", requires_grad=True)
    assert ag.gradcheck(lambda a: (ag.tanh(a) * a[[0, 0, 1]].sum()).prod(axis=1), (x,))
    assert ag.gradgradcheck(lambda a: ag.logsumexp(a * a, axis=0), (x,))


# -- the hot path ---------------------------------------------------------------------------------------------

def test_training_steps_never_wait_for_the_host(cuda, monkeypatch):
    """Forward, backward, clipping and every optimizer's step run without a device->host read
    (no .item()/float()/numpy()/bool() of device data): on a GPU each would stall the stream."""
    from xpgrad import nn
    from xpgrad import optim

    reads = []
    real_to_numpy, real_bool = StandinBackend.to_numpy, StandinArray.__bool__

    def to_numpy(self, array):
        reads.append("to_numpy")
        return real_to_numpy(self, array)

    def as_bool(self):
        reads.append("bool")
        return real_bool(self)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(20, 8)
            self.lstm = nn.LSTM(8, 8, batch_first=True)
            self.norm = nn.LayerNorm(8)
            self.bn = nn.BatchNorm1d(8)
            self.drop = nn.Dropout(0.1)
            self.head = nn.Sequential(nn.Linear(8, 16), nn.GELU(), nn.Linear(16, 3))

        def forward(self, idx):
            h, _ = self.lstm(self.emb(idx))
            return self.head(self.drop(self.bn(self.norm(h[:, -1]))))

    ag.manual_seed(0)
    model = Net().to("cuda")
    x = ag.tensor(np.random.default_rng(0).integers(0, 20, (4, 5)), device="cuda")
    y = ag.tensor(np.array([0, 1, 2, 1]), device="cuda")
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    optimizers = [
        optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4),
        optim.Adam(model.parameters(), lr=1e-3, amsgrad=True, weight_decay=1e-4),
        optim.AdamW(model.parameters(), lr=1e-3),
        optim.RMSprop(model.parameters(), lr=1e-3, momentum=0.9, centered=True),
        optim.Adagrad(model.parameters(), lr=1e-2),
    ]
    monkeypatch.setattr(StandinBackend, "to_numpy", to_numpy)
    monkeypatch.setattr(StandinArray, "__bool__", as_bool)
    for opt in optimizers:
        for _ in range(2):
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
        assert reads == [], f"{type(opt).__name__}: a training step read device data on the host: {reads}"
    monkeypatch.undo()
    assert np.isfinite(loss.item())
