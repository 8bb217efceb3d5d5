"""Interop with other array libraries: DLPack both ways (torch, NumPy; CuPy/JAX when installed),
``np.asarray(t)`` and ``ag.tensor`` of foreign tensors."""
import importlib.util

import numpy as np
import pytest
import torch

from xpgrad import autograd as ag
from xpgrad.backends.testing import standin

HAVE_CUPY = importlib.util.find_spec("cupy") is not None
HAVE_JAX = importlib.util.find_spec("jax") is not None

DTYPES = [(np.float32, torch.float32), (np.float64, torch.float64), (np.int64, torch.int64), (np.bool_, torch.bool)]


class _FakeExport:
    """An object exporting DLPack from a device xpgrad may not read (the capsule is never produced)."""

    def __init__(self, dev_type, dev_id=0):
        self._dev = (dev_type, dev_id)
        self.shape = (2,)

    def __dlpack_device__(self):
        return self._dev

    def __dlpack__(self, **kwargs):
        raise AssertionError("must not be read: the device is refused first")


# -- DLPack: our tensors into torch and NumPy ----------------------------------------------------------

@pytest.mark.parametrize("np_dtype,torch_dtype", DTYPES)
def test_torch_from_dlpack_shares_memory_both_ways(np_dtype, torch_dtype):
    t = ag.tensor(np.array([1, 0, 1], dtype=np_dtype), device="cpu")
    tt = torch.from_dlpack(t)
    assert tt.dtype == torch_dtype and tt.shape == (3,) and tt.device.type == "cpu"
    tt[1] = 1  # write through torch, read here
    assert t.numpy()[1] == 1
    t.data[0] = 0  # write here, read through torch
    assert not bool(tt[0])


def test_np_from_dlpack_shares_memory_and_device_is_cpu():
    t = ag.arange(6.0, device="cpu").reshape(2, 3)
    assert t.__dlpack_device__() == (1, 0)
    a = np.from_dlpack(t)
    assert a.shape == (2, 3) and np.shares_memory(a, t.data)
    a[1, 2] = -1.0
    assert t.numpy()[1, 2] == -1.0


def test_non_contiguous_tensor_exports_with_its_strides():
    t = ag.arange(6.0, device="cpu").reshape(2, 3).T
    tt = torch.from_dlpack(t)
    np.testing.assert_array_equal(tt.numpy(), t.numpy())
    tt[2, 1] = 100.0
    assert t.numpy()[2, 1] == 100.0


def test_export_refuses_tensors_that_require_grad_as_torch_does():
    x = ag.tensor([1.0, 2.0], device="cpu", requires_grad=True)
    for obj in (x, x * 2):  # a leaf and a graph output
        with pytest.raises(BufferError, match=r"detach\(\)"):
            torch.from_dlpack(obj)
        with pytest.raises(BufferError, match=r"detach\(\)"):
            ag.from_dlpack(obj)
    tt = torch.from_dlpack(x.detach())  # the fix the message names
    tt[0] = 5.0
    assert x.numpy()[0] == 5.0
    # torch refuses the same for its own tensors
    with pytest.raises(BufferError, match=r"detach\(\)"):
        torch.ones(1, requires_grad=True).__dlpack__()


def test_dlpack_keyword_arguments_are_forwarded():
    t = ag.tensor([1.0, 2.0], device="cpu")
    cap = t.__dlpack__(stream=None, max_version=(1, 0))
    assert type(cap).__name__ == "PyCapsule"
    b = np.from_dlpack(t, copy=True)  # NumPy asks the producer for a copy
    assert not np.shares_memory(b, t.data)


# -- DLPack: foreign tensors into xpgrad -------------------------------------------------------------------

@pytest.mark.parametrize("np_dtype,torch_dtype", DTYPES)
def test_from_dlpack_of_a_torch_tensor_shares_memory(np_dtype, torch_dtype):
    src = torch.tensor([1, 0, 1], dtype=torch_dtype)
    t = ag.from_dlpack(src)
    assert isinstance(t, ag.Tensor) and t.device == "cpu" and t.dtype == np_dtype
    assert not t.requires_grad and t.grad_fn is None
    src[1] = 1
    assert t.numpy()[1] == 1
    t.data[0] = 0
    assert not bool(src[0])


