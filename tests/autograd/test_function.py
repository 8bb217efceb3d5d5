"""Custom ops with ag.Function: the contract's Cube, saved tensors, several outputs, None
gradients, needs_input_grad, once-differentiable backwards, gradcheck on custom ops."""
import numpy as np
import pytest

from xpgrad import autograd as ag


def leaf(values):
    return ag.tensor(np.asarray(values, dtype=np.float64), requires_grad=True)


class Cube(ag.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.data ** 3

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return 3 * x * x * grad


class RawCube(ag.Function):
    """Backward on raw arrays: right for first order, not differentiable again."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.data ** 3

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return 3 * x.data ** 2 * grad.data


def test_cube_forward_backward():
    x = leaf([1.0, -2.0, 0.5])
    y = Cube.apply(x)
    assert isinstance(y, ag.Tensor) and y.requires_grad
    assert type(y.grad_fn).__name__ == "Context" and y.grad_fn.fn is Cube
    assert "Cube" in repr(y.grad_fn)
    np.testing.assert_allclose(y.numpy(), [1.0, -8.0, 0.125])
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 3 * np.array([1.0, -2.0, 0.5]) ** 2)


def test_cube_is_differentiable_twice_and_thrice():
    x = leaf([1.0, -2.0])
    (g1,) = ag.grad(Cube.apply(x).sum(), x, create_graph=True)
    (g2,) = ag.grad(g1.sum(), x, create_graph=True)
    (g3,) = ag.grad(g2.sum(), x)
    np.testing.assert_allclose(g1.numpy(), [3.0, 12.0])
    np.testing.assert_allclose(g2.numpy(), [6.0, -12.0])
    np.testing.assert_allclose(g3.numpy(), [6.0, 6.0])


def test_gradcheck_and_gradgradcheck_on_custom_ops():
    x = leaf([0.3, -1.1, 2.0])
    assert ag.gradcheck(Cube.apply, (x,))
    assert ag.gradgradcheck(Cube.apply, (x,))
    assert ag.gradcheck(RawCube.apply, (x,))


def test_ctx_xp_is_the_inputs_array_module():
    seen = {}

    class Probe(ag.Function):
        @staticmethod
        def forward(ctx, x):
            seen["forward"] = ctx.xp
            return ctx.xp.sin(x.data)

        @staticmethod
        def backward(ctx, g):
            seen["backward"] = ctx.xp
            return g * 1.0

    x = leaf([1.0])
    Probe.apply(x).sum().backward()
    assert seen["forward"] is x.device.backend.xp is seen["backward"]
    if x.device.type == "cpu":
        assert seen["forward"] is np


def test_forward_may_return_a_tensor():
    class Double(ag.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2.0  # Tensor ops inside forward record nothing of their own

        @staticmethod
        def backward(ctx, g):
            return g * 2.0

    x = leaf([1.0, 2.0])
    y = Double.apply(x)
    assert y.grad_fn.fn is Double
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 2.0])


def test_forward_runs_without_recording_and_backward_gets_tensors():
    seen = {}

    class Probe(ag.Function):
        @staticmethod
        def forward(ctx, x):
            seen["grad_mode_in_forward"] = ag.is_grad_enabled()
            return x.data + 1.0

        @staticmethod
        def backward(ctx, g):
            seen["grad_type"] = type(g)
            seen["grad_mode_in_backward"] = ag.is_grad_enabled()
            return g

    Probe.apply(leaf([1.0])).sum().backward()
    assert seen == {"grad_mode_in_forward": False, "grad_type": ag.Tensor, "grad_mode_in_backward": False}


def test_save_for_backward_accepts_non_tensors():
    class Scale(ag.Function):
        @staticmethod
        def forward(ctx, x, k):
            ctx.save_for_backward(x, k, None)
            return x.data * k

        @staticmethod
        def backward(ctx, g):
            x, k, nothing = ctx.saved_tensors
            assert isinstance(x, ag.Tensor) and k == 2.5 and nothing is None
            return g * k, None

    x = leaf([1.0, 2.0])
    Scale.apply(x, 2.5).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [2.5, 2.5])


def test_saved_tensors_detect_inplace_modification():
    x = leaf([1.0, 2.0])
    w = ag.tensor(np.array([3.0, 4.0]))

    class MulW(ag.Function):
        @staticmethod
        def forward(ctx, a, b):
            ctx.save_for_backward(a, b)
            return a.data * b.data

        @staticmethod
        def backward(ctx, g):
            a, b = ctx.saved_tensors
            return g * b, g * a

    y = MulW.apply(x, w).sum()
    with ag.no_grad():
        w.add_(1.0)
    with pytest.raises(RuntimeError, match="MulW"):
        y.backward()


def test_attributes_stored_on_ctx():
    class Pow(ag.Function):
        @staticmethod
        def forward(ctx, x, p):
            ctx.p = p
            ctx.save_for_backward(x)
            return x.data ** p

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return g * ctx.p * x ** (ctx.p - 1), None

    x = leaf([2.0, 3.0])
    Pow.apply(x, 4).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 4 * np.array([2.0, 3.0]) ** 3)


class SinCos(ag.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return ctx.xp.sin(x.data), ctx.xp.cos(x.data)

    @staticmethod
    def backward(ctx, gs, gc):
        (x,) = ctx.saved_tensors
        return gs * ag.cos(x) - gc * ag.sin(x)


def test_multiple_outputs_both_used():
    x = leaf([0.3, 1.2])
    s, c = SinCos.apply(x)
    assert s.grad_fn is c.grad_fn
    np.testing.assert_allclose(s.numpy(), np.sin([0.3, 1.2]))
    (2.0 * s + 3.0 * c).sum().backward()
    xv = np.array([0.3, 1.2])
    np.testing.assert_allclose(x.grad.numpy(), 2 * np.cos(xv) - 3 * np.sin(xv))


def test_multiple_outputs_only_one_used_gets_zero_for_the_other():
    x = leaf([0.3, 1.2])
    s, c = SinCos.apply(x)
    c.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), -np.sin([0.3, 1.2]))


def test_multiple_outputs_second_order_and_gradcheck():
    x = leaf([0.3, 1.2])
    assert ag.gradcheck(lambda t: SinCos.apply(t), (x,))
    assert ag.gradgradcheck(lambda t: SinCos.apply(t), (x,))


def test_multiple_outputs_with_ag_grad_on_one_output_as_input():
    x = leaf([0.3, 1.2])
    s, c = SinCos.apply(x)
    y = (s * c).sum()
    gs, gx = ag.grad(y, [s, x])
    np.testing.assert_allclose(gs.numpy(), c.numpy())
    xv = np.array([0.3, 1.2])
    np.testing.assert_allclose(gx.numpy(), np.cos(2 * xv))


def test_backward_returning_none_for_an_input():
    class HalfGrad(ag.Function):
        @staticmethod
        def forward(ctx, a, b):
            return a.data + b.data

        @staticmethod
        def backward(ctx, g):
            return g, None

    a, b = leaf([1.0]), leaf([2.0])
    HalfGrad.apply(a, b).sum().backward()
    np.testing.assert_allclose(a.grad.numpy(), [1.0])
    assert b.grad is None


def test_backward_may_omit_trailing_gradients():
    class FirstOnly(ag.Function):
        @staticmethod
        def forward(ctx, a, b):
            return a.data * 2.0

        @staticmethod
        def backward(ctx, g):
            return g * 2.0  # one gradient for two inputs

    a, b = leaf([1.0]), leaf([2.0])
    FirstOnly.apply(a, b).sum().backward()
    np.testing.assert_allclose(a.grad.numpy(), [2.0])
    assert b.grad is None


def test_backward_returning_too_many_gradients_raises():
    class TooMany(ag.Function):
        @staticmethod
        def forward(ctx, a):
            return a.data

        @staticmethod
        def backward(ctx, g):
            return g, g

    with pytest.raises(RuntimeError, match="TooMany"):
        TooMany.apply(leaf([1.0])).sum().backward()


def test_backward_returning_wrong_shape_raises_naming_function():
    class BadShape(ag.Function):
        @staticmethod
        def forward(ctx, a):
            return a.data * 1.0

        @staticmethod
        def backward(ctx, g):
            return ag.ones(5, dtype=ag.float64)

    with pytest.raises(RuntimeError, match="BadShape"):
        BadShape.apply(leaf([1.0, 2.0, 3.0])).sum().backward()


def test_backward_may_return_broadcast_shaped_gradient():
    class AddRow(ag.Function):
        @staticmethod
        def forward(ctx, m, row):
            return m.data + row.data

        @staticmethod
        def backward(ctx, g):
            return g, g  # engine sums the row gradient back to (3,)

    m = leaf(np.zeros((2, 3)))
    row = leaf([1.0, 2.0, 3.0])
    AddRow.apply(m, row).sum().backward()
    np.testing.assert_allclose(row.grad.numpy(), [2.0, 2.0, 2.0])
    assert m.grad.shape == (2, 3)


def test_needs_input_grad():
    seen = []

    class Probe(ag.Function):
        @staticmethod
        def forward(ctx, a, b, k):
            seen.append(("forward", ctx.needs_input_grad))
            return a.data * b.data * k

        @staticmethod
        def backward(ctx, g):
            seen.append(("backward", ctx.needs_input_grad))
            return (g * 1.0 if ctx.needs_input_grad[0] else None,
                    g * 1.0 if ctx.needs_input_grad[1] else None, None)

    a = leaf([1.0])
    b = ag.tensor(np.array([2.0]))
    Probe.apply(a, b, 3.0).sum().backward()
    assert seen == [("forward", (True, False, False)), ("backward", (True, False, False))]
    seen.clear()
    with ag.no_grad():
        Probe.apply(a, b, 3.0)
    assert seen == [("forward", (False, False, False))]
    seen.clear()
    Probe.apply(b, b, 3.0)
    assert seen == [("forward", (False, False, False))]


def test_custom_backward_returning_raw_arrays_works_first_order():
    x = leaf([1.0, 2.0])
    RawCube.apply(x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [3.0, 12.0])
    (g,) = ag.grad(RawCube.apply(x).sum(), x)
    np.testing.assert_allclose(g.numpy(), [3.0, 12.0])


def test_custom_raw_backward_under_create_graph_raises_naming_function():
    x = leaf([1.0, 2.0])
    with pytest.raises(RuntimeError, match="RawCube"):
        ag.grad(RawCube.apply(x).sum(), x, create_graph=True)


def test_gradient_returned_as_a_saved_input_does_not_alias_the_leaf():
    # A backward that hands back a tensor it did not create must not make that tensor's
    # memory the leaf's .grad (accumulating into .grad would then change the tensor).
    class TimesW(ag.Function):
        @staticmethod
        def forward(ctx, x, w):
            ctx.save_for_backward(w)
            return (x.data * w.data).sum()

        @staticmethod
        def backward(ctx, g):
            (w,) = ctx.saved_tensors
            return w, None  # correct only because g == 1 here

    x = leaf([1.0, 2.0])
    w = ag.tensor(np.array([3.0, 4.0]))
    TimesW.apply(x, w).backward()
    TimesW.apply(x, w).backward()
    np.testing.assert_allclose(w.numpy(), [3.0, 4.0])
    np.testing.assert_allclose(x.grad.numpy(), [6.0, 8.0])

    class Identity(ag.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x.data.sum()

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return x  # d(sum)/dx is ones; here x happens to be ones

    y = ag.tensor(np.ones(2), requires_grad=True)
    Identity.apply(y).backward()
    Identity.apply(y).backward()
    np.testing.assert_allclose(y.numpy(), [1.0, 1.0])
    np.testing.assert_allclose(y.grad.numpy(), [2.0, 2.0])


def test_non_differentiable_outputs_and_inputs():
    class Count(ag.Function):
        differentiable = False

        @staticmethod
        def forward(ctx, x):
            return (x.data > 0).sum()

    y = Count.apply(leaf([1.0, -1.0, 2.0]))
    assert y.grad_fn is None and not y.requires_grad
    assert y.item() == 2


def test_apply_needs_a_tensor_argument():
    with pytest.raises(TypeError):
        Cube.apply(np.ones(2))


def test_function_without_backward_raises_on_backward():
    class NoBackward(ag.Function):
        @staticmethod
        def forward(ctx, x):
            return x.data * 1.0

    with pytest.raises(NotImplementedError):
        NoBackward.apply(leaf([1.0])).sum().backward()


def test_raw_backward_builtin_style_custom_op_first_and_second_order():
    class Softplus(ag.Function):
        raw_backward = True

        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return ctx.xp.logaddexp(0.0, x.data)

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved
            return g / (1.0 + ctx.ops.exp(-x))  # arrays and numpy, or Tensors and autograd

    x = leaf([-1.0, 0.5, 2.0])
    assert ag.gradcheck(Softplus.apply, (x,))
    assert ag.gradgradcheck(Softplus.apply, (x,))