def test_from_dlpack_of_a_strided_torch_view_and_numpy_array():
    base = torch.arange(12.0).reshape(3, 4)
    view = base[:, 1::2]
    t = ag.from_dlpack(view)
    np.testing.assert_array_equal(t.numpy(), view.numpy())
    base[2, 3] = -7.0
    assert t.numpy()[2, 1] == -7.0
    a = np.arange(3.0)
    u = ag.from_dlpack(a)
    assert np.shares_memory(u.data, a) and u.dtype == np.float64


def test_from_dlpack_result_takes_part_in_autograd():
    t = ag.from_dlpack(torch.tensor([1.0, 2.0, 3.0]))
    t.requires_grad_(True)
    (t * t).sum().backward()
    np.testing.assert_allclose(t.grad.numpy(), [2.0, 4.0, 6.0])


def test_from_dlpack_refuses_a_torch_tensor_that_requires_grad_naming_detach():
    src = torch.ones(2, requires_grad=True)
    with pytest.raises(BufferError, match=r"torch\.Tensor.*detach\(\)"):
        ag.from_dlpack(src)
    assert ag.from_dlpack(src.detach()).shape == (2,)


def test_from_dlpack_of_our_tensor_shares_memory():
    t = ag.tensor([1.0, 2.0])
    u = ag.from_dlpack(t)
    assert u.data is t.data and u.device is t.device and not u.requires_grad


def test_from_dlpack_rejects_objects_without_dlpack_naming_the_type():
    with pytest.raises(TypeError, match=r"got list"):
        ag.from_dlpack([1.0, 2.0])
    with pytest.raises(TypeError, match=r"no backend for"):
        ag.from_dlpack(_FakeExport(8))  # kDLMetal


@pytest.mark.skipif(HAVE_CUPY, reason="checks the message shown when CuPy is missing")
def test_from_dlpack_of_cuda_memory_without_cupy_names_the_install():
    if standin.is_installed():
        pytest.skip("cuda is served by the stand-in in this run")
    with pytest.raises(RuntimeError, match=r'pip install "xpgrad\[cuda12\]"'):
        ag.from_dlpack(_FakeExport(2, 0))


def test_from_dlpack_of_cuda_memory_on_the_stand_in_is_refused_clearly():
    with standin.installed():
        with pytest.raises(TypeError, match=r"'standin' backend.*only CuPy"):
            ag.from_dlpack(_FakeExport(2, 0))


def test_stand_in_device_refuses_dlpack_export():
    with standin.installed():
        t = ag.tensor([1.0, 2.0], device="cuda")
        assert t.__dlpack_device__() == (2, 0)
        with pytest.raises(BufferError, match=r"t\.cpu\(\)"):
            t.__dlpack__()
        with pytest.raises(BufferError, match=r"stand-in"):
            np.from_dlpack(t)
        u = ag.from_dlpack(t)  # our own tensor: shared on its device, no host trip
        assert u.data is t.data and u.device == "cuda"


@pytest.mark.skipif(not HAVE_CUPY, reason="CuPy is not installed")
@pytest.mark.gpu
def test_cupy_round_trip_shares_device_memory():
    import cupy

    a = cupy.arange(4.0)
    t = ag.from_dlpack(a)
    assert t.device == "cuda:0" and t.data.data.ptr == a.data.ptr
    b = cupy.from_dlpack(t)
    b[0] = 9.0
    assert float(a[0]) == 9.0


@pytest.mark.skipif(not HAVE_JAX, reason="JAX is not installed")
def test_jax_array_round_trip():
    import jax.numpy as jnp

    a = jnp.arange(4.0)
    t = ag.from_dlpack(a)
    assert t.device == "cpu"
    np.testing.assert_array_equal(t.numpy(), np.asarray(a))
    np.testing.assert_array_equal(ag.tensor(a, device="cpu").numpy(), np.asarray(a))


# -- np.asarray(t) ------------------------------------------------------------------------------------------

def test_asarray_shares_memory_and_follows_numpy2_copy_rules():
    t = ag.tensor([1.0, 2.0, 3.0], device="cpu")
    a = np.asarray(t)
    assert a.dtype == np.float32 and np.shares_memory(a, t.data)
    assert np.shares_memory(np.asarray(t, dtype=np.float32), t.data)
    assert not np.shares_memory(np.array(t), t.data)  # np.array copies by default
    assert not np.shares_memory(np.asarray(t, copy=True), t.data)
    b = np.asarray(t, dtype=np.float64)
    assert b.dtype == np.float64 and not np.shares_memory(b, t.data)
    assert np.shares_memory(np.asarray(t, copy=False), t.data)
    with pytest.raises(ValueError):
        np.asarray(t, dtype=np.float64, copy=False)
    x = ag.tensor([1.0], device="cpu", requires_grad=True)  # as t.numpy(): the values, without the graph
    np.testing.assert_array_equal(np.asarray(x * 2), [2.0])


def test_asarray_of_a_device_tensor_raises_naming_the_explicit_copy():
    with standin.installed():
        t = ag.tensor([1.0, 2.0], device="cuda")
        with pytest.raises(TypeError, match=r"t\.cpu\(\) or t\.numpy\(\)"):
            np.asarray(t)
        with pytest.raises(TypeError, match=r"t\.cpu\(\)"):
            np.array([t, t])


def test_numpy_operands_still_defer_to_tensors():
    t = ag.tensor([1.0, 2.0], device="cpu")
    for out in (np.ones(2) + t, np.ones(2) * t, np.float64(2.0) * t, np.ones(2) - t):
        assert isinstance(out, ag.Tensor)
    np.testing.assert_allclose((np.ones(2) - t).numpy(), [0.0, -1.0])
    with pytest.raises(TypeError):
        np.exp(t)  # NumPy ufuncs stay refused (use ag.exp)


def test_lists_of_scalar_tensors_build_a_tensor():
    t = ag.tensor([ag.tensor(1.0, device="cpu"), ag.tensor(2.0, device="cpu")], device="cpu")
    np.testing.assert_array_equal(t.numpy(), [1.0, 2.0])
    assert torch.tensor([torch.tensor(1.0), torch.tensor(2.0)]).tolist() == t.tolist()


# -- ag.tensor of foreign tensors ------------------------------------------------------------------------------

@pytest.mark.parametrize("np_dtype,torch_dtype", DTYPES)
def test_tensor_of_a_torch_tensor_copies_and_keeps_the_dtype(np_dtype, torch_dtype, test_device):
    src = torch.tensor([[1, 0], [0, 1]], dtype=torch_dtype)
    t = ag.tensor(src)
    assert t.dtype == np_dtype and t.device == test_device  # torch.tensor(np.float64 array) keeps float64 too
    np.testing.assert_array_equal(t.numpy(), src.numpy())
    src[0, 0] = 0
    assert t.numpy()[0, 0] == 1  # a copy


def test_tensor_of_a_torch_tensor_casts_and_copies_on_cpu():
    src = torch.arange(3.0, dtype=torch.float64)
    t = ag.tensor(src, dtype=ag.float32, device="cpu")
    assert t.dtype == np.float32
    t2 = ag.tensor(src, device="cpu")
    assert not np.shares_memory(t2.data, src.numpy())


def test_tensor_of_a_torch_tensor_that_requires_grad_copies_its_values():
    src = torch.tensor([1.0, 2.0], requires_grad=True)
    t = ag.tensor(src * 3, device="cpu", requires_grad=True)
    np.testing.assert_array_equal(t.numpy(), [3.0, 6.0])
    assert t.requires_grad and t.grad_fn is None


def test_tensor_of_foreign_device_memory_for_another_device_names_the_move():
    with pytest.raises(RuntimeError, match=r"_FakeExport lives on cuda:1 .*cpu.*x\.cpu\(\).*device='cuda:1'"):
        ag.tensor(_FakeExport(2, 1), device="cpu")


def test_tensor_of_a_host_torch_tensor_is_uploaded_to_the_stand_in():
    with standin.installed():
        t = ag.tensor(torch.tensor([1.5, 2.5]), device="cuda")
        assert t.device == "cuda"
        np.testing.assert_array_equal(t.numpy(), [1.5, 2.5])
